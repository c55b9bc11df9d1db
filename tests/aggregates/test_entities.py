"""Entities on by default: blocks attributed by the collector with the default
configuration carry the parent company valid at their timestamp, and the aggregates count
entities from those payloads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from convmon.collectors.bitcoin.attribution import Attributor, PoolRegistry
from convmon.collectors.bitcoin.blocks import ChainBlock, block_event, block_payload
from convmon.collectors.bitcoin.plugin import BitcoinConfig, entity_map
from convmon.collectors.bitcoin.registry import CURATED_PATH
from convmon.monitor.events import BitcoinBlock, Event
from convmon.monitor.keys import Keys
from tests.aggregates.conftest import MakeStore

TAGS = {"foundryusa": "/Foundry USA Pool #dropgold/", "poolin": "/poolin.com",
        "novablock": "/NovaBlock/", "viabtc": "/ViaBTC/", "f2pool": "/F2Pool/"}
# 25% foundryusa, 20% each poolin and novablock (one parent since 2021-02), 20% viabtc,
# 15% f2pool: three pools hold a majority, two entities do.
CYCLE = ["foundryusa", "poolin", "novablock", "viabtc", "f2pool"] * 3 + [
    "foundryusa", "poolin", "novablock", "viabtc", "foundryusa"]


def default_attributor() -> Attributor:
    """The curated pool list plus NovaBlock, and the default configuration's entities."""
    pools = json.loads(CURATED_PATH.read_text())
    pools.append({"name": "NovaBlock", "addresses": [], "tags": ["/NovaBlock/"], "link": ""})
    return Attributor(PoolRegistry.from_pools_v2(pools), entity_map(BitcoinConfig()))


def blocks(start: datetime, count: int) -> list[Event]:
    attributor = default_attributor()
    t0 = int(start.timestamp())
    out: list[Event] = []
    for i in range(count):
        pool = CYCLE[i % len(CYCLE)]
        block = ChainBlock(
            height=600_000 + i, hash=f"{i:064x}", prev_hash=f"{max(i - 1, 0):064x}",
            timestamp=t0 + 600 * i, median_time=None, bits=None, difficulty=1e13,
            tx_count=2000, size=None, weight=None,
            coinbase_hex=(b"\x03\x01\x02" + TAGS[pool].encode()).hex(),
            outputs=(("bc1qtest", 625_000_000),),
        )
        payload = block_payload(block, attributor)
        assert payload.pool == pool
        out.append(block_event(payload, "bitcoin/test", float(block.timestamp)))
    return out


async def test_a_link_applies_only_after_its_from_date(make_store: MakeStore) -> None:
    before = blocks(datetime(2020, 6, 1, tzinfo=UTC), 200)  # NovaBlock not yet Poolin's
    after = blocks(datetime(2024, 6, 1, tzinfo=UTC), 200)
    nova = [e.payload for e in before + after
            if isinstance(e.payload, BitcoinBlock) and e.payload.pool == "novablock"]
    assert {p.entity for p in nova[:40]} == {None}
    assert {p.entity for p in nova[-40:]} == {"Poolin"}

    store = await make_store(bitcoin_windows=[1008], hashprice_window=1008)
    await store.apply(before)
    w = (await store.snapshot(["btc"]))["btc"]["windows"]["1008"]
    assert w["nakamoto"] == 3 and w["entity_nakamoto"] == 3
    assert "novablock" in w["entities"] and w["entities"]["Poolin"]["blocks"] == 40

    fresh = await make_store(bitcoin_windows=[1008], hashprice_window=1008,
                             keys_=Keys(prefix=store.keys.prefix + "b"))
    await fresh.apply(after)
    w = (await fresh.snapshot(["btc"]))["btc"]["windows"]["1008"]
    # the pools alone need three for a majority; counted by parent company, two
    assert w["nakamoto"] == 3 and w["entity_nakamoto"] == 2
    assert w["entities"]["Poolin"]["blocks"] == 80 and "novablock" not in w["entities"]
    assert w["entities"]["Digital Currency Group"]["blocks"] == 50
