"""Reorgs that revisit a chain."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry

from convmon.collectors.bitcoin.collector import reorg_short_id
from convmon.collectors.bitcoin.esplora_server import EsploraServer
from convmon.monitor.bus import EventBus
from convmon.monitor.events import BitcoinBlock, BitcoinReorg, Event
from tests.bitcoin.helpers import chain, events, make_collector


@pytest.fixture
async def server() -> AsyncIterator[EsploraServer]:
    srv = EsploraServer(chain(20))
    await srv.start()
    try:
        yield srv
    finally:
        await srv.close()


def reorg_events(evs: list[Event]) -> list[Event]:
    return [e for e in evs if isinstance(e.payload, BitcoinReorg)]


async def test_reorg_back_to_an_earlier_chain_publishes_its_blocks_again(
    server: EsploraServer, bus: EventBus, registry: CollectorRegistry
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
