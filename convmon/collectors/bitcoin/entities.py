"""Which company a pool belongs to, and since when: dated pool -> parent-entity links.

In: `entities.json` (beside this module: convmon's own curated links, each with its public
source), optionally the user's file and an inline map from ``collectors.bitcoin.pools``.
Out: an `EntityMap` the attributor asks for a pool's entity **at a block's timestamp**, so
a link applies only within its dates (BTC.com was Bitmain's pool until the spin-off, then
Bitdeer's, then BIT Mining's). The collector writes the answer into each block payload
(``entity``); the aggregates count entities from the payloads.

File shapes: convmon's list ``[{pool, entity, from, to, source}]`` (``pool`` is mempool's
slug), or the public ``pool-parent-companies.json`` shape ``{entity: [{name, from, to,
source}]}`` (pool names, slugged like mempool's). Dates are ISO (``2021``, ``2021-04`` or
``2021-04-01``, UTC); ``from`` is inclusive, ``to`` exclusive, either may be empty (open).
A user's file replaces convmon's links for the pools it names; inline entries (no dates)
override both at every date.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from convmon.collectors.bitcoin.attribution import pool_slug
from convmon.collectors.bitcoin.errors import RegistryError

CURATED_ENTITIES_PATH = Path(__file__).with_name("entities.json")


@dataclass(frozen=True, slots=True)
class EntityLink:
    pool: str
    entity: str
    start: float | None = None
    """Unix seconds, inclusive; None: since the pool began."""
    end: float | None = None
    """Unix seconds, exclusive; None: still current."""
    source: str = ""

    def holds_at(self, timestamp: float | None) -> bool:
        """Whether the link applies at ``timestamp`` (None: now, i.e. current links)."""
        if timestamp is None:
            return self.end is None
        return (self.start is None or timestamp >= self.start) and (
            self.end is None or timestamp < self.end
        )


def parse_date(text: str, what: str) -> float | None:
    """``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD`` (UTC) -> unix seconds; empty -> None."""
    if not text:
        return None
    parts = text.split("-")
    try:
        if len(parts) > 3:
            raise ValueError(text)
        numbers = [int(p) for p in parts] + [1] * (3 - len(parts))
        return datetime(numbers[0], numbers[1], numbers[2], tzinfo=UTC).timestamp()
    except ValueError:
        raise RegistryError(f"{what}: {text!r} is not an ISO date (YYYY[-MM[-DD]])") from None


def _link(pool: str, entity: str, item: Mapping[str, Any], what: str) -> EntityLink:
    start = parse_date(str(item.get("from") or ""), f"{what}: from")
    end = parse_date(str(item.get("to") or ""), f"{what}: to")
    if start is not None and end is not None and end <= start:
        raise RegistryError(f"{what}: 'to' must be after 'from'")
    return EntityLink(pool, entity, start, end, str(item.get("source") or ""))


def parse_links(data: Any, origin: str) -> list[EntityLink]:
    """Links from either file shape (see the module docstring); errors name ``origin``."""
    links: list[EntityLink] = []
    if isinstance(data, list):
        for i, item in enumerate(data):
            if not (isinstance(item, dict) and isinstance(item.get("pool"), str)
                    and isinstance(item.get("entity"), str)):
                raise RegistryError(f"{origin}: link {i}: needs a pool and an entity")
            links.append(_link(item["pool"], item["entity"], item, f"{origin}: link {i}"))
        return links
    if not isinstance(data, dict):
        raise RegistryError(f"{origin}: expected a list of links or an object of entity -> pools")
    for entity, items in data.items():
        if not isinstance(items, list):
            raise RegistryError(f"{origin}: {entity}: expected a list")
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise RegistryError(f"{origin}: {entity}: entries need a name")
            links.append(_link(pool_slug(item["name"]), str(entity), item,
                               f"{origin}: {entity}: {item['name']}"))
    return links


def read_links(path: Path) -> list[EntityLink]:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: {exc}") from None
    return parse_links(data, str(path))


def curated_links() -> list[EntityLink]:
    return read_links(CURATED_ENTITIES_PATH)


class EntityMap:
    """Pool slug -> entity at a time: dated links, overridden by undated inline entries."""

    def __init__(
        self, links: Iterable[EntityLink] = (), overrides: Mapping[str, str] | None = None
    ) -> None:
        self.links: dict[str, list[EntityLink]] = {}
        for link in links:
            self.links.setdefault(link.pool, []).append(link)
        self.overrides = dict(overrides or {})

    def entity_at(self, pool: str, timestamp: float | None = None) -> str | None:
        """The pool's entity at ``timestamp`` (None: now); None when it has none then."""
        if pool in self.overrides:
            return self.overrides[pool]
        for link in self.links.get(pool, ()):
            if link.holds_at(timestamp):
                return link.entity
        return None

    def current(self) -> dict[str, str]:
        """Pool -> entity now."""
        pools = set(self.links) | set(self.overrides)
        return {p: e for p in sorted(pools) if (e := self.entity_at(p)) is not None}


def load_entity_map(
    inline: Mapping[str, str], path: Path | None, *, curated: bool = True
) -> EntityMap:
    """convmon's curated links (unless ``curated`` is false), the links of ``path``
    replacing them pool by pool, and ``inline`` over all of them."""
    by_pool: dict[str, list[EntityLink]] = {}
    if curated:
        for link in curated_links():
            by_pool.setdefault(link.pool, []).append(link)
    if path is not None:
        mine: dict[str, list[EntityLink]] = {}
        for link in read_links(path):
            mine.setdefault(link.pool, []).append(link)
        by_pool.update(mine)
    return EntityMap((link for links in by_pool.values() for link in links), inline)
