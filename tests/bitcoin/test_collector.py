"""The collector against the local Esplora server: backfill, follow, reorgs, faults."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from convmon.monitor.bus import EventBus
from convmon.monitor.events import BitcoinBlock, BitcoinReorg
from convmon.sim.bitcoin_node import BitcoinNodeServer
from tests.bitcoin.helpers import (
    bus_with_outage_after,
    chain,
    events,
    make_collector,
    resp_command,
)
from tests.waiting import eventually


@pytest.fixture
async def server() -> AsyncIterator[BitcoinNodeServer]:
    srv = BitcoinNodeServer(chain(30))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


def block_heights(evs: list) -> list[int]:
    return [e.payload.height for e in evs if isinstance(e.payload, BitcoinBlock)]


async def test_first_start_backfills_and_checkpoints(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=10)
    try:
        assert await col.sync() == 10
    finally:
        await col.source.close()
    evs = await events(bus)
    assert block_heights(evs) == list(range(900_020, 900_030))
    tip = server.tip
    assert await bus.get_checkpoint("bitcoin") == f"{tip['height']}:{tip['id']}"
    first = evs[0]
    assert first.id == f"btc:block:{first.payload.hash}"
    p = first.payload
    assert isinstance(p, BitcoinBlock)
    assert p.pool in {"foundryusa", "antpool", "viabtc", "unknown"}
    assert p.subsidy_sats == 312_500_000 and p.fees_sats == 2_000_000
    pools = [e.payload.pool for e in evs]
    assert "unknown" in pools and "foundryusa" in pools
    # the record holds the blocks by height
    recorded = await col.record.get(900_029)
    assert recorded is not None and recorded.block.hash == tip["id"]


@pytest.mark.parametrize("depth", [1, 3])
async def test_reorg_publishes_one_reorg_event_then_new_blocks(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry, depth: int
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=10)
    try:
        await col.sync()
        old = [b[0] for b in server.blocks[-depth:]]
        fork_block = server.blocks[-depth - 1][0]
        replacement = chain(depth + 1, start=fork_block["height"] + 1, salt="fork",
                            prev=fork_block["id"])
        await server.reorg(depth, replacement)
        await col.sync()
        # a second sync is a no-op
        assert await col.sync() == 0
    finally:
        await col.source.close()
    evs = await events(bus)
    reorgs = [e for e in evs if isinstance(e.payload, BitcoinReorg)]
    assert len(reorgs) == 1
    r = reorgs[0]
    assert isinstance(r.payload, BitcoinReorg)
    assert r.payload.fork_height == fork_block["height"]
    assert r.payload.depth == depth
    assert [d.hash for d in r.payload.disconnected] == [b["id"] for b in old]
    assert r.payload.new_tip_hash == server.tip["id"]
    assert r.id == f"btc:reorg:{fork_block['height']}:{old[-1]['id']}:{server.tip['id']}"
    after = evs[evs.index(r) + 1:]
    assert [e.payload.hash for e in after] == [b[0]["id"] for b in replacement]
    assert await bus.get_checkpoint("bitcoin") == f"{server.tip['height']}:{server.tip['id']}"
    for b in replacement:
        recorded = await col.record.get(b[0]["height"])
        assert recorded is not None and recorded.block.hash == b[0]["id"]


async def test_websocket_drop_and_restart_miss_no_block(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, server.ws_url, backfill=5, poll=3600)
    task = asyncio.create_task(col.run())
    try:
        async def at(height: int) -> bool:
            return (await bus.get_checkpoint("bitcoin") or "").startswith(f"{height}:")

        await eventually(lambda: at(server.tip["height"]), "checkpoint at the tip")

        async def ws_up() -> bool:
            return server.websocket_count == 1

        await eventually(ws_up, "websocket connected")
        # the poll interval is an hour: only the websocket push can bring this block in
        await server.append(*chain(1, start=server.tip["height"] + 1, prev=server.tip["id"]))
        await eventually(lambda: at(server.tip["height"]), "checkpoint at the tip")
        assert await server.drop_websockets() == 1
        await server.append(*chain(2, start=server.tip["height"] + 1, prev=server.tip["id"],
                                   salt="x"))
        await eventually(lambda: at(server.tip["height"]), "checkpoint at the tip")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    # restart: blocks mined while down are fetched on the next start
    await server.append(*chain(3, start=server.tip["height"] + 1, prev=server.tip["id"],
                               salt="y"))
    col2 = make_collector(bus, CollectorRegistry(), server.base_url, None, backfill=5)
    try:
        await col2.sync()
    finally:
        await col2.source.close()
    heights = block_heights(await events(bus))
    assert heights == list(range(900_025, server.tip["height"] + 1))


async def test_garbage_and_rate_limits_are_counted_and_skipped(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=6)
    server.garbage(2)
    server.fail(1, status=429, retry_after=0.05)
    server.fail(1, status=500)
    server.garbage(1, body="not json at all")
    try:
        assert await col.sync() == 6
    finally:
        await col.source.close()
    malformed = sum(
        s.value for m in registry.collect() if m.name == "convmon_collector_malformed_payloads"
        for s in m.samples if s.name.endswith("_total")
    )
    errors = {
        s.labels["kind"]: s.value for m in registry.collect()
        if m.name == "convmon_collector_errors" for s in m.samples if s.name.endswith("_total")
    }
    assert malformed >= 3
    assert errors.get("rate_limited") == 1 and errors.get("http_500") == 1
    assert block_heights(await events(bus)) == list(range(900_024, 900_030))


async def test_persistent_garbage_raises_and_run_recovers(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=3, attempts=2)
    server.garbage(8)
    task = asyncio.create_task(col.run())
    try:
        async def done() -> bool:
            return (await bus.get_checkpoint("bitcoin") or "").startswith("900029:")

        await eventually(done, "checkpoint at 900029")
        status = await bus.redis.hgetall(bus.keys.collector_status("bitcoin"))
        assert status[b"connected"] == b"1"
        assert b"last_error" in status
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert block_heights(await events(bus)) == [900_027, 900_028, 900_029]


async def test_backfill_older_blocks_keeps_checkpoint(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=3)
    try:
        await col.sync()
        before = await bus.get_checkpoint("bitcoin")
        seen: list[tuple[int, int]] = []
        await col.backfill(12, lambda d, t: seen.append((d, t)))
    finally:
        await col.source.close()
    assert await bus.get_checkpoint("bitcoin") == before
    assert sorted(block_heights(await events(bus))) == list(range(900_018, 900_030))
    assert seen[-1] == (12, 12)


async def test_interrupted_reorg_is_finished_after_restart(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    # Redis goes away right after the reorg journal was written: nothing of the reorg is
    # applied, and a collector started afterwards finishes it from the journal.
    proxied = await bus_with_outage_after(
        bus, resp_command("SET", bus.keys.btc_reorg_journal)
    )
    col = make_collector(proxied.bus, registry, server.base_url, None, backfill=6)
    try:
        await col.sync()
        before = await bus.get_checkpoint("bitcoin")
        fork = server.blocks[-3][0]
        await server.reorg(2, chain(3, start=fork["height"] + 1, prev=fork["id"], salt="j"))
        with pytest.raises(RedisConnectionError):
            await col.sync()
        assert proxied.proxy.seen_marker and proxied.proxy.down
    finally:
        await col.source.close()
        await proxied.close()
    assert await bus.redis.get(bus.keys.btc_reorg_journal) is not None
    assert [e for e in await events(bus) if isinstance(e.payload, BitcoinReorg)] == []
    assert await bus.get_checkpoint("bitcoin") == before
    col2 = make_collector(bus, CollectorRegistry(), server.base_url, None, backfill=6)
    try:
        await col2.recover()
        assert await bus.redis.get(bus.keys.btc_reorg_journal) is None
        assert await col2.sync() == 0
    finally:
        await col2.source.close()
    evs = await events(bus)
    reorgs = [e.payload for e in evs if isinstance(e.payload, BitcoinReorg)]
    assert len(reorgs) == 1 and reorgs[0].depth == 2 and reorgs[0].fork_height == fork["height"]
    assert block_heights(evs)[-3:] == [fork["height"] + i for i in (1, 2, 3)]
    assert await bus.get_checkpoint("bitcoin") == f"{server.tip['height']}:{server.tip['id']}"


async def test_reorg_below_a_lost_record_still_converges(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=6)
    try:
        await col.sync()
        await bus.redis.delete(col.record.key)
        fork = server.blocks[-2][0]
        await server.reorg(1, chain(1, start=fork["height"] + 1, prev=fork["id"], salt="l"))
        await col.sync()
    finally:
        await col.source.close()
    assert await bus.get_checkpoint("bitcoin") == f"{server.tip['height']}:{server.tip['id']}"
    reorgs = [e.payload for e in await events(bus) if isinstance(e.payload, BitcoinReorg)]
    assert len(reorgs) == 1 and reorgs[0].new_tip_hash == server.tip["id"]


async def test_record_is_trimmed_to_its_window(
    bus: EventBus, registry: CollectorRegistry
) -> None:
    srv = BitcoinNodeServer(chain(30))
    await srv.start()
    col = make_collector(bus, registry, srv.base_url, None, backfill=30, batch=10, keep=8)
    try:
        await col.sync()
    finally:
        await col.source.close()
        await srv.close()
    assert await col.record.trim(900_029) > 0
    assert await col.record.heights() == list(range(900_022, 900_030))
    latest = await col.record.latest(3)
    assert [b.block.height for b in latest] == [900_027, 900_028, 900_029]


async def test_websocket_garbage_is_counted_and_following_continues(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, server.ws_url, backfill=3, poll=3600)
    task = asyncio.create_task(col.run())
    try:
        async def ws_up() -> bool:
            return server.websocket_count == 1

        await eventually(ws_up, "websocket connected")
        await server.send_ws_raw("{not json")
        await server.send_ws_raw('{"block": "not an object"}')
        await server.append(*chain(1, start=server.tip["height"] + 1, prev=server.tip["id"],
                                   salt="g"))

        async def at_tip() -> bool:
            return (await bus.get_checkpoint("bitcoin") or "").startswith(
                f"{server.tip['height']}:")

        await eventually(at_tip, "checkpoint at the tip")
        assert not task.done() and col.push_failures == 0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    ws_malformed = [
        s.value for m in registry.collect() if m.name == "convmon_collector_malformed_payloads"
        for s in m.samples if s.name.endswith("_total") and s.labels["what"] == "ws"
    ]
    assert ws_malformed == [1.0]


async def test_long_downtime_skips_ahead_to_the_backfill_depth(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=3)
    try:
        await col.sync()
        await server.append(*chain(10, start=server.tip["height"] + 1, prev=server.tip["id"],
                                   salt="d"))
        assert await col.sync() == 3
    finally:
        await col.source.close()
    assert block_heights(await events(bus)) == [900_027, 900_028, 900_029,
                                                 900_037, 900_038, 900_039]


async def test_backfill_fetches_headers_ten_at_a_time(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=30, batch=30)
    try:
        assert await col.sync() == 30
    finally:
        await col.source.close()
    # tip height + 3 header pages + (txid, tx) per block; one request per field would be 4/block
    assert server.requests == 1 + 3 + 2 * 30
    assert block_heights(await events(bus)) == list(range(900_000, 900_030))
