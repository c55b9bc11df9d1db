"""Reorgs that revisit a chain, and two collector replicas sharing one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from redis.exceptions import ConnectionError as RedisConnectionError

from convmon.collectors.bitcoin.blocks import block_payload
from convmon.collectors.bitcoin.record import RecordedBlock
from convmon.collectors.bitcoin.reorg import reorg_short_id
from convmon.monitor.bus import EventBus
from convmon.monitor.events import BitcoinBlock, BitcoinReorg, Event
from convmon.sim.bitcoin_node import BitcoinNodeServer
from tests.bitcoin.helpers import (
    bus_with_outage_after,
    chain,
    events,
    make_collector,
    resp_command,
)


@pytest.fixture
async def server() -> AsyncIterator[BitcoinNodeServer]:
    srv = BitcoinNodeServer(chain(20))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


def reorg_events(evs: list[Event]) -> list[Event]:
    return [e for e in evs if isinstance(e.payload, BitcoinReorg)]


async def test_reorg_back_to_an_earlier_chain_publishes_its_blocks_again(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    col = make_collector(bus, registry, server.base_url, None, backfill=10)
    try:
        await col.sync()
        fork = server.blocks[-3][0]
        a_side = list(server.blocks[-2:])
        await server.reorg(2, chain(2, start=fork["height"] + 1, salt="B", prev=fork["id"]))
        await col.sync()  # A -> B
        top = a_side[-1][0]
        await server.reorg(2, a_side + chain(1, start=top["height"] + 1, salt="C", prev=top["id"]))
        await col.sync()  # B -> A, one block longer
    finally:
        await col.source.close()
    evs = await events(bus)
    reorgs = reorg_events(evs)
    assert len(reorgs) == 2
    after = evs[evs.index(reorgs[-1]) + 1:]
    blocks = [e for e in after if isinstance(e.payload, BitcoinBlock)]
    assert [e.payload.height for e in blocks] == [fork["height"] + i for i in (1, 2, 3)]
    assert [e.payload.hash for e in blocks[:2]] == [b[0]["id"] for b in a_side]
    short = reorg_short_id(reorgs[-1].id)
    assert all(e.id == f"btc:block:{e.payload.hash}:reorg:{short}" for e in blocks)
    # the first-time blocks before any reorg kept their plain ids
    assert evs[0].id == f"btc:block:{evs[0].payload.hash}"
    assert await bus.get_checkpoint("bitcoin") == f"{server.tip['height']}:{server.tip['id']}"


async def test_replica_with_a_stale_checkpoint_publishes_no_second_reorg(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    a = make_collector(bus, registry, server.base_url, None, backfill=10)
    b = make_collector(bus, registry, server.base_url, None, backfill=10)
    try:
        await a.sync()
        fork = server.blocks[-3][0]
        await server.reorg(2, chain(3, start=fork["height"] + 1, salt="B", prev=fork["id"]))
        stale = await b.checkpoint()  # both replicas woke on the same push
        assert stale is not None
        tip_seen_by_b = server.tip["height"]
        await a.sync()  # replica A handles the reorg ...
        await server.append(*chain(2, start=server.tip["height"] + 1, salt="B2",
                                   prev=server.tip["id"]))
        await a.sync()  # ... and follows the chain two blocks further
        moved = await bus.get_checkpoint("bitcoin")
        # replica B acts on what it saw before A's work: the record shows the new branch
        assert await b.reorgs.handle(stale[0], stale[1], tip_seen_by_b) == 0
        assert await bus.get_checkpoint("bitcoin") == moved  # not moved backwards
        # a batch B built on the stale checkpoint writes nothing either
        record_before = await bus.redis.hgetall(bus.keys.btc_blocks)
        stale_batch = []
        for height in range(stale[0] + 1, tip_seen_by_b + 1):
            block = await b.source.block(await b.source.block_hash(height))
            stale_batch.append(
                RecordedBlock(block_payload(block, b.attributor), block.coinbase_hex)
            )
        assert not await b.publisher.publish(stale_batch, move_tip=True, expect=stale)
        assert await bus.get_checkpoint("bitcoin") == moved
        assert await bus.redis.hgetall(bus.keys.btc_blocks) == record_before
        assert await b.sync() == 0
    finally:
        await a.source.close()
        await b.source.close()
    reorgs = reorg_events(await events(bus))
    assert len(reorgs) == 1
    payload = reorgs[0].payload
    assert isinstance(payload, BitcoinReorg) and payload.depth == 2
    assert await bus.get_checkpoint("bitcoin") == f"{server.tip['height']}:{server.tip['id']}"


async def test_two_replicas_syncing_together_agree_on_one_reorg(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    a = make_collector(bus, registry, server.base_url, None, backfill=10)
    b = make_collector(bus, CollectorRegistry(), server.base_url, None, backfill=10)
    try:
        await asyncio.gather(a.sync(), b.sync())
        fork = server.blocks[-4][0]
        await server.reorg(3, chain(5, start=fork["height"] + 1, salt="R", prev=fork["id"]))
        await asyncio.gather(a.sync(), b.sync())
        await asyncio.gather(a.sync(), b.sync())
    finally:
        await a.source.close()
        await b.source.close()
    evs = await events(bus)
    reorgs = reorg_events(evs)
    assert len(reorgs) == 1
    payload = reorgs[0].payload
    assert isinstance(payload, BitcoinReorg)
    assert payload.depth == 3 and payload.fork_height == fork["height"]
    after = evs[evs.index(reorgs[0]) + 1:]
    heights = [e.payload.height for e in after if isinstance(e.payload, BitcoinBlock)]
    assert heights == list(range(fork["height"] + 1, server.tip["height"] + 1))
    assert await bus.get_checkpoint("bitcoin") == f"{server.tip['height']}:{server.tip['id']}"


async def test_late_journal_of_another_replica_does_not_move_the_checkpoint_back(
    server: BitcoinNodeServer, bus: EventBus, registry: CollectorRegistry
) -> None:
    journal_key = bus.keys.btc_reorg_journal
    # Replica A loses Redis right after journaling its reorg; the journal it left is what
    # replica B reads, and B applies it only after A finished the reorg and moved on.
    proxied = await bus_with_outage_after(bus, resp_command("SET", journal_key))
    a_cut = make_collector(proxied.bus, registry, server.base_url, None, backfill=10)
    a = make_collector(bus, CollectorRegistry(), server.base_url, None, backfill=10)
    b = make_collector(bus, CollectorRegistry(), server.base_url, None, backfill=10)
    try:
        await a_cut.sync()
        fork = server.blocks[-3][0]
        await server.reorg(2, chain(3, start=fork["height"] + 1, salt="J", prev=fork["id"]))
        with pytest.raises(RedisConnectionError):
            await a_cut.sync()
        late_journal = await bus.redis.get(journal_key)
        assert late_journal is not None
        await a.recover()  # A restarts: finishes its reorg from the journal ...
        assert await bus.redis.get(journal_key) is None
        await server.append(*chain(2, start=server.tip["height"] + 1, salt="J2",
                                   prev=server.tip["id"]))
        await a.sync()  # ... and follows the chain two blocks further
        moved = await bus.get_checkpoint("bitcoin")
        assert moved == f"{server.tip['height']}:{server.tip['id']}"
        await bus.redis.set(journal_key, late_journal)
        await b.recover()
        assert await bus.get_checkpoint("bitcoin") == moved
        assert await bus.redis.get(journal_key) is None
        assert await b.sync() == 0
    finally:
        await a_cut.source.close()
        await proxied.close()
        await a.source.close()
        await b.source.close()
    assert len(reorg_events(await events(bus))) == 1
    assert await bus.get_checkpoint("bitcoin") == f"{server.tip['height']}:{server.tip['id']}"
