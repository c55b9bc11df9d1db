"""Offline demo of the market collector: local exchanges quoting a simulated market.

`start_demo` starts a local Coinbase feed, Kraken v2 feed and CoinGecko endpoint and
returns a `DemoSource` whose ``config`` points the collector at them. `DemoSource.run`
follows a SIMULATED scenario on the (accelerated) demo clock: a random walk per symbol
around plausible prices, each venue quoting slightly off the others, stablecoins
hugging 1.000 — except USDT, which slides to 0.992 twenty minutes into every
ninety-minute cycle, stays there for a quarter of an hour and recovers. Local Binance, OKX
and Bybit quote USDC/USDT and FDUSD/USDT books (read through ccxt); Bybit's USDC book drifts
0.7% above the other venues from minute 50 to 70 of every cycle (`venue_drift`). Nothing
here is market data.
"""

from __future__ import annotations

import math
import random
from typing import Any

from convmon.collectors.market.config import default_symbols
from convmon.monitor.clock import Clock
from convmon.sim.exchanges import CoinbaseFeedServer, CoinGeckoServer, KrakenFeedServer
from convmon.sim.venues import VenueServer

START_PRICES: dict[str, float] = {
    "BTC": 92_000.0, "ETH": 3_100.0, "SOL": 140.0, "HNT": 2.6, "HONEY": 0.012,
    "NOS": 0.45, "RENDER": 2.3, "IO": 0.35,
    "USDC": 1.0, "USDT": 1.0, "USD1": 1.0, "PYUSD": 1.0, "FDUSD": 1.0,
}
ANNUAL_VOLATILITY: dict[str, float] = {
    "BTC": 0.5, "ETH": 0.65, "SOL": 0.8, "HNT": 1.0, "HONEY": 1.2, "NOS": 1.1,
    "RENDER": 1.0, "IO": 1.2,
}
STABLES = ("USDC", "USDT", "USD1", "PYUSD", "FDUSD")
YEAR_S = 365 * 86400.0
CYCLE_S = 90 * 60.0


VENUE_PAIRS = ("USDC/USDT", "FDUSD/USDT")
DRIFTING_VENUE = "bybit"


def venue_drift(elapsed_s: float) -> float:
    """Bybit's USDC premium: 0 to +0.7% (minutes 50 to 52), held to 68, gone by 70."""
    t = elapsed_s % CYCLE_S / 60.0
    if t < 50 or t >= 70:
        return 0.0
    if t < 52:
        return 0.007 * (t - 50) / 2
    if t < 68:
        return 0.007
    return 0.007 * (70 - t) / 2


def usdt_peg_offset(elapsed_s: float) -> float:
    """The scripted USDT wobble: 0 to -0.8% (minutes 20 to 23), held to 35, back by 38."""
    t = elapsed_s % CYCLE_S / 60.0
    if t < 20 or t >= 38:
        return 0.0
    if t < 23:
        return -0.008 * (t - 20) / 3
    if t < 35:
        return -0.008
    return -0.008 * (38 - t) / 3


class DemoSource:
    def __init__(
        self,
        clock: Clock,
        speed: float,
        coinbase: CoinbaseFeedServer,
        kraken: KrakenFeedServer,
        coingecko: CoinGeckoServer,
        venues: dict[str, VenueServer] | None = None,
        seed: int = 2026,
    ) -> None:
        self.clock = clock
        self.coinbase = coinbase
        self.kraken = kraken
        self.coingecko = coingecko
        self.venues = venues or {}
        self.rng = random.Random(seed)
        # Keep the wall-clock tick rate near five steps per second at any speed.
        self.step_s = max(5.0, speed * 0.2)
        self.prices = dict(START_PRICES)
        self.started = clock.now()
        self.config: dict[str, Any] = {
            "coinbase": {"url": coinbase.url},
            "kraken": {"url": kraken.url},
            "coingecko": {"url": coingecko.url, "poll_interval_s": max(60.0, self.step_s)},
            "stale_after_s": max(180.0, 10 * self.step_s),
            "sample_interval_s": max(10.0, self.step_s),
            "health_interval_s": max(5.0, self.step_s),
            "venues": {
                name: {"pairs": {"USDC": "USDC/USDT", "FDUSD": "FDUSD/USDT"},
                       "endpoints": server.endpoints, "message_timeout_s": 120.0,
                       "backoff_initial_s": 0.2, "backoff_max_s": 5.0}
                for name, server in self.venues.items()
            },
        }

    def advance(self, dt: float) -> None:
        """Move every simulated price by ``dt`` demo seconds."""
        for symbol, price in self.prices.items():
            if symbol in STABLES:
                offset = usdt_peg_offset(self.clock.now() - self.started) if symbol == "USDT" else 0
                self.prices[symbol] = 1.0 + offset + self.rng.gauss(0.0, 0.0002)
            else:
                sigma = ANNUAL_VOLATILITY.get(symbol, 1.0) * math.sqrt(dt / YEAR_S)
                self.prices[symbol] = price * math.exp(self.rng.gauss(-sigma * sigma / 2, sigma))

    async def publish(self) -> None:
        for symbol, where in default_symbols().items():
            mid = self.prices[symbol]
            if where.coinbase:
                await self.coinbase.push_tick(where.coinbase, self._venue(mid))
            if where.kraken:
                await self.kraken.push_tick(where.kraken, self._venue(mid))
            if where.coingecko:
                self.coingecko.set_price(where.coingecko, mid)
        usdt = self.prices["USDT"]
        drift = venue_drift(self.clock.now() - self.started)
        for name, server in self.venues.items():
            for pair in VENUE_PAIRS:
                base = pair.split("/")[0]
                mid = self.prices.get(base, 1.0) / usdt
                if name == DRIFTING_VENUE and base == "USDC":
                    mid *= 1.0 + drift
                mid = self._venue(mid)
                await server.push(pair, mid * (1 - 0.00005), mid * (1 + 0.00005))

    def _venue(self, mid: float) -> float:
        return mid * (1.0 + self.rng.gauss(0.0, 0.0002))

    async def run(self) -> None:
        await self.publish()
        while True:
            await self.clock.sleep(self.step_s)
            self.advance(self.step_s)
            await self.publish()

    async def close(self) -> None:
        await self.coinbase.close()
        await self.kraken.close()
        await self.coingecko.close()
        for server in self.venues.values():
            await server.close()


async def start_demo(clock: Clock, speed: float) -> DemoSource:
    symbols = default_symbols().values()
    coinbase = CoinbaseFeedServer(listed={s.coinbase for s in symbols if s.coinbase}, clock=clock)
    kraken = KrakenFeedServer(listed={s.kraken for s in symbols if s.kraken}, clock=clock)
    coingecko = CoinGeckoServer(clock=clock)
    venues = {name: VenueServer(name, list(VENUE_PAIRS)) for name in ("binance", "okx", "bybit")}
    servers: list[CoinbaseFeedServer | KrakenFeedServer | CoinGeckoServer | VenueServer] = [
        coinbase, kraken, coingecko, *venues.values()]
    started: list[CoinbaseFeedServer | KrakenFeedServer | CoinGeckoServer | VenueServer] = []
    try:
        for server in servers:
            await server.start()
            started.append(server)
    except BaseException:
        for server in started:
            await server.close()
        raise
    source = DemoSource(clock, speed, coinbase, kraken, coingecko, venues)
    await source.publish()
    return source
