"""Concentration measures over block counts: shares, top-N share, HHI, Nakamoto coefficient.

Pure functions shared by the live Redis windows (rules) and the offline replay (bitcoin
CLI), so both report the same numbers for the same counts. ``unknown`` blocks count in
the denominator (they are real blocks) but never as an entity in top-N, HHI or Nakamoto:
we do not know they belong to one miner.

Definitions, over the blocks of one window (``total`` includes unknown blocks):
- top-N share: blocks of the N largest known entities / ``total`` (0..1);
- HHI: the sum over known entities of (100 * blocks / ``total``) squared (0..10000);
- Nakamoto coefficient: the fewest known entities holding strictly more than half of the
  window's blocks; exactly half is not enough (two pools at 50% each give 2), and it is 0
  when all known entities together hold half or less.
"""

from __future__ import annotations

from collections.abc import Mapping

UNKNOWN = "unknown"


def shares(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values())
    if total <= 0:
        return {}
    return {k: v / total for k, v in counts.items() if v > 0}


def _known_sorted(counts: Mapping[str, int]) -> list[int]:
    return sorted((v for k, v in counts.items() if k != UNKNOWN and v > 0), reverse=True)


def top_share(counts: Mapping[str, int], n: int) -> float:
    """Combined share of the ``n`` largest known pools (0..1)."""
    total = sum(counts.values())
    if total <= 0:
        return 0.0
    return sum(_known_sorted(counts)[:n]) / total


def hhi(counts: Mapping[str, int]) -> float:
    """Herfindahl-Hirschman index on 0..10000 (shares in percent, squared, summed)."""
    total = sum(counts.values())
    if total <= 0:
        return 0.0
    return sum((100.0 * v / total) ** 2 for v in _known_sorted(counts))


def nakamoto(counts: Mapping[str, int]) -> int:
    """Fewest known entities holding strictly more than half of all blocks (unknown
    included in the total); 0 when all known entities together do not."""
    total = sum(counts.values())
    acc = 0
    for i, v in enumerate(_known_sorted(counts), start=1):
        acc += v
        if 2 * acc > total:
            return i
    return 0


def measures(counts: Mapping[str, int]) -> dict[str, float | int]:
    """top1/2/3 share, HHI and Nakamoto coefficient from one sort of the counts (the
    same values as the individual functions; used where they are computed per block)."""
    total = sum(counts.values())
    known = _known_sorted(counts)
    if total <= 0:
        return {"top1_share": 0.0, "top2_share": 0.0, "top3_share": 0.0, "hhi": 0.0,
                "nakamoto": 0}
    acc = 0
    nak = 0
    for i, v in enumerate(known, start=1):
        acc += v
        if 2 * acc > total:
            nak = i
            break
    return {
        "top1_share": sum(known[:1]) / total,
        "top2_share": sum(known[:2]) / total,
        "top3_share": sum(known[:3]) / total,
        "hhi": sum((100.0 * v / total) ** 2 for v in known),
        "nakamoto": nak,
    }
