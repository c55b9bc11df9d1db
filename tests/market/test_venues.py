"""Stablecoin venues through ccxt's own websocket clients against local Binance, OKX and
Bybit servers speaking their wire protocols: pricing in USD through the quote token,
per-venue deviation from the median of the fresh venues, spreads, staleness, dropped
connections, garbage frames and unlisted pairs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis.asyncio import Redis

from convmon.collectors.market.collector import MarketCollector
from convmon.collectors.market.config import MarketConfig, VenueConfig
from convmon.collectors.market.pegs import PegQuote, PegRow, peg_rows
from convmon.collectors.market.venues import make_exchange
from convmon.monitor.keys import Keys
from convmon.sim.exchanges import KrakenFeedServer
from convmon.sim.venues import VenueServer
from tests.market.conftest import MakeConfig, RunCollector, payload, price_events
from tests.waiting import eventually

VENUES = ("binance", "okx", "bybit")


@pytest.fixture
async def venues() -> AsyncIterator[dict[str, VenueServer]]:
    servers = {name: await VenueServer(name, ["USDC/USDT", "FDUSD/USDT"]).start()
               for name in VENUES}
    yield servers
    for server in servers.values():
        await server.close()


def venue_config(servers: dict[str, VenueServer], **extra: Any) -> dict[str, Any]:
    return {name: {"pairs": {"USDC": "USDC/USDT"}, "endpoints": s.endpoints,
                   "message_timeout_s": 30.0, "backoff_initial_s": 0.05,
                   "backoff_max_s": 0.2, **extra.get(name, {})}
            for name, s in servers.items()}


async def quoting(servers: dict[str, VenueServer], kraken: KrakenFeedServer,
                  stop: asyncio.Event, usdc: dict[str, tuple[float, float]]) -> None:
    """Keep every venue quoting (as live books do) until ``stop``."""
    while not stop.is_set():
        await kraken.push_tick("USDT/USD", 1.0)
        for name, server in servers.items():
            bid, ask = usdc.get(name, (0.9999, 1.0001))
            await server.push("USDC/USDT", bid, ask)
        await asyncio.sleep(0.05)


async def rows(collector: MarketCollector) -> dict[str, PegRow]:
    quotes = await collector.pegs.read()
    now = collector.clock.now()
    return {r.source: r for r in peg_rows(quotes, now, collector.config.stale_after_s)
            if r.token == "USDC"}


async def test_venues_price_usdc_and_one_drifting_venue_shows(
    venues: dict[str, VenueServer], kraken: KrakenFeedServer, make_config: MakeConfig,
    run_collector: RunCollector, redis: Redis, keys: Keys,
) -> None:
    cfg = make_config(coinbase={"enabled": False}, coingecko={"enabled": False},
                      venues=venue_config(venues))
    usdc = {"bybit": (1.0195, 1.0205)}  # bybit's book drifts 2% above the others
    stop = asyncio.Event()
    feeder = asyncio.create_task(quoting(venues, kraken, stop, usdc))
    try:
        async with run_collector(cfg) as collector:
            async def all_venues() -> bool:
                events = await price_events(redis, keys, "USDC")
                return any(set(VENUES) <= set(payload(e).sources) for e in events)
            await eventually(all_venues, "USDC priced by the three venues")

            async def stored() -> bool:
                found = await rows(collector)
                return set(VENUES) <= set(found) and abs(found["bybit"].price_usd - 1.02) < 1e-9
            await eventually(stored, "the venues' quotes stored")
            found = await rows(collector)
            assert abs(found["binance"].price_usd - 1.0) < 1e-9
            assert abs(found["bybit"].price_usd - 1.02) < 1e-9
            bybit = found["bybit"].deviation
            assert bybit is not None and abs(bybit - 0.02) < 1e-6
            assert found["binance"].deviation == 0.0
            spread = found["okx"].spread
            assert spread is not None and abs(spread - 0.0002) < 1e-9
            for server in venues.values():
                assert server.rest_requests  # markets were loaded from the local venue
            assert {s for v in venues.values() for s in v.subscriptions} == {
                "usdcusdt@bookTicker", "tickers:USDC-USDT", "orderbook.1.USDCUSDT"}
    finally:
        stop.set()
        await feeder


async def test_drops_garbage_and_staleness(
    venues: dict[str, VenueServer], kraken: KrakenFeedServer, make_config: MakeConfig,
    run_collector: RunCollector, registry: CollectorRegistry,
) -> None:
    cfg = make_config(coinbase={"enabled": False}, coingecko={"enabled": False},
                      stale_after_s=2.0, venues=venue_config(venues))
    stop = asyncio.Event()
    feeder = asyncio.create_task(quoting(venues, kraken, stop, {}))
    try:
        async with run_collector(cfg) as collector:
            async def every_venue_fresh() -> bool:
                found = await rows(collector)
                return all(name in found and found[name].fresh for name in VENUES)
            await eventually(every_venue_fresh, "every venue quoting")
            okx = venues["okx"]
            before = okx.connections
            await okx.send_raw("}{ not json")
            await okx.drop_connections()
            await eventually(lambda: okx.connections > before, "OKX reconnected")
            await eventually(lambda: okx.subscriptions.count("tickers:USDC-USDT") >= 2,
                             "OKX subscribed again")
            await eventually(every_venue_fresh, "every venue quoting after the drop")
            venues["binance"].stale = True

            async def binance_stale() -> bool:
                found = await rows(collector)
                return not found["binance"].fresh and found["binance"].deviation is None
            await eventually(binance_stale, "binance stale")
            assert (await rows(collector))["okx"].fresh
    finally:
        stop.set()
        await feeder


async def test_an_unlisted_pair_is_reported_and_the_rest_runs(
    venues: dict[str, VenueServer], kraken: KrakenFeedServer, make_config: MakeConfig,
    run_collector: RunCollector, redis: Redis, keys: Keys,
) -> None:
    one = {"binance": venues["binance"]}
    cfg = make_config(coinbase={"enabled": False}, coingecko={"enabled": False},
                      venues={**venue_config(one, binance={"pairs": {
                          "USDC": "USDC/USDT", "PYUSD": "PYUSD/USDT"}}),
                          "okx": {"enabled": False}, "bybit": {"enabled": False}})
    stop = asyncio.Event()
    feeder = asyncio.create_task(quoting(one, kraken, stop, {}))
    try:
        async with run_collector(cfg) as collector:
            async def usdc_priced() -> bool:
                return "binance" in await rows(collector)
            await eventually(usdc_priced, "USDC priced despite the unlisted pair")
            status = await redis.hgetall(keys.collector_status("market"))
            assert b"PYUSD/USDT is not listed" in status[b"last_error"]
    finally:
        stop.set()
        await feeder


def test_peg_rows_need_two_fresh_sources_for_a_median() -> None:
    quotes = [PegQuote("USDC", "a", 1.0, 100.0, "USDC/USDT", 0.99, 1.01),
              PegQuote("USDC", "b", 1.1, 10.0)]
    (a, b) = peg_rows(quotes, now=101.0, stale_after_s=30.0)
    assert a.fresh and a.deviation is None and a.spread == pytest.approx(0.02)
    assert not b.fresh and b.deviation is None and b.spread is None


def test_venue_configuration_merges_defaults_and_refuses_nonsense() -> None:
    cfg = MarketConfig.model_validate({"venues": {"okx": {"enabled": False},
                                                  "binance": {"pairs": {"USDT": "USDT/USD"}}}})
    assert set(cfg.active_venues()) == {"binance", "bybit"}
    assert cfg.venues["binance"].pairs == {"USDT": "USDT/USD"}
    assert cfg.venue_tokens() == {"USDT", "USDC"}
    assert cfg.enabled_sources()[-2:] == ["binance", "bybit"]
    for bad in ({"kucoin": {"pairs": {"USDC": "USDC/USDT"}}},
                {"okx": {"pairs": {"USDC": "USDCUSDT"}}},
                {"okx": {"pairs": {"USDC": "DAI/USDT"}}},
                {"okx": {"method": "trades"}}):
        with pytest.raises(ValidationError):
            MarketConfig.model_validate({"venues": bad})


def test_venue_endpoints_are_secrets_and_rewrite_every_matching_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_GATEWAY", "https://gw.example/key-123")
    venue = VenueConfig(pairs={"USDC": "USDC/USDT"},
                        endpoints={"https://api.binance.com": "env:TEST_GATEWAY"})
    assert "key-123" not in repr(venue.endpoints)
    exchange = make_exchange("binance", venue)
    public = exchange.urls["api"]["public"]
    assert public.startswith("https://gw.example/key-123/api/")
    assert exchange.urls["api"]["ws"]["spot"].startswith("wss://stream.binance.com")
