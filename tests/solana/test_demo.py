"""The demo scenario runs the real collectors against the local node on a fast clock."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.depin import plugin as depin
from convmon.collectors.solana.collector import SolanaTxCollector
from convmon.collectors.stablecoins import solana as sc
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ScaledClock
from convmon.monitor.events import DepinPayout, StablecoinMint, StablecoinSupply
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.sim.scenarios import solana as demo
from tests.solana.conftest import read_events, stop
from tests.waiting import eventually


async def test_demo_scenario_flows_through_both_collectors(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    clock = ScaledClock(speed=20_000)
    source = await demo.start_demo(clock, 20_000)
    depin_cfg = depin.DepinConfig.model_validate(source.config["depin"])
    sc_cfg = sc.StablecoinsSolanaConfig.model_validate(source.config["stablecoins_solana"])
    assert depin_cfg.networks["hivemapper"].expected_cadence_s == demo.HIVEMAPPER_EVERY

    def health(name: str) -> CollectorHealth:
        return CollectorHealth(
            name, redis=redis, keys=keys, bus=bus, clock=clock, registry=registry
        )

    collectors = [
        SolanaTxCollector(
            "depin",
            depin_cfg.rpc,
            depin.watched_addresses(depin_cfg),
            depin.make_extractor(depin_cfg),
            redis=redis,
            keys=keys,
            bus=bus,
            clock=clock,
            health=health("depin"),
            idle_poll_s=0.05,
        ),
        SolanaTxCollector(
            "stablecoins_solana",
            sc_cfg.rpc,
            [t.mint for t in sc_cfg.active_tokens().values()],
            sc.make_extractor(sc_cfg),
            redis=redis,
            keys=keys,
            bus=bus,
            clock=clock,
            health=health("stablecoins_solana"),
            idle_poll_s=0.05,
        ),
        sc.SupplyPoller(sc_cfg, bus=bus, clock=clock, health=health("stablecoins_solana")),
    ]
    tasks = [asyncio.create_task(c.run()) for c in collectors]
    watched = len(depin.watched_addresses(depin_cfg)) + 4
    await eventually(lambda: source.server.subscriptions == watched)
    feeder = asyncio.create_task(source.run())
    try:

        async def scenario_seen() -> bool:
            for t in tasks:
                if t.done():
                    t.result()  # a collector died: show why
            events = await read_events(redis, keys)
            hivemapper = [
                e
                for e in events
                if isinstance(e.payload, DepinPayout) and e.payload.network == "hivemapper"
            ]
            big = [
                e
                for e in events
                if isinstance(e.payload, StablecoinMint)
                and e.payload.amount.units == demo.BIG_MINT_UNITS
            ]
            return len(hivemapper) == demo.HIVEMAPPER_RUNS and len(big) == 1

        await eventually(scenario_seen, "the demo scenario in the stream")
    finally:
        await stop(feeder, *tasks)
        await source.close()
    events = await read_events(redis, keys)
    networks = {e.payload.network for e in events if isinstance(e.payload, DepinPayout)}
    assert networks == {"helium", "hivemapper", "nosana"}
    assert any(isinstance(e.payload, StablecoinSupply) for e in events)
    ids = [e.id for e in events]
    assert len(ids) == len(set(ids))
