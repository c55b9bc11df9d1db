"""The offline demo drives the real collector, including the scripted USDT wobble."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.market.collector import MarketCollector
from convmon.collectors.market.config import MarketConfig
from convmon.collectors.market.pegs import peg_rows
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ScaledClock
from convmon.monitor.keys import Keys
from convmon.sim.scenarios.market import start_demo, usdt_peg_offset, venue_drift
from tests.market.conftest import payload, price_events
from tests.waiting import eventually


def test_usdt_wobble_script() -> None:
    assert usdt_peg_offset(0) == 0.0
    assert usdt_peg_offset(25 * 60) == -0.008
    assert usdt_peg_offset(40 * 60) == 0.0
    assert usdt_peg_offset((90 + 30) * 60) == -0.008
    assert venue_drift(45 * 60) == 0.0
    assert venue_drift(60 * 60) == 0.007
    assert venue_drift(75 * 60) == 0.0


async def test_demo_feeds_the_collector(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    speed = 600.0
    clock = ScaledClock(speed)
    demo = await start_demo(clock, speed)
    cfg = MarketConfig.model_validate(demo.config)
    collector = MarketCollector(
        cfg, redis=redis, keys=keys, bus=bus, clock=clock, registry=registry, instance="demo"
    )
    tasks = [asyncio.create_task(demo.run()), asyncio.create_task(collector.run())]
    try:
        async def off_peg() -> bool:
            events = await price_events(redis, keys, "USDT")
            return any(payload(e).price_usd < 0.995 for e in events)

        await eventually(off_peg, what="USDT off its peg")

        async def all_symbols() -> bool:
            priced = {payload(e).symbol for e in await price_events(redis, keys)}
            return priced == set(cfg.symbols) | cfg.venue_tokens()

        await eventually(all_symbols, what="every symbol priced")
        btc = [payload(e) for e in await price_events(redis, keys, "BTC")]
        assert all(50_000 < p.price_usd < 150_000 for p in btc)
        assert any(set(p.sources) == {"coinbase", "kraken"} for p in btc)
        honey = [payload(e) for e in await price_events(redis, keys, "HONEY")]
        assert all(list(p.sources) == ["coingecko"] for p in honey)

        async def bybit_drifts() -> bool:
            rows = peg_rows(await collector.pegs.read(), clock.now(), cfg.stale_after_s)
            return any(r.source == "bybit" and r.token == "USDC" and r.deviation is not None
                       and r.deviation > 0.005 for r in rows)

        await eventually(bybit_drifts, what="Bybit's USDC book drifting off the other venues")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await demo.close()
