"""Inhibition: a firing source alert mutes target alerts that agree on the ``equal`` labels
(Alertmanager's inhibit_rules, e.g. a critical concentration alert mutes the warning one).

An alert never inhibits itself, and, as in Alertmanager, an alert matching both the source
and target side of a rule cannot be inhibited by an alert with the same label set.
"""

from __future__ import annotations

from collections.abc import Sequence

from convmon.monitor.alerting import AlertTransition

from .config import InhibitRule
from .matchers import Matcher, match_all


class Inhibitor:
    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self.rules: list[tuple[tuple[Matcher, ...], tuple[Matcher, ...], tuple[str, ...]]] = [
            (r.sources(), r.targets(), tuple(r.equal)) for r in rules
        ]

    def inhibited(self, target: AlertTransition, firing: Sequence[AlertTransition]) -> bool:
        for sources, targets, equal in self.rules:
            if not match_all(targets, target.labels):
                continue
            two_sided = match_all(sources, target.labels)
            for src in firing:
                if src.fingerprint == target.fingerprint:
                    continue
                if not match_all(sources, src.labels):
                    continue
                if two_sided and match_all(targets, src.labels):
                    continue
                if all(src.labels.get(k, "") == target.labels.get(k, "") for k in equal):
                    return True
        return False
