"""The offline demo: the real collector follows the simulated scenario on anvil."""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.stablecoins.evm.collector import COLLECTOR, EvmStablecoinCollector
from convmon.collectors.stablecoins.evm.config import EvmStablecoinsConfig
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ScaledClock
from convmon.monitor.events import PaymentX402, StablecoinMint
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.sim.scenarios.ethereum import start_demo
from tests.stablecoins.conftest import flows, stream_events
from tests.waiting import eventually


async def test_demo_scenario_reaches_the_bus_through_the_collector(
    anvil_binary: str, redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    clock = ScaledClock(speed=600)
    demo = await start_demo(clock, 600)
    registry_cfg = EvmStablecoinsConfig.model_validate(demo.config)
    collectors = []
    for chain in registry_cfg.enabled_chains():
        health = CollectorHealth(chain.collector, redis=redis, keys=keys, bus=bus, clock=clock,
                                 registry=registry, source=chain.source)
        collectors.append(EvmStablecoinCollector(chain, bus=bus, redis=redis, keys=keys,
                                                 clock=clock, health=health))
    assert [c.name for c in collectors] == [COLLECTOR, "stablecoins_base"]
    tasks = [asyncio.create_task(demo.run()), *(asyncio.create_task(c.run()) for c in collectors)]
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

        async def x402_on_base() -> list[PaymentX402]:
            return [e.payload for e in await stream_events(redis, keys)
                    if isinstance(e.payload, PaymentX402)]

        await eventually(x402_on_base, "an x402 payment settled on the simulated Base")
        payment = (await x402_on_base())[0]
        assert payment.chain == "base" and payment.token == "USDC"
        assert payment.facilitator in {"coinbase", "payai", "x402rs", "unknown"}
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await demo.close()
