"""The offline Tron demo drives the real collector: Issue, Redeem and DestroyedBlackFunds
of USDT reach the bus as mints and burns."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.tron.collector import COLLECTOR, TronStablecoinCollector
from convmon.collectors.stablecoins.tron.config import TronStablecoinsConfig
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ScaledClock
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.sim.scenarios.tron import start_demo
from tests.tron.conftest import flows
from tests.waiting import eventually


async def test_demo_feeds_the_collector(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry,
) -> None:
    speed = 1200.0
    clock = ScaledClock(speed)
    demo = await start_demo(clock, speed)
    cfg = TronStablecoinsConfig.model_validate(demo.config)
    health = CollectorHealth(COLLECTOR, redis=redis, keys=keys, bus=bus, clock=clock,
                             registry=registry, source=cfg.source)
    collector = TronStablecoinCollector(cfg, bus=bus, clock=clock, health=health,
                                        registry=registry)
    tasks = [asyncio.create_task(demo.run()), asyncio.create_task(collector.run())]
    try:
        async def every_kind() -> bool:
            methods = {e.payload.method for e in await flows(redis, keys)}
            return methods == {"Issue", "Redeem", "DestroyedBlackFunds"}

        await eventually(every_kind, "Issue, Redeem and DestroyedBlackFunds published")
        events = await flows(redis, keys)
        assert {e.chain for e in events} == {"tron"}
        assert all(e.payload.track == "offshore" for e in events)
        mints = [e for e in events if e.kind == "stablecoin.mint"]
        assert all(e.payload.amount.units % (100_000_000 * 10**6) == 0 for e in mints)
        assert len({e.id for e in events}) == len(events)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await demo.close()
