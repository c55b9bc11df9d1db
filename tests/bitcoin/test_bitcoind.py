"""The Bitcoin Core source (JSON-RPC + ZMQ hashblock) against the local server."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from prometheus_client import CollectorRegistry

from convmon.collectors.bitcoin.attribution import Attributor
from convmon.collectors.bitcoin.collector import BitcoinCollector
from convmon.collectors.bitcoin.record import BlockRecord
from convmon.collectors.bitcoin.registry import curated_registry
from convmon.collectors.bitcoin.sources import BitcoindSource
from convmon.monitor.backoff import Backoff, RateLimiter
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.events import BitcoinBlock, BitcoinReorg
from convmon.monitor.health import CollectorHealth
from convmon.sim.bitcoin_node import BitcoinNodeServer
from tests.bitcoin.helpers import ROTATION_SLUGS, chain, events
from tests.waiting import eventually


def collector(bus: EventBus, registry: CollectorRegistry, server: BitcoinNodeServer,
              zmq: str | None, poll: float = 0.2) -> BitcoinCollector:
    clock = SystemClock()
    health = CollectorHealth("bitcoin", redis=bus.redis, keys=bus.keys, bus=bus, clock=clock,
                             registry=registry)
    source = BitcoindSource(server.rpc_url, zmq, health, RateLimiter(1000, burst=1000),
                            backoff=Backoff(0.01, 0.05))
    return BitcoinCollector(
        source=source, bus=bus, record=BlockRecord(bus.redis, bus.keys, 100),
        attributor=Attributor(curated_registry()), health=health, clock=clock,
        backfill_blocks=8, poll_interval_s=poll, publish_batch=3, backoff=Backoff(0.01, 0.05),
    )


async def test_rpc_sync_reorg_and_garbage(bus: EventBus, registry: CollectorRegistry) -> None:
    server = BitcoinNodeServer(chain(20))
    await server.start()
    col = collector(bus, registry, server, None)
    try:
        server.garbage(1, body="<html>bad gateway</html>")
        assert await col.sync() == 8
        fork = server.blocks[-2][0]
        await server.reorg(1, chain(2, start=fork["height"] + 1, prev=fork["id"], salt="b"))
        assert await col.sync() == 2
    finally:
        await col.source.close()
        await server.close()
    evs = await events(bus)
    blocks = [e.payload for e in evs if isinstance(e.payload, BitcoinBlock)]
    assert [b.height for b in blocks[:8]] == list(range(900_012, 900_020))
    # chain(20) mines the rotation from height 900_000: height h is ROTATION[h % 6]
    assert [b.pool for b in blocks[:8]] == [ROTATION_SLUGS[h % 6] for h in range(12, 20)]
    assert all(b.subsidy_sats == 312_500_000 and b.fees_sats == 2_000_000 for b in blocks)
    reorg = [e.payload for e in evs if isinstance(e.payload, BitcoinReorg)]
    assert len(reorg) == 1 and reorg[0].depth == 1 and reorg[0].fork_height == fork["height"]
    malformed = [s for m in registry.collect() if m.name == "convmon_collector_malformed_payloads"
                 for s in m.samples if s.name.endswith("_total")]
    assert sum(s.value for s in malformed) == 1


async def test_zmq_hashblock_wakes_the_collector(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    server = BitcoinNodeServer(chain(10))
    await server.start()
    endpoint = await server.start_zmq()
    col = collector(bus, registry, server, endpoint, poll=60)
    task = asyncio.create_task(col.run())
    try:
        async def at_tip() -> bool:
            return (await bus.get_checkpoint("bitcoin") or "").startswith(
                f"{server.tip['height']}:")

        await eventually(at_tip, "checkpoint at the tip")
        # The subscription needs a moment to be established (ZMQ slow joiner): keep mining
        # until a block comes in; the 60 s poll interval cannot be what brings it.
        first_mined = server.tip["height"] + 1

        async def mine() -> None:
            for i in itertools.count():
                await server.append(*chain(1, start=server.tip["height"] + 1,
                                           prev=server.tip["id"], salt=f"z{i}"))
                await asyncio.sleep(0.2)  # pacing the miner, not waiting for an outcome

        miner = asyncio.create_task(mine())
        try:
            async def pushed() -> bool:
                checkpoint = await bus.get_checkpoint("bitcoin") or "0:"
                return int(checkpoint.partition(":")[0]) >= first_mined

            await eventually(pushed, "a mined block brought in by a ZMQ push")
        finally:
            miner.cancel()
            await asyncio.gather(miner, return_exceptions=True)
        # the subscription is up now: the last block mined is pushed too
        await eventually(at_tip, "checkpoint at the tip after mining stopped")
        assert col.push_failures == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()


async def test_rpc_password_never_reaches_errors_or_status(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    from convmon.collectors.bitcoin.errors import SourceUnavailable
    from convmon.collectors.bitcoin.sources import safe_url

    assert safe_url("http://rpcuser:hunter2@127.0.0.1:8332/?x=1") == "http://127.0.0.1:8332/"
    server = BitcoinNodeServer(chain(3))
    await server.start()
    col = collector(bus, registry, server, None)
    col.source.url = server.rpc_url.replace("user:pass", "rpc:hunter2")  # type: ignore[attr-defined]
    server.fail(10, status=502)
    try:
        with pytest.raises(SourceUnavailable) as info:
            await col.sync()
    finally:
        await col.source.close()
        await server.close()
    assert "hunter2" not in str(info.value)
    status = await bus.redis.hgetall(bus.keys.collector_status("bitcoin"))
    assert all(b"hunter2" not in v for v in status.values())
