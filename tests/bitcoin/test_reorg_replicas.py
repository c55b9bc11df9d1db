"""Reorgs that revisit a chain, and two collector replicas sharing one Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from convmon.collectors.bitcoin.collector import reorg_short_id
from convmon.monitor.bus import EventBus
from convmon.monitor.events import BitcoinBlock, BitcoinReorg, Event
from convmon.sim.bitcoin_node import BitcoinNodeServer
from tests.bitcoin.helpers import chain, events, make_collector


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
        assert await b._reorg(stale[0], stale[1], tip_seen_by_b) == 0
        assert await bus.get_checkpoint("bitcoin") == moved  # not moved backwards
        # B's extension built on the stale checkpoint writes nothing either
        assert await b._extend(stale[0] + 1, tip_seen_by_b, stale[1], None,
                               expect=stale) == (0, False)
        assert await bus.get_checkpoint("bitcoin") == moved
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
    a = make_collector(bus, registry, server.base_url, None, backfill=10)
    b = make_collector(bus, CollectorRegistry(), server.base_url, None, backfill=10)
    journal_key = bus.keys.btc_reorg_journal
    seen: list[bytes] = []
    apply = a._apply_journal

    async def keep_a_copy(journal: Any, raw: bytes | str) -> bool:
        seen.append(raw if isinstance(raw, bytes) else raw.encode())
        return await apply(journal, raw)

    a._apply_journal = keep_a_copy  # type: ignore[method-assign]
    try:
        await a.sync()
        fork = server.blocks[-3][0]
        await server.reorg(2, chain(3, start=fork["height"] + 1, salt="J", prev=fork["id"]))
        await a.sync()
        await server.append(*chain(2, start=server.tip["height"] + 1, salt="J2",
                                   prev=server.tip["id"]))
        await a.sync()
        moved = await bus.get_checkpoint("bitcoin")
        assert len(seen) == 1 and await bus.redis.get(journal_key) is None
        # replica B read the journal before A cleared it and applies it only now
        await bus.redis.set(journal_key, seen[0])
        await b.recover()
        assert await bus.get_checkpoint("bitcoin") == moved
        assert await bus.redis.get(journal_key) is None
        assert await b.sync() == 0
    finally:
        await a.source.close()
        await b.source.close()
    assert len(reorg_events(await events(bus))) == 1
    assert await bus.get_checkpoint("bitcoin") == f"{server.tip['height']}:{server.tip['id']}"
