"""The latest price of every symbol at every source, and the consensus price from them.

In: `PriceBook.update(symbol, source, price, at)` for every tick. Out: `PriceBook.quote`
— the median of the fresh sources after outlier rejection, and which sources were stale
or rejected. Pure and synchronous: the collector owns the clock and the I/O.

Rules: a price older than ``stale_after_s`` is not used (and reported as stale). While
three or more fresh sources remain, the one farthest from the median of the others is
rejected if it is more than ``outlier_pct`` away, and the check repeats; with two there is
no majority, so both are used.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class SourcePrice:
    price: float
    at: float
    """Unix seconds when the price was observed."""


@dataclass(frozen=True, slots=True)
class Quote:
    symbol: str
    price: float | None
    """None when no fresh, accepted source is left: unknown, never a silent zero."""
    at: float
    """Newest observation time among the sources used (0 when none)."""
    sources: dict[str, float] = field(default_factory=dict)
    stale: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


class PriceBook:
    def __init__(self, stale_after_s: float, outlier_pct: float) -> None:
        if stale_after_s <= 0 or outlier_pct <= 0:
            raise ValueError("stale_after_s and outlier_pct must be positive")
        self.stale_after_s = stale_after_s
        self.outlier_ratio = outlier_pct / 100.0
        self._prices: dict[str, dict[str, SourcePrice]] = {}

    def update(self, symbol: str, source: str, price: float, at: float) -> None:
        by_source = self._prices.setdefault(symbol, {})
        current = by_source.get(source)
        if current is None:
            by_source[source] = SourcePrice(price, at)
        elif at >= current.at:
            current.price = price
            current.at = at

    def forget(self, symbol: str, source: str) -> None:
        self._prices.get(symbol, {}).pop(source, None)

    def symbols(self) -> list[str]:
        return list(self._prices)

    def is_fresh(self, symbol: str, source: str, now: float) -> bool:
        entry = self._prices.get(symbol, {}).get(source)
        return entry is not None and now - entry.at <= self.stale_after_s

    def quote(self, symbol: str, now: float) -> Quote:
        limit = now - self.stale_after_s
        fresh: dict[str, float] = {}
        stale: list[str] = []
        for source, entry in self._prices.get(symbol, {}).items():
            if entry.at >= limit:
                fresh[source] = entry.price
            else:
                stale.append(source)
        rejected = self._outliers(fresh) if len(fresh) >= 3 else []
        for source in rejected:
            del fresh[source]
        if not fresh:
            return Quote(symbol, None, 0.0, {}, sorted(stale), rejected)
        by_source = self._prices[symbol]
        newest = max(by_source[s].at for s in fresh)
        return Quote(
            symbol, _median(list(fresh.values())), newest, dict(sorted(fresh.items())),
            sorted(stale), rejected,
        )

    def _outliers(self, fresh: dict[str, float]) -> list[str]:
        # One at a time, worst first: with three sources the median of "the others" of a
        # good source is pulled by the bad one, so only the farthest may be judged.
        kept = dict(fresh)
        rejected: list[str] = []
        while len(kept) >= 3:
            worst, worst_dev = "", 0.0
            for source, price in kept.items():
                others = _median([p for s, p in kept.items() if s != source])
                deviation = abs(price - others) / others
                if deviation > worst_dev:
                    worst, worst_dev = source, deviation
            if worst_dev <= self.outlier_ratio:
                break
            rejected.append(worst)
            del kept[worst]
        return sorted(rejected)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2
