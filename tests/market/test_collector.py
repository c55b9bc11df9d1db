"""The market collector against local Coinbase, Kraken and CoinGecko servers and real Redis."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.events import CollectorStatus, decode_event
from convmon.monitor.keys import Keys
from convmon.sim.exchanges import CoinbaseFeedServer, CoinGeckoServer, KrakenFeedServer
from tests.market.conftest import (
    MakeConfig,
    RunCollector,
    payload,
    price_events,
    wait_event,
    websocket_settings,
)
from tests.waiting import eventually


async def test_two_disagreeing_sources_give_their_median(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, make_config: MakeConfig,
    run_collector: RunCollector, redis: Redis, keys: Keys,
) -> None:
    coinbase.prices["BTC-USD"] = 100_000.0
    kraken.prices["BTC/USD"] = 100_400.0
    async with run_collector(make_config()):
        event = await wait_event(
            redis, keys, "BTC", lambda p: set(p.sources) == {"coinbase", "kraken"},
            "a BTC price from both exchanges",
        )
        p = payload(event)
        assert p.price_usd == 100_200.0
        assert p.sources == {"coinbase": 100_000.0, "kraken": 100_400.0}
        assert p.rejected_sources == [] and p.stale_sources == []
        assert event.id == f"market:price:BTC:{event.position}"


async def test_stale_source_is_excluded_and_reported(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, make_config: MakeConfig,
    run_collector: RunCollector, redis: Redis, keys: Keys,
) -> None:
    coinbase.prices["BTC-USD"] = 100_000.0
    kraken.prices["BTC/USD"] = 101_000.0
    async with run_collector(make_config(stale_after_s=1.0)) as collector:
        await wait_event(redis, keys, "BTC", lambda p: len(p.sources) == 2, "both sources")
        coinbase.stale = True  # heartbeats go on, trades stop

        async def kraken_ticks() -> None:
            price = 101_000.0
            while True:
                price += 1.0
                await kraken.push_tick("BTC/USD", price)
                await asyncio.sleep(0.1)

        ticker = asyncio.create_task(kraken_ticks())
        try:
            event = await wait_event(
                redis, keys, "BTC", lambda p: p.stale_sources == ["coinbase"],
                "coinbase reported stale",
            )
        finally:
            ticker.cancel()
        p = payload(event)
        assert list(p.sources) == ["kraken"]
        assert p.price_usd == p.sources["kraken"] > 101_000.0
        # Stale is about prices, not the link: coinbase still heartbeats and stays up.
        assert collector.up["coinbase"] is True


async def test_dropped_connection_reconnects_and_resubscribes(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, make_config: MakeConfig,
    run_collector: RunCollector, redis: Redis, keys: Keys,
) -> None:
    coinbase.prices["BTC-USD"] = 100_000.0
    async with run_collector(make_config(kraken={"enabled": False})) as collector:
        await eventually(lambda: coinbase.subscribed("BTC-USD"), what="first subscription")
        await coinbase.drop_connections()
        await eventually(lambda: coinbase.accepted == 2, what="a reconnect")
        await eventually(lambda: coinbase.subscribed("BTC-USD"), what="resubscription")
        assert coinbase.subscribe_requests[-1] == ["BTC-USD", "USDT-USD"]
        await coinbase.push_tick("BTC-USD", 99_000.0)
        await wait_event(
            redis, keys, "BTC", lambda p: p.sources.get("coinbase") == 99_000.0,
            "a price after the reconnect",
        )
        # A connection that goes silent (no ticks, no heartbeats) is detected and replaced.
        coinbase.silent = True
        await eventually(lambda: collector.up["coinbase"] is False, what="silence detected")
        coinbase.silent = False
        await eventually(lambda: coinbase.accepted >= 3 and collector.up["coinbase"],
                         what="reconnect after silence")
        assert collector.feeds["coinbase"].connects >= 3


async def test_outlier_tick_is_rejected(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, coingecko: CoinGeckoServer,
    make_config: MakeConfig, run_collector: RunCollector, redis: Redis, keys: Keys,
) -> None:
    coinbase.prices["BTC-USD"] = 100_000.0
    kraken.prices["BTC/USD"] = 100_100.0
    coingecko.set_price("bitcoin", 100_050.0)
    cfg = make_config(coingecko={"mode": "always"}, outlier_pct=3.0)
    async with run_collector(cfg):
        await wait_event(redis, keys, "BTC", lambda p: len(p.sources) == 3, "three sources")
        await coinbase.push_tick("BTC-USD", 120_000.0)
        event = await wait_event(
            redis, keys, "BTC", lambda p: p.rejected_sources == ["coinbase"],
            "the coinbase outlier rejected",
        )
        p = payload(event)
        assert p.sources == {"coingecko": 100_050.0, "kraken": 100_100.0}
        assert p.price_usd == 100_075.0


async def test_rest_fallback_takes_over_and_hands_back(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, coingecko: CoinGeckoServer,
    make_config: MakeConfig, run_collector: RunCollector, redis: Redis, keys: Keys,
) -> None:
    coinbase.refuse = kraken.refuse = True
    coingecko.set_price("bitcoin", 98_000.0)
    coingecko.set_price("hivemapper", 0.021)
    kraken.prices["BTC/USD"] = 98_500.0
    async with run_collector(make_config()) as collector:
        event = await wait_event(
            redis, keys, "BTC", lambda p: list(p.sources) == ["coingecko"], "REST fallback"
        )
        assert payload(event).price_usd == 98_000.0
        # Errors are recorded without the URL (it may carry a key).
        last_error = (await redis.hgetall(keys.collector_status("market")))[b"last_error"]
        assert b"HTTP 503" in last_error
        assert coinbase.url.encode() not in last_error and kraken.url.encode() not in last_error
        await wait_event(redis, keys, "HONEY", lambda p: p.price_usd == 0.021, "HONEY")
        assert "bitcoin" in coingecko.requests[-1]

        kraken.refuse = False
        await wait_event(
            redis, keys, "BTC", lambda p: p.sources == {"kraken": 98_500.0},
            "kraken taking BTC back",
        )
        seen = len(coingecko.requests)
        await eventually(lambda: len(coingecko.requests) >= seen + 3, what="more polls")
        # CoinGecko keeps the symbols no live websocket covers and gives BTC back.
        assert all("bitcoin" not in ids for ids in coingecko.requests[seen:])
        assert all("hivemapper" in ids for ids in coingecko.requests[seen:])
        assert collector.up == {"coinbase": False, "kraken": True, "coingecko": True}

        kraken.refuse = True
        await kraken.drop_connections()
        await eventually(
            lambda: "bitcoin" in coingecko.requests[-1], what="fallback after kraken drops"
        )


async def test_rest_rate_limit_honours_retry_after(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, coingecko: CoinGeckoServer,
    make_config: MakeConfig, run_collector: RunCollector, registry: CollectorRegistry,
    redis: Redis, keys: Keys,
) -> None:
    coingecko.set_price("hivemapper", 0.02)
    coingecko.rate_limit_next = 1
    coingecko.retry_after_s = 1.0
    loop = asyncio.get_running_loop()
    async with run_collector(make_config()):
        start = loop.time()
        await wait_event(redis, keys, "HONEY", lambda p: True, "HONEY after the 429")
        assert loop.time() - start >= 0.9
    assert registry.get_sample_value(
        "convmon_collector_errors_total", {"collector": "market", "kind": "coingecko_rate_limited"}
    ) == 1.0


async def test_sampling_bounds_the_event_rate(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, make_config: MakeConfig,
    run_collector: RunCollector, redis: Redis, keys: Keys,
) -> None:
    cfg = make_config(
        kraken={"enabled": False}, sample_interval_s=60.0, move_threshold_pct=1.0, min_gap_s=0.5
    )
    coinbase.prices["BTC-USD"] = 100_000.0
    async with run_collector(cfg):
        await wait_event(redis, keys, "BTC", lambda p: True, "the first sample")
        for i in range(300):  # small moves: no event until the interval is over
            await coinbase.push_tick("BTC-USD", 100_000.0 + (i % 7) * 10)
        await coinbase.push_tick("BTC-USD", 100_001.0)

        # A 3% move is published at once (once min_gap has passed since the first sample,
        # so it is pushed until it shows). Ticks are handled in order: when its event is in
        # the stream, every small move before it has been handled, and none was published.
        async def big_move_published() -> bool:
            await coinbase.push_tick("BTC-USD", 103_000.0)
            return any(payload(e).price_usd == 103_000.0
                       for e in await price_events(redis, keys, "BTC"))

        await eventually(big_move_published, "the 3% move")
        assert [payload(e).price_usd for e in await price_events(redis, keys, "BTC")][1:] == [
            103_000.0]

        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(100):  # large moves back and forth: at most one per min_gap
            await coinbase.push_tick("BTC-USD", 100_000.0 if i % 2 else 105_000.0)
            await asyncio.sleep(0.01)
        events = await price_events(redis, keys, "BTC")
        elapsed = loop.time() - start
        assert 2 <= len(events) <= 2 + int(elapsed / 0.5) + 1
        positions = [e.position for e in events]
        assert all(b - a >= 500 for a, b in itertools.pairwise(positions))


async def test_garbage_is_counted_and_skipped(
    coinbase: CoinbaseFeedServer, kraken: KrakenFeedServer, coingecko: CoinGeckoServer,
    make_config: MakeConfig, run_collector: RunCollector, registry: CollectorRegistry,
    redis: Redis, keys: Keys,
) -> None:
    coingecko.set_price("hivemapper", 0.02)
    coingecko.garbage_next = 1
    async with run_collector(make_config()) as collector:
        await eventually(lambda: collector.up["coinbase"] and collector.up["kraken"], what="up")
        await coinbase.send_raw("this is not json")
        await coinbase.send_raw('{"type":"ticker","product_id":"BTC-USD","price":"abc"}')
        await coinbase.send_raw('{"type":"last_match","product_id":"BTC-USD"}')  # known, unused
        await kraken.send_raw("[1, 2, 3]")
        await kraken.send_raw('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD"}]}')

        def malformed(what: str) -> float:
            value = registry.get_sample_value(
                "convmon_collector_malformed_payloads_total",
                {"collector": "market", "what": what},
            )
            return value or 0.0

        await eventually(
            lambda: malformed("coinbase") == 2 and malformed("kraken") == 2
            and malformed("coingecko") == 1,
            what="garbage counted",
        )
        await coinbase.push_tick("BTC-USD", 97_000.0)
        await wait_event(
            redis, keys, "BTC", lambda p: p.sources.get("coinbase") == 97_000.0,
            "a price after the garbage",
        )
        await wait_event(redis, keys, "HONEY", lambda p: p.price_usd == 0.02, "HONEY")
        assert collector.up["coinbase"] and collector.up["kraken"]


async def test_refused_product_is_dropped_and_maintenance_is_down(
    make_config: MakeConfig, run_collector: RunCollector, registry: CollectorRegistry,
    kraken: KrakenFeedServer, redis: Redis, keys: Keys,
) -> None:
    # A venue that does not list USDT-USD refuses the whole Coinbase subscribe request.
    coinbase = CoinbaseFeedServer(listed={"BTC-USD"}, heartbeat_interval_s=0.2)
    await coinbase.start()
    try:
        coinbase.prices["BTC-USD"] = 100_000.0
        kraken.system = "maintenance"
        cfg = make_config(coinbase={"url": coinbase.url})
        async with run_collector(cfg) as collector:
            await wait_event(
                redis, keys, "BTC", lambda p: "coinbase" in p.sources, "coinbase BTC"
            )
            assert coinbase.subscribe_requests[:2] == [["BTC-USD", "USDT-USD"], ["BTC-USD"]]
            assert collector.feeds["coinbase"].refused == {"USDT-USD"}
            refusals = registry.get_sample_value(
                "convmon_collector_errors_total",
                {"collector": "market", "kind": "coinbase_refused"},
            )
            assert refusals == 1.0
            # Kraken in maintenance: connected, but never counted as up.
            await eventually(lambda: kraken.accepted >= 2, what="kraken retried")
            assert collector.up["kraken"] is False
            kraken.system = "online"
            await eventually(lambda: collector.up["kraken"], what="kraken back online")
    finally:
        await coinbase.close()


async def test_unreachable_feeds_report_the_collector_down(
    make_config: MakeConfig, run_collector: RunCollector, redis: Redis, keys: Keys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every collector reports the same way: feeds that were never reachable make the
    market collector disconnected in its status (what `convmon status`, the
    CollectorDisconnected rule and convmon_collector_up read), with a log line."""
    nowhere = websocket_settings("ws://127.0.0.1:9/")  # discard port: nothing listens
    config = make_config(coinbase=nowhere, kraken=nowhere, coingecko={"enabled": False})
    caplog.set_level(logging.INFO)
    async with run_collector(config):
        await eventually(lambda: redis.sismember(keys.collectors, "market"), "market reported")
        status = await redis.hgetall(keys.collector_status("market"))
        assert status[b"connected"] == b"0"
        assert b"no price source up" in status[b"detail"]

        async def downs() -> list[tuple[str, bool]]:
            events = [decode_event(f[b"data"]) for _, f in await redis.xrange(keys.events)]
            return [(e.payload.collector, e.payload.connected) for e in events
                    if isinstance(e.payload, CollectorStatus)]

        # The status hash and the status event are two writes: wait for the event.
        await eventually(downs, "the collector's down event")
        assert await downs() == [("market", False)]
    assert any(r.getMessage() == "price source down" for r in caplog.records)
