"""The offline demo: the real collector follows the simulated scenario on anvil."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.evm.collector import COLLECTOR, EvmStablecoinCollector
from convmon.collectors.stablecoins.evm.config import EvmChainConfig
from convmon.collectors.stablecoins.evm.decode import SOURCE
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ScaledClock
from convmon.monitor.events import StablecoinMint
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.sim.scenarios.ethereum import start_demo
from tests.stablecoins.conftest import flows
from tests.waiting import eventually


async def test_demo_scenario_reaches_the_bus_through_the_collector(
    anvil_binary: str, redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    clock = ScaledClock(speed=600)
    demo = await start_demo(clock, 600)
    cfg = EvmChainConfig.model_validate(demo.config["chains"]["ethereum"])
    health = CollectorHealth(COLLECTOR, redis=redis, keys=keys, bus=bus, clock=clock,
                             registry=registry, source=SOURCE)
    collector = EvmStablecoinCollector(cfg, bus=bus, redis=redis, keys=keys, clock=clock,
                                            health=health)
    tasks = [asyncio.create_task(demo.run()), asyncio.create_task(collector.run())]
    try:
        async def big_usdt_issue() -> bool:
            return any(
                isinstance(e.payload, StablecoinMint) and e.payload.token == "USDT"
                and e.payload.amount.units == 250_000_000 * 10**6
                for e in await flows(redis, keys))

        await eventually(big_usdt_issue, "the scripted $250M USDT Issue")
        events = await flows(redis, keys)
        tokens = {e.payload.token for e in events}  # type: ignore[union-attr]
        assert {"USDC", "USDT"} <= tokens
        usdt = next(e for e in events if e.payload.token == "USDT")  # type: ignore[union-attr]
        assert usdt.payload.method == "Issue"  # type: ignore[union-attr]
        # Block times follow the accelerated demo clock, not the wall clock.
        assert usdt.occurred_at - demo.started >= 15 * 60 - 1
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await demo.close()
