"""The demo source: a simulated chain the curated list attributes, drifting leaders, a reorg."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from convmon.collectors.bitcoin.plugin import BitcoinConfig
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.events import BitcoinReorg
from convmon.sim.scenarios.bitcoin import REORG_AFTER, start_demo
from tests.bitcoin.helpers import events, make_collector


async def test_demo_feeds_a_chain_the_collector_follows(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    clock = ManualClock(1_780_000_000.0)
    demo = await start_demo(clock, speed=60.0)
    try:
        cfg = BitcoinConfig.model_validate(demo.config)
        assert cfg.esplora.base_url == demo.server.base_url and cfg.pools.source == "builtin"
        col = make_collector(bus, registry, cfg.esplora.base_url, None,
                             backfill=cfg.backfill_blocks, batch=50)
        try:
            await col.sync()
            for _ in range(REORG_AFTER + 3):
                await demo.step()
                await col.sync()
        finally:
            await col.source.close()
        assert demo.reorged
        tip = demo.server.tip
        assert abs(tip["timestamp"] - clock.now()) < 1
    finally:
        await demo.close()
    evs = await events(bus)
    reorgs = [e for e in evs if isinstance(e.payload, BitcoinReorg)]
    assert len(reorgs) == 1 and reorgs[0].payload.depth == 2
    blocks = [e.payload for e in evs if e.kind == "bitcoin.block"]
    pools = [b.pool for b in blocks]
    assert pools.count("unknown") / len(pools) < 0.1
    leaders = (pools.count("foundryusa") + pools.count("antpool")) / len(pools)
    assert 0.38 < leaders < 0.62
    assert {"viabtc", "f2pool", "spiderpool"} <= set(pools)
    assert any(b.match == "address" for b in blocks)


async def test_leaders_drift_past_half() -> None:
    from convmon.sim.scenarios.bitcoin import Scenario

    s = Scenario(seed=1)
    early = [s.next_pool().tag for _ in range(300)]
    late = [s.next_pool().tag for _ in range(600)]

    def share(tags: list[str]) -> float:
        return sum(t in ("/Foundry USA Pool #dropgold/", "/AntPool/") for t in tags) / len(tags)

    assert share(early[:150]) < 0.5 < share(late)


async def test_demo_run_mines_on_the_scaled_clock() -> None:
    import asyncio
    import random

    from convmon.monitor.clock import ScaledClock
    from convmon.sim.scenarios.bitcoin import BLOCK_SPACING_S
    from tests.waiting import eventually

    # The demo draws its block gaps from random.Random(7), clamped to 60 s .. 3 spacings,
    # and sleeps them on the scaled clock: block timestamps (scaled time) are at least that
    # far apart, while the wall clock spends only milliseconds on them.
    draws = random.Random(7)
    expected_gaps = [
        min(3 * BLOCK_SPACING_S, max(60.0, draws.expovariate(1 / BLOCK_SPACING_S)))
        for _ in range(3)
    ]
    clock = ScaledClock(speed=60_000.0)
    demo = await start_demo(clock, speed=60_000.0)
    start = demo.server.tip["height"]
    task = asyncio.create_task(demo.run())
    try:
        await eventually(lambda: demo.server.tip["height"] >= start + 3, "three blocks mined")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await demo.close()
    timestamps = {b[0]["height"]: b[0]["timestamp"] for b in demo.server.blocks}
    gaps = [timestamps[start + i] - timestamps[start + i - 1] for i in (1, 2, 3)]
    # whole seconds: each timestamp is truncated, so a gap may come out one second short
    assert all(gap >= int(want) - 1 for gap, want in zip(gaps, expected_gaps, strict=True)), (
        gaps, expected_gaps)
    assert len(set(gaps)) > 1  # drawn, not a constant spacing


async def test_demo_template_clusters_form_over_three_blocks(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    import asyncio

    from convmon.collectors.bitcoin.attribution import Attributor
    from convmon.collectors.bitcoin.registry import curated_registry
    from convmon.collectors.bitcoin.stratum_collector import StratumCollector
    from convmon.collectors.bitcoin.stratum_sources import MempoolStratumSource
    from convmon.collectors.bitcoin.stratum_state import read_state
    from convmon.collectors.bitcoin.templates import PoolNamer
    from convmon.monitor.backoff import Backoff
    from convmon.monitor.health import CollectorHealth
    from tests.waiting import eventually

    clock = ManualClock(1_780_000_000.0)
    demo = await start_demo(clock, speed=60.0)
    assert demo.stratum is not None
    cfg = BitcoinConfig.model_validate(demo.config)
    assert cfg.stratum.enabled and cfg.stratum.ws_url == demo.stratum.ws_url
    health = CollectorHealth("bitcoin_stratum", redis=bus.redis, keys=bus.keys, bus=bus,
                             clock=clock, registry=registry)
    collector = StratumCollector(
        bus=bus, health=health, clock=clock, namer=PoolNamer(Attributor(curated_registry())),
        sources=[MempoolStratumSource(demo.stratum.ws_url, clock, Backoff(0.01, 0.05))],
        settings=cfg.stratum.template_settings(), flush_interval_s=0.05,
    )
    task = asyncio.create_task(collector.run())
    try:
        await eventually(lambda: demo.stratum is not None and demo.stratum.websocket_count == 1,
                         "the collector tracking stratum jobs")

        async def joined() -> bool:
            found = (await read_state(bus.redis, bus.keys)).get("providers") or {}
            return bool(found.get("poolin") == "antpool" and found.get("luxor") == "secpool"
                        and found.get("foundryusa") == "foundryusa")

        for _ in range(3):
            clock.advance(600)
            await demo.step()
            await demo.publish_jobs(1)  # a refresh on the same block
        await eventually(joined, "proxy pools joined their providers")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await demo.close()

