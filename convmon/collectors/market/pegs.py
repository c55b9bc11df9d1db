"""Per-venue stablecoin quotes, shared through Redis, and the peg figures derived from them.

In: the latest quote of every source for every token a venue prices (`PegQuote`: USD
price, best bid/ask when the source has a book). Out: one Redis hash
(``Keys.plugin("market", "pegs")``, field ``<token>|<source>``) written by the collector
beside its source health, expiring when no process writes any more; and `peg_rows`, what
the market plugin exports at scrape time:

- deviation of each fresh source from the median of the fresh sources of that token
  (None with fewer than two: no consensus to drift from);
- the source's spread, (ask - bid) / mid, when it has a book;
- the age of its quote (fresh when younger than ``stale_after_s``).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from convmon.monitor.keys import Keys


@dataclass(frozen=True, slots=True)
class PegQuote:
    token: str
    source: str
    price_usd: float
    at: float
    pair: str = ""
    bid: float | None = None
    ask: float | None = None


@dataclass(frozen=True, slots=True)
class PegRow:
    token: str
    source: str
    price_usd: float
    age_s: float
    fresh: bool
    deviation: float | None
    spread: float | None


def peg_rows(quotes: list[PegQuote], now: float, stale_after_s: float) -> list[PegRow]:
    by_token: dict[str, list[PegQuote]] = {}
    for q in quotes:
        by_token.setdefault(q.token, []).append(q)
    rows: list[PegRow] = []
    for token, group in sorted(by_token.items()):
        fresh = [q for q in group if now - q.at <= stale_after_s]
        median = statistics.median(q.price_usd for q in fresh) if len(fresh) >= 2 else None
        for q in sorted(group, key=lambda q: q.source):
            is_fresh = now - q.at <= stale_after_s
            spread = None
            if q.bid is not None and q.ask is not None and q.bid + q.ask > 0:
                spread = (q.ask - q.bid) / ((q.ask + q.bid) / 2)
            deviation = q.price_usd / median - 1.0 if median and is_fresh else None
            rows.append(PegRow(token, q.source, q.price_usd, now - q.at, is_fresh, deviation,
                               spread))
    return rows


class PegStore:
    def __init__(self, redis: Redis, keys: Keys, ttl_s: float) -> None:
        self.redis = redis
        self.key = keys.plugin("market", "pegs")
        self.ttl_s = ttl_s

    async def write(self, quotes: list[PegQuote]) -> None:
        if not quotes:
            return
        mapping: dict[Any, Any] = {f"{q.token}|{q.source}": json.dumps(asdict(q)) for q in quotes}
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(self.key, mapping=mapping)
            pipe.expire(self.key, max(1, int(self.ttl_s)))
            await pipe.execute()

    async def read(self) -> list[PegQuote]:
        raw: dict[Any, Any] = await self.redis.hgetall(self.key)
        out: list[PegQuote] = []
        for value in raw.values():
            try:
                out.append(PegQuote(**json.loads(value)))
            except (ValueError, TypeError):
                continue
        return out
