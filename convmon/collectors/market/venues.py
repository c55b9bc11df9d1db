"""Stablecoin quotes from the venues that trade them, through ccxt's websocket clients.

Why ccxt (its async websocket API, ``ccxt.pro``) and not cryptofeed: ccxt is one package
with the venues' REST and websocket clients together, maintained against the venues'
protocol changes weekly, asyncio-native, and lets every endpoint URL be rewritten, so
tests run its real clients against local servers (`convmon.sim.venues`); cryptofeed
brings its own process and callback model (a ``FeedHandler`` owning the event loop) and a
compiled extension, a poor fit for a component that must cancel cleanly inside our
supervisor.

In: the venue's market listing (``load_markets``) and its best bid/ask stream per pair
(Binance ``bookTicker`` through ``watch_bids_asks``, OKX ``tickers`` through
``watch_ticker``, Bybit depth-1 books through ``watch_order_book``). Out: `VenueTick`s to
a `VenueListener` (the market collector), and up/down transitions.

A venue is down when ccxt reports a network or exchange error, or when no update
arrives for ``message_timeout_s``; the feed then closes the client and starts over with
backoff (a new client loads the markets and subscribes again). A pair the venue does not
list is reported once and left out. Updates without a usable bid and ask are counted as
malformed and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from convmon.collectors.market.config import Method, VenueConfig
from convmon.monitor.backoff import Backoff
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.health import CollectorHealth
from convmon.monitor.secrets import scrub
from convmon.monitor.tasks import run_together

log = logging.getLogger(__name__)

DEFAULT_METHOD: dict[str, Method] = {
    "binance": "bids_asks", "okx": "ticker", "bybit": "order_book",
}


@dataclass(frozen=True, slots=True)
class VenueTick:
    venue: str
    token: str
    pair: str
    bid: float
    ask: float
    at: float

    @property
    def mid(self) -> float:
        return (self.bid + self.ask) / 2

    def token_in_quote(self) -> float:
        """The token's price in the pair's other currency (inverted when it is the quote)."""
        base = self.pair.split("/")[0]
        return self.mid if base == self.token else 1.0 / self.mid

    @property
    def other(self) -> str:
        base, quote = self.pair.split("/")
        return quote if base == self.token else base


class VenueListener(Protocol):
    async def on_venue_tick(self, tick: VenueTick) -> None: ...

    async def on_state(self, source: str, up: bool, detail: str) -> None: ...


def _rewrite(value: Any, endpoints: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _rewrite(v, endpoints) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, endpoints) for v in value]
    if isinstance(value, str):
        for prefix, replacement in endpoints.items():
            if value.startswith(prefix):
                return replacement + value[len(prefix):]
    return value


def _ccxt() -> tuple[Any, type[Exception], type[Exception]]:
    """ccxt.pro and its error classes. Imported on first use: the package loads every
    exchange it knows (seconds of CPU), which no other convmon command should pay for."""
    pro = importlib.import_module("ccxt.pro")
    errors = importlib.import_module("ccxt.base.errors")
    return pro, errors.BaseError, errors.BadSymbol


def make_exchange(venue: str, cfg: VenueConfig) -> Any:
    """A ccxt.pro client for ``venue`` restricted to spot markets, URLs rewritten."""
    pro, _, _ = _ccxt()
    cls = getattr(pro, venue)
    exchange = cls({"options": {"fetchMarkets": {"types": ["spot"]}, "defaultType": "spot"}})
    if cfg.endpoints:
        endpoints = {prefix: url.reveal() for prefix, url in cfg.endpoints.items()}
        exchange.urls["api"] = _rewrite(exchange.urls["api"], endpoints)
    return exchange


class VenueFeed:
    """One venue: load markets, watch each pair, restart on failure."""

    def __init__(
        self, venue: str, cfg: VenueConfig, *, listener: VenueListener,
        health: CollectorHealth, clock: Clock,
        factory: Callable[[str, VenueConfig], Any] = make_exchange,
    ) -> None:
        self.venue = venue
        self.name = f"market/{venue}"
        self.cfg = cfg
        self.listener = listener
        self.health = health
        self.clock = clock
        self.factory = factory
        self.method: Method = cfg.method or DEFAULT_METHOD[venue]
        self.last_message_at: float | None = None
        self.unlisted: set[str] = set()
        self._up = False

    async def run(self) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
        # Off the event loop: the first import of ccxt takes seconds.
        _, base_error, _ = await asyncio.to_thread(_ccxt)
        while True:
            honour_cancellation()
            exchange = self.factory(self.venue, self.cfg)
            try:
                await self._session(exchange, backoff)
            except (base_error, OSError, TimeoutError) as exc:
                honour_cancellation()
                detail = scrub(f"{type(exc).__name__}: {exc}")[:300]
                await self.health.error(f"{self.venue}_disconnected", detail)
                await self._set_up(False, detail)
            finally:
                with contextlib.suppress(Exception):
                    await exchange.close()
            await asyncio.sleep(backoff.next_delay())

    async def _session(self, exchange: Any, backoff: Backoff) -> None:
        await exchange.load_markets()
        pairs: dict[str, str] = {}
        for token, pair in self.cfg.pairs.items():
            if pair in exchange.markets:
                pairs[token] = pair
            elif pair not in self.unlisted:
                self.unlisted.add(pair)
                await self.health.error(f"{self.venue}_unlisted", f"{pair} is not listed")
        if not pairs:
            _, _, bad_symbol = _ccxt()
            raise bad_symbol(f"{self.venue} lists none of {sorted(self.cfg.pairs.values())}")
        loops = {f"{self.name}/{pair}": self._watch(exchange, token, pair, backoff)
                 for token, pair in pairs.items()}
        await run_together(loops)

    async def _watch(self, exchange: Any, token: str, pair: str, backoff: Backoff) -> None:
        watch = self._watcher(exchange, pair)
        while True:
            update = await asyncio.wait_for(watch(), self.cfg.message_timeout_s)
            now = self.clock.now()
            self.last_message_at = now
            bid, ask = _best(update, self.method)
            if bid is None or ask is None:
                self.health.malformed(self.venue, f"{pair}: no usable bid/ask")
                continue
            backoff.reset()
            await self._set_up(True, f"{pair} quoting")
            await self.listener.on_venue_tick(VenueTick(self.venue, token, pair, bid, ask, now))

    def _watcher(self, exchange: Any, pair: str) -> Callable[[], Awaitable[Any]]:
        if self.method == "bids_asks":
            async def bids_asks() -> Any:
                return (await exchange.watch_bids_asks([pair])).get(pair)
            return bids_asks
        if self.method == "order_book":
            return lambda: exchange.watch_order_book(pair, 1)
        return lambda: exchange.watch_ticker(pair)

    async def _set_up(self, up: bool, detail: str) -> None:
        if up != self._up:
            self._up = up
            await self.listener.on_state(self.venue, up, detail)


def _positive(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _best(update: Any, method: Method) -> tuple[float | None, float | None]:
    """Best bid and ask of a ccxt ticker or order book (None when missing or absurd)."""
    if not isinstance(update, dict):
        return None, None
    if method == "order_book":
        bids, asks = update.get("bids") or [], update.get("asks") or []
        bid = _positive(bids[0][0]) if bids and bids[0] else None
        ask = _positive(asks[0][0]) if asks and asks[0] else None
    else:
        bid, ask = _positive(update.get("bid")), _positive(update.get("ask"))
    if bid is not None and ask is not None and ask < bid:
        return None, None
    return bid, ask
