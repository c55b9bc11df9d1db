"""Local exchange servers and a running market collector, against the real Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.market.collector import MarketCollector
from convmon.collectors.market.config import MarketConfig
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.events import Event, MarketPrice, decode_event
from convmon.monitor.keys import Keys
from convmon.sim.exchanges import CoinbaseFeedServer, CoinGeckoServer, KrakenFeedServer
from tests.waiting import eventually


@pytest.fixture
async def coinbase() -> AsyncIterator[CoinbaseFeedServer]:
    server = CoinbaseFeedServer(heartbeat_interval_s=0.2)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def kraken() -> AsyncIterator[KrakenFeedServer]:
    server = KrakenFeedServer(heartbeat_interval_s=0.2)
    await server.start()
    yield server
    await server.close()


@pytest.fixture
async def coingecko() -> AsyncIterator[CoinGeckoServer]:
    server = CoinGeckoServer()
    await server.start()
    yield server
    await server.close()


def websocket_settings(url: str) -> dict[str, Any]:
    """Fast reconnects for tests; timeouts wide enough that a loaded machine's scheduling
    delay is not mistaken for a silent or unreachable server."""
    return {
        "url": url,
        "message_timeout_s": 5.0,
        "ping_interval_s": 1.0,
        "connect_timeout_s": 15.0,
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }


MakeConfig = Callable[..., MarketConfig]


@pytest.fixture
def make_config(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, coingecko: CoinGeckoServer
) -> MakeConfig:
    def make(**overrides: Any) -> MarketConfig:
        raw: dict[str, Any] = {
            "symbols": {
                "BTC": {"coinbase": "BTC-USD", "kraken": "BTC/USD", "coingecko": "bitcoin"},
                "USDT": {"coinbase": "USDT-USD", "kraken": "USDT/USD", "coingecko": "tether"},
                "HONEY": {"coingecko": "hivemapper"},
            },
            "coinbase": websocket_settings(coinbase.url),
            "kraken": websocket_settings(kraken.url),
            "coingecko": {"url": coingecko.url, "poll_interval_s": 0.2, "timeout_s": 15.0},
            "stale_after_s": 30.0,
            "sample_interval_s": 0.2,
            "min_gap_s": 0.05,
            "health_interval_s": 0.2,
            "venues": {name: {"enabled": False} for name in ("binance", "okx", "bybit")},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        return MarketConfig.model_validate(raw)

    return make


RunCollector = Callable[[MarketConfig], contextlib.AbstractAsyncContextManager[MarketCollector]]


@pytest.fixture
def run_collector(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> RunCollector:
    @contextlib.asynccontextmanager
    async def run(config: MarketConfig) -> AsyncIterator[MarketCollector]:
        collector = MarketCollector(
            config, redis=redis, keys=keys, bus=bus, clock=SystemClock(),
            registry=registry, instance="test-1",
        )
        task = asyncio.create_task(collector.run())
        try:
            yield collector
            assert not task.done(), "the collector stopped on its own"
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return run


async def price_events(redis: Redis, keys: Keys, symbol: str | None = None) -> list[Event]:
    out: list[Event] = []
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], await redis.xrange(keys.events))
    for _, fields in entries:
        if fields[b"kind"] != b"market.price":
            continue
        event = decode_event(fields[b"data"])
        assert isinstance(event.payload, MarketPrice)
        if symbol is None or event.payload.symbol == symbol:
            out.append(event)
    return out


def payload(event: Event) -> MarketPrice:
    assert isinstance(event.payload, MarketPrice)
    return event.payload


async def wait_event(
    redis: Redis, keys: Keys, symbol: str, pred: Callable[[MarketPrice], bool], what: str
) -> Event:
    """The newest ``market.price`` event of ``symbol`` whose payload satisfies ``pred``."""

    found: list[Event] = []

    async def check() -> bool:
        found[:] = [e for e in await price_events(redis, keys, symbol) if pred(payload(e))]
        return bool(found)

    await eventually(check, what)
    return found[-1]
