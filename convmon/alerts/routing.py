"""The route tree: which receiver gets an alert, and how alerts are grouped.

In: an alert's labels. Out: the matching routes (Alertmanager's algorithm: depth-first, the
deepest matching routes win, siblings are tried after a match only when that route sets
``continue``) and, per route, the group key and group labels. Settings a route leaves
unset are inherited from its parent; the root falls back to Alertmanager's defaults.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

from .config import RouteConfig
from .errors import AlertsConfigError
from .matchers import Matcher, match_all, parse_matchers

DEFAULT_GROUP_WAIT_S = 30.0
DEFAULT_GROUP_INTERVAL_S = 300.0
DEFAULT_REPEAT_INTERVAL_S = 4 * 3600.0
DEFAULT_SEND_MISSED_RESOLVED = True
GROUP_BY_ALL = "..."


def _inherit(value: bool | None, inherited: bool | None, default: bool) -> bool:
    if value is not None:
        return value
    return inherited if inherited is not None else default


@dataclass(frozen=True)
class Route:
    id: str
    """Position in the tree (``0``, ``0.1``, ...): part of the group key."""
    receiver: str
    matchers: tuple[Matcher, ...]
    group_by: tuple[str, ...]
    group_wait_s: float
    group_interval_s: float
    repeat_interval_s: float
    send_missed_resolved: bool
    continue_: bool
    children: tuple[Route, ...]

    @classmethod
    def build(cls, cfg: RouteConfig, parent: Route | None = None, rid: str = "0") -> Route:
        def pick(value: float | None, inherited: float | None, default: float) -> float:
            if value is not None:
                return value
            return inherited if inherited is not None else default

        receiver = cfg.receiver or (parent.receiver if parent else None)
        if receiver is None:
            raise AlertsConfigError("the root route needs a receiver")
        group_by: tuple[str, ...]
        if cfg.group_by is not None:
            group_by = tuple(cfg.group_by)
        else:
            group_by = parent.group_by if parent else ()
        route = cls(
            id=rid,
            receiver=receiver,
            matchers=parse_matchers(cfg.matchers),
            group_by=group_by,
            group_wait_s=pick(cfg.group_wait_s, parent.group_wait_s if parent else None,
                              DEFAULT_GROUP_WAIT_S),
            group_interval_s=pick(cfg.group_interval_s,
                                  parent.group_interval_s if parent else None,
                                  DEFAULT_GROUP_INTERVAL_S),
            repeat_interval_s=pick(cfg.repeat_interval_s,
                                   parent.repeat_interval_s if parent else None,
                                   DEFAULT_REPEAT_INTERVAL_S),
            send_missed_resolved=_inherit(cfg.send_missed_resolved,
                                          parent.send_missed_resolved if parent else None,
                                          DEFAULT_SEND_MISSED_RESOLVED),
            continue_=cfg.continue_,
            children=(),
        )
        children = tuple(
            cls.build(child, route, f"{rid}.{i}") for i, child in enumerate(cfg.routes)
        )
        object.__setattr__(route, "children", children)
        return route

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes that take an alert with ``labels`` (empty if this one does not)."""
        if not match_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.children:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if GROUP_BY_ALL in self.group_by:
            return dict(labels)
        return {k: labels[k] for k in self.group_by if k in labels}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """Stable id of the group an alert with ``labels`` joins on this route."""
        body = json.dumps(
            [self.id, self.receiver, sorted(self.group_labels(labels).items())],
            separators=(",", ":"),
        )
        return hashlib.sha256(body.encode()).hexdigest()[:20]
