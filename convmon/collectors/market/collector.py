"""The market collector: feeds in, sampled ``market.price`` events out.

In: ticks and up/down transitions from the feeds (`FeedListener`), and best bid/ask of
the stablecoin venues read through ccxt (`VenueFeed`), priced in USD and counted as one
more source each. Out:
- ``market.price`` events, at most one per symbol per ``sample_interval_s`` plus one at
  once when the median moved more than ``move_threshold_pct`` (never closer than
  ``min_gap_s``); id ``market:price:<SYMBOL>:<sample ms>``, position = sample ms;
- per-source health in Redis (`SourceHealthStore`), one hash field per process so that
  replicas do not overwrite each other, expiring when a process stops writing;
- the collector's own status through `CollectorHealth` (up while any source is up);
- the latest quote of every source of the venue-priced tokens (`PegStore`), for the
  per-venue peg gauges.

Fallback: CoinGecko is asked only for symbols no live websocket covers. A symbol is
covered when a websocket source that is up has a fresh price for it, or came up less
than ``stale_after_s`` ago (time to send its first tick). A websocket tick takes a symbol
back from CoinGecko at once (``mode: fallback``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.market.book import PriceBook, Quote
from convmon.collectors.market.config import WEBSOCKET_SOURCES, MarketConfig
from convmon.collectors.market.feeds import CoinGeckoPoller, WebsocketFeed
from convmon.collectors.market.parsing import (
    coinbase_subscribe,
    kraken_subscribe,
    parse_coinbase,
    parse_kraken,
)
from convmon.collectors.market.pegs import PegQuote, PegStore
from convmon.collectors.market.sourcehealth import SourceHealthStore
from convmon.collectors.market.venues import VenueFeed, VenueTick
from convmon.monitor.bus import EventBus
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.events import Event, MarketPrice
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.monitor.tasks import run_together

log = logging.getLogger(__name__)

COLLECTOR = "market"


@dataclass(slots=True)
class _Sample:
    at: float
    price: float


class MarketCollector:
    """Component: runs the feeds, the REST fallback, the sampler and the health writer."""

    name = COLLECTOR

    def __init__(
        self,
        config: MarketConfig,
        *,
        redis: Redis,
        keys: Keys,
        bus: EventBus,
        clock: Clock,
        registry: CollectorRegistry,
        instance: str,
        health: CollectorHealth | None = None,
    ) -> None:
        self.config = config
        self.bus = bus
        self.clock = clock
        self.health = health or CollectorHealth(
            COLLECTOR, redis=redis, keys=keys, bus=bus, clock=clock, registry=registry,
            instance=instance,
        )
        self.collector_health = self.health
        self.sources = SourceHealthStore(
            redis, keys, instance, ttl_s=6 * config.health_interval_s
        )
        self.book = PriceBook(config.stale_after_s, config.outlier_pct)
        self.pegs = PegStore(redis, keys, ttl_s=6 * config.health_interval_s)
        self.peg_quotes: dict[tuple[str, str], PegQuote] = {}
        self.venue_tokens = config.venue_tokens()
        self.venues: dict[str, VenueFeed] = {}
        self.up: dict[str, bool] = {s: False for s in config.enabled_sources()}
        self.up_since: dict[str, float] = {}
        self.feeds: dict[str, WebsocketFeed] = {}
        self.poller: CoinGeckoPoller | None = None
        self.published = 0
        self._samples: dict[str, _Sample] = {}
        self._any_up: bool | None = None
        """None until the first source reports: its state, up or down, is news."""

    async def run(self) -> None:
        try:
            async with aiohttp.ClientSession() as session:
                self._build(session)
                loops: dict[str, Coroutine[Any, Any, None]] = {
                    feed.name: feed.run() for feed in self.feeds.values()
                }
                if self.poller is not None:
                    loops[self.poller.name] = self.poller.run()
                loops.update({feed.name: feed.run() for feed in self.venues.values()})
                loops["market/sampler"] = self._sample_loop()
                loops["market/health"] = self._health_loop()
                await run_together(loops)
        finally:
            self.up = {s: False for s in self.up}
            self.up_since.clear()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self._write_health()
                    if self._any_up:
                        self._any_up = False
                        await self.health.disconnected("collector stopped")

    def _build(self, session: aiohttp.ClientSession) -> None:
        cfg = self.config
        self.feeds = {}
        if cfg.coinbase.enabled and (products := cfg.products("coinbase")):
            self.feeds["coinbase"] = WebsocketFeed(
                "coinbase", cfg.coinbase, products=products,
                subscribe=functools.partial(
                    coinbase_subscribe, heartbeat=cfg.coinbase.heartbeat_channel
                ),
                parse=parse_coinbase, listener=self, health=self.health, session=session,
                clock=self.clock,
            )
        if cfg.kraken.enabled and (products := cfg.products("kraken")):
            self.feeds["kraken"] = WebsocketFeed(
                "kraken", cfg.kraken, products=products, subscribe=kraken_subscribe,
                parse=parse_kraken, listener=self, health=self.health, session=session,
                clock=self.clock,
            )
        self.venues = {
            name: VenueFeed(name, venue, listener=self, health=self.health, clock=self.clock)
            for name, venue in cfg.active_venues().items()
        }
        self.poller = None
        if cfg.coingecko.enabled and cfg.products("coingecko"):
            self.poller = CoinGeckoPoller(
                cfg.coingecko, wanted=self.rest_ids, listener=self, health=self.health,
                session=session, clock=self.clock,
            )

    def covered(self, symbol: str, now: float) -> bool:
        """Whether a live websocket quotes ``symbol`` (see the module docstring)."""
        where = self.config.symbols[symbol]
        for source in WEBSOCKET_SOURCES:
            if not self.up.get(source) or where.product(source) is None:
                continue
            if self.book.is_fresh(symbol, source, now):
                return True
            if now - self.up_since.get(source, now) < self.config.stale_after_s:
                return True
        return False

    def rest_ids(self) -> dict[str, str]:
        """CoinGecko id → symbol to poll now."""
        now = self.clock.now()
        always = self.config.coingecko.mode == "always"
        return {
            coin: symbol
            for coin, symbol in self.config.products("coingecko").items()
            if always or not self.covered(symbol, now)
        }

    async def on_prices(
        self, source: str, prices: Sequence[tuple[str, float]], at: float
    ) -> None:
        handback = source in WEBSOCKET_SOURCES and self.config.coingecko.mode == "fallback"
        for symbol, price in prices:
            self.book.update(symbol, source, price, at)
            if symbol in self.venue_tokens and source not in self.venues:
                self.peg_quotes[(symbol, source)] = PegQuote(symbol, source, price, at)
            if handback:
                self.book.forget(symbol, "coingecko")
            await self._maybe_sample(symbol)

    async def on_venue_tick(self, tick: VenueTick) -> None:
        """A venue's best bid/ask: its USD price joins the book as one more source (a pair
        quoted in another token is converted with that token's consensus price; without
        a fresh one the tick is left out, since its USD value is unknown)."""
        other_usd = 1.0 if tick.other == "USD" else self.book.quote(tick.other, tick.at).price
        if other_usd is None:
            log.debug("venue tick not priced: no fresh USD price of its quote token",
                      extra={"collector": COLLECTOR, "source": tick.venue, "pair": tick.pair})
            return
        usd = tick.token_in_quote() * other_usd
        self.peg_quotes[(tick.token, tick.venue)] = PegQuote(
            tick.token, tick.venue, usd, tick.at, tick.pair, tick.bid, tick.ask)
        await self.on_prices(tick.venue, [(tick.token, usd)], tick.at)

    async def on_state(self, source: str, up: bool, detail: str) -> None:
        now = self.clock.now()
        self.up[source] = up
        if up:
            self.up_since[source] = now
        else:
            self.up_since.pop(source, None)
            if source in WEBSOCKET_SOURCES and self.poller is not None:
                self.poller.wake.set()
        log.info(
            "price source up" if up else "price source down",
            extra={"collector": COLLECTOR, "source": source, "detail": detail[:200]},
        )
        any_up = any(self.up.values())
        if any_up != self._any_up:
            self._any_up = any_up
            names = ",".join(s for s, u in self.up.items() if u)
            if any_up:
                await self.health.connected(f"sources up: {names}")
            else:
                await self.health.disconnected(f"no price source up ({source}: {detail})")
        await self._write_health()

    def _due(self, quote: Quote, now: float) -> bool:
        if quote.price is None:
            return False
        last = self._samples.get(quote.symbol)
        if last is None:
            return True
        elapsed = now - last.at
        if elapsed >= self.config.sample_interval_s:
            return True
        moved_pct = abs(quote.price - last.price) / last.price * 100.0
        return moved_pct > self.config.move_threshold_pct and elapsed >= self.config.min_gap_s

    async def _maybe_sample(self, symbol: str) -> None:
        now = self.clock.now()
        quote = self.book.quote(symbol, now)
        if self._due(quote, now):
            await self._publish([quote], now)

    async def sample_all(self) -> int:
        """Publish every symbol that is due (the timer side of sampling)."""
        now = self.clock.now()
        quotes = (self.book.quote(symbol, now) for symbol in self.book.symbols())
        due = [quote for quote in quotes if self._due(quote, now)]
        return await self._publish(due, now) if due else 0

    async def _publish(self, quotes: list[Quote], now: float) -> int:
        ms = int(now * 1000)
        events = []
        for quote in quotes:
            assert quote.price is not None
            self._samples[quote.symbol] = _Sample(now, quote.price)
            events.append(
                Event(
                    id=f"market:price:{quote.symbol}:{ms}",
                    chain="market",
                    source=COLLECTOR,
                    observed_at=now,
                    occurred_at=quote.at,
                    position=ms,
                    payload=MarketPrice(
                        symbol=quote.symbol,
                        price_usd=quote.price,
                        sources=quote.sources,
                        stale_sources=quote.stale,
                        rejected_sources=quote.rejected,
                    ),
                )
            )
        added = await self.bus.publish(events)
        self.published += added
        await self.health.progress(ms, event_time=max(quote.at for quote in quotes))
        return added

    async def _sample_loop(self) -> None:
        step = min(1.0, self.config.sample_interval_s / 5)
        while True:
            await self.clock.sleep(step)
            await self.sample_all()
            honour_cancellation()

    async def _health_loop(self) -> None:
        while True:
            await self._write_health()
            honour_cancellation()
            await self.clock.sleep(self.config.health_interval_s)

    def source_states(self) -> dict[str, dict[str, Any]]:
        now = self.clock.now()
        last: dict[str, float | None] = {s: f.last_message_at for s, f in self.feeds.items()}
        if self.poller is not None:
            last["coingecko"] = self.poller.last_message_at
        last.update({name: feed.last_message_at for name, feed in self.venues.items()})
        return {
            source: {
                "up": up,
                "since": self.up_since.get(source),
                "last_message_at": last.get(source),
                "at": now,
            }
            for source, up in self.up.items()
        }

    async def _write_health(self) -> None:
        await self.sources.write(self.source_states())
        await self.pegs.write(list(self.peg_quotes.values()))
