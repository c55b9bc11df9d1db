"""The demo's DePIN supply flows run through the real flows collector and supply poll, and the
aggregates see Helium turn deflationary with its supply reconciled (no drift)."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.depin import plugin as depin
from convmon.collectors.depin.flows import FLOWS_NAME, make_flow_extractor, supply_poller
from convmon.collectors.solana.collector import SolanaTxCollector
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ScaledClock
from convmon.monitor.events import DepinBurn, DepinEmission, DepinSupply
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.sim.scenarios import solana as demo
from tests.solana.conftest import read_events, stop
from tests.waiting import eventually


async def test_demo_turns_helium_deflationary(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    clock = ScaledClock(speed=20_000)
    source = await demo.start_demo(clock, 20_000)
    cfg = depin.DepinConfig.model_validate(source.config["depin"])
    networks = cfg.flow_networks()
    health = CollectorHealth(FLOWS_NAME, redis=redis, keys=keys, bus=bus, clock=clock,
                             registry=registry)
    mints = [m.mint for net in networks.values() for m in net.mints]
    components: list[Any] = [
        SolanaTxCollector(FLOWS_NAME, cfg.rpc, mints, make_flow_extractor(networks, cfg.source),
                          redis=redis, keys=keys, bus=bus, clock=clock, health=health,
                          idle_poll_s=0.05),
        supply_poller(networks, cfg.rpc, cfg.supply_flows, cfg.source, bus=bus, clock=clock,
                      health=health),
    ]
    tasks = [asyncio.create_task(c.run()) for c in components]
    store = AggregateStore(redis, keys, clock, AggregatesConfig())
    await store.load()
    await eventually(lambda: source.server.subscriptions == len(mints))
    feeder = asyncio.create_task(source.run())
    try:

        async def deflationary() -> bool:
            for t in tasks:
                if t.done():
                    t.result()
            await store.apply(await read_events(redis, keys))
            snap = await store.snapshot(["depin_flows"])
            hnt = snap["depin_flows"]["tokens"].get("HNT")
            return bool(hnt and hnt["burned_30d"] > 0 and hnt["burned_30d"] >= hnt["emitted_30d"]
                        and hnt["supply_drift"] is not None)

        await eventually(deflationary, "Helium burning at least what it emits")
    finally:
        await stop(feeder, *tasks)
        await source.close()
    events = await read_events(redis, keys)
    await store.apply(events)
    purposes = {(type(e.payload).__name__, e.payload.token, e.payload.purpose)
                for e in events if isinstance(e.payload, DepinEmission | DepinBurn)}
    assert {("DepinEmission", "HNT", "rewards"), ("DepinBurn", "HNT", "data_credits"),
            ("DepinEmission", "DC", "data_credits"), ("DepinBurn", "DC", "network_usage"),
            ("DepinBurn", "HONEY", "unknown"), ("DepinEmission", "HONEY", "unknown")} <= purposes
    assert any(isinstance(e.payload, DepinSupply) for e in events)
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))
