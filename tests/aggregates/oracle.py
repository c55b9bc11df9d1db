"""Concentration measures computed straight from their definitions, for tests to compare the
windows with: exact fractions, and the Nakamoto coefficient by trying every group of
entities from the smallest up, not by the sort-and-accumulate the code uses.

Definitions (RULES.md, `convmon.monitor.concentration`): shares are of all the window's
blocks; ``unknown`` blocks count in that denominator but are never an entity; the
Nakamoto coefficient is the fewest known entities holding strictly more than half of the
window's blocks (0 when all known entities together do not).
"""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction
from itertools import combinations

UNKNOWN = "unknown"


def _known(counts: Mapping[str, int]) -> dict[str, int]:
    return {k: v for k, v in counts.items() if k != UNKNOWN and v > 0}


def top_share(counts: Mapping[str, int], n: int) -> Fraction:
    total = sum(counts.values())
    known = _known(counts)
    if total == 0:
        return Fraction(0)
    best = max((sum(group) for group in combinations(known.values(), min(n, len(known)))),
               default=0)
    return Fraction(best, total)


def hhi(counts: Mapping[str, int]) -> Fraction:
    total = sum(counts.values())
    if total == 0:
        return Fraction(0)
    return sum((Fraction(100 * v, total) ** 2 for v in _known(counts).values()), Fraction(0))


def nakamoto(counts: Mapping[str, int]) -> int:
    total = sum(counts.values())
    known = list(_known(counts).values())
    for size in range(1, len(known) + 1):
        if any(2 * sum(group) > total for group in combinations(known, size)):
            return size
    return 0
