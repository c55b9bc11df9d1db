"""Template providers and jurisdictions in the aggregates: the mapping from change events
(idempotent), the windows counting each block by the provider and jurisdiction it carried
(through mapping changes, reorgs, re-attribution, redelivery and an upgrade), and the
metrics."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from convmon.monitor import concentration
from convmon.monitor.events import BitcoinTemplateCluster, Event
from convmon.monitor.keys import Keys
from convmon.rules.aggregates.providers import jurisdiction_stats, provider_stats
from tests.aggregates.conftest import MakeStore
from tests.aggregates.factories import T0, attribution, block, reorg

CYCLE = ["foundryusa", "poolin", "novablock", "viabtc", "f2pool"] * 3 + [
    "foundryusa", "poolin", "novablock", "viabtc", "foundryusa"]
SMALL = {"bitcoin_windows": [5, 10, 20], "hashprice_window": 5, "block_history_margin": 6}


def change(pool: str, provider: str, height: int = 1) -> Event:
    return Event(
        id=f"btc:template:{pool}:{provider}:{height}", chain="bitcoin", source="test",
        observed_at=T0, occurred_at=T0, position=height,
        payload=BitcoinTemplateCluster(pool=pool, provider=provider, confidence=1.0,
                                       matched_heights=5, observed_heights=5, height=height),
    )


def test_provider_stats_from_window_counts_keep_unknown_unknown() -> None:
    window = {"t:poolin": 8, "q:poolin|poolin": 4, "q:poolin|novablock": 4, "t:foundryusa": 5,
              "q:foundryusa|foundryusa": 5, "t:unknown": 7, "q:unknown|unknown": 7,
              "p:poolin": 4, "p:novablock": 4, "p:foundryusa": 5, "p:unknown": 7}
    stats = provider_stats(window)
    assert stats["providers"]["poolin"] == {"blocks": 8, "share": 0.4, "pools": 2}
    assert stats["providers"]["unknown"] == {"blocks": 7, "share": 0.35, "pools": 0}
    assert stats["provider_nakamoto"] == concentration.nakamoto({"poolin": 8, "foundryusa": 5,
                                                                  "unknown": 7}) == 2


def test_jurisdiction_stats_never_count_unknown_as_a_jurisdiction() -> None:
    stats = jurisdiction_stats({"j:US": 3, "j:unknown": 6, "j:CN": 1})
    assert stats["jurisdictions"]["unknown"] == {"blocks": 6, "share": 0.6}
    assert stats["jurisdiction_top1"] == "US" and stats["jurisdiction_top1_share"] == 0.3
    assert jurisdiction_stats({"j:unknown": 4}) == {
        "jurisdictions": {"unknown": {"blocks": 4, "share": 1.0}},
        "jurisdiction_top1": None, "jurisdiction_top1_share": 0.0,
    }


def cycle_blocks(start: int, count: int, novablock_provider: str | None) -> list[Event]:
    return [
        block(h, pool, provider=novablock_provider if pool == "novablock" else None)
        for h in range(start, start + count) for pool in [CYCLE[h % len(CYCLE)]]
    ]


def provider_blocks(btc: dict[str, Any], window: str = "1008") -> dict[str, int]:
    return {p: v["blocks"] for p, v in btc["windows"][window]["providers"].items()}


async def test_windows_count_each_block_by_the_provider_it_carried(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    # 100 blocks while novablock builds its own template, then it joins poolin's cluster.
    await store.apply(cycle_blocks(900_000, 100, None))
    before = (await store.snapshot(["btc"]))["btc"]
    assert before["template_providers_known"] is False
    w = before["windows"]["1008"]
    assert w["provider_nakamoto"] == w["nakamoto"] == 3
    assert provider_blocks(before) == {p: v["blocks"] for p, v in w["pools"].items()}
    assert await store.apply([change("novablock", "poolin")]) == [True]
    assert await store.apply([change("novablock", "poolin")]) == [False]  # a replay
    changed = (await store.snapshot(["btc"]))["btc"]
    assert changed["template_providers_known"] is True
    # The mapping alone moves no block: earlier blocks keep the provider they carried.
    assert provider_blocks(changed) == provider_blocks(before)
    later = cycle_blocks(900_100, 100, "poolin")
    await store.apply(later)
    after = (await store.snapshot(["btc"]))["btc"]
    w = after["windows"]["1008"]
    # novablock: 20 blocks before (its own), 20 after (poolin's); poolin 20 + 20.
    assert provider_blocks(after) == {"poolin": 60, "novablock": 20, "foundryusa": 50,
                                      "viabtc": 40, "f2pool": 30}
    assert w["providers"]["poolin"]["pools"] == 2
    assert w["providers"]["novablock"]["pools"] == 1
    assert w["nakamoto"] == 3 and w["provider_nakamoto"] == 2  # poolin 60 + foundryusa 50
    assert w["provider_hhi"] == concentration.hhi(provider_blocks(after))
    # The 144-block window: novablock's blocks before the change under novablock, after
    # it under poolin.
    recent = range(900_200 - 144, 900_200)
    own = sum(1 for h in recent if h < 900_100 and CYCLE[h % len(CYCLE)] == "novablock")
    joined = sum(1 for h in recent if h >= 900_100 and CYCLE[h % len(CYCLE)] == "novablock")
    w144 = provider_blocks(after, "144")
    pools144 = {p: v["blocks"] for p, v in after["windows"]["144"]["pools"].items()}
    assert own > 0 and joined > 0
    assert w144["novablock"] == own and w144["poolin"] == pools144["poolin"] + joined
    # Redelivery of everything changes nothing.
    assert not any(await store.apply([*cycle_blocks(900_000, 100, None), *later]))
    assert (await store.snapshot(["btc"]))["btc"] == after
    # It leaves poolin's cluster: the windows keep what the blocks carried.
    assert await store.apply([change("novablock", "novablock", 2)]) == [True]
    assert provider_blocks((await store.snapshot(["btc"]))["btc"]) == provider_blocks(after)


async def test_a_reorg_removes_the_provider_count_of_the_replaced_block(
    make_store: MakeStore,
) -> None:
    store = await make_store(**SMALL)
    base = [block(h, "foundryusa") for h in range(1, 9)]
    replaced = block(9, "novablock", provider="poolin")
    await store.apply([*base, replaced])
    assert provider_blocks((await store.snapshot(["btc"]))["btc"], "5") == {
        "foundryusa": 4, "poolin": 1}
    other = block(9, "viabtc", branch="b", provider="antpool")
    await store.apply([reorg(8, [replaced], other)])
    # The tip is back at 8: the window is five foundryusa blocks, poolin's count gone.
    assert provider_blocks((await store.snapshot(["btc"]))["btc"], "5") == {"foundryusa": 5}
    await store.apply([other])
    snap = (await store.snapshot(["btc"]))["btc"]
    assert provider_blocks(snap, "5") == {"foundryusa": 4, "antpool": 1}
    assert snap["windows"]["5"]["providers"]["antpool"]["pools"] == 1
    assert not any(await store.apply([*base, replaced, reorg(8, [replaced], other), other]))
    assert (await store.snapshot(["btc"]))["btc"] == snap


async def test_reattribution_moves_provider_and_jurisdiction_counts(
    make_store: MakeStore,
) -> None:
    store = await make_store(**SMALL)
    await store.apply([block(1, "unknown"), block(2, "antpool", jurisdiction="CN"),
                       block(3, "btccom", provider="antpool", jurisdiction="CN")])
    w = (await store.snapshot(["btc"]))["btc"]["windows"]["5"]
    assert {p: v["blocks"] for p, v in w["providers"].items()} == {"unknown": 1, "antpool": 2}
    assert {j: v["blocks"] for j, v in w["jurisdictions"].items()} == {"unknown": 1, "CN": 2}
    await store.apply([attribution(1, "foundryusa", jurisdiction="US")])
    w = (await store.snapshot(["btc"]))["btc"]["windows"]["5"]
    # No provider on the block: it counts under its (new) pool.
    assert {p: v["blocks"] for p, v in w["providers"].items()} == {"foundryusa": 1,
                                                                   "antpool": 2}
    assert {j: v["blocks"] for j, v in w["jurisdictions"].items()} == {"US": 1, "CN": 2}
    assert w["jurisdiction_top1"] == "CN"
    assert w["jurisdiction_top1_share"] == 2 / 3


async def test_windows_counted_before_providers_are_recounted(
    redis: Redis, keys: Keys, make_store: MakeStore,
) -> None:
    store = await make_store(**SMALL)
    blocks = [block(h, "novablock", provider="poolin", jurisdiction="CN") for h in range(1, 8)]
    await store.apply(blocks)
    expected = (await store.snapshot(["btc"]))["btc"]
    # What an older version left: no provider or jurisdiction counts, no counts marker.
    meta = store.key("btc", "btc", "meta")
    await redis.hdel(meta, "counts")
    for n in ("5", "10", "20"):
        win = store.key("btc", "btc", "win", n)
        stale = [k for k in await redis.hkeys(win) if k[:2] in (b"t:", b"q:", b"j:")]
        await redis.hdel(win, *stale)
    assert (await store.snapshot(["btc"]))["btc"] != expected
    await store.load()
    assert (await store.snapshot(["btc"]))["btc"] == expected
    assert await redis.hget(meta, "counts") == b"2"


async def test_provider_metrics_appear_once_a_mapping_is_known(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply(cycle_blocks(900_000, 40, "poolin"))

    def samples(metrics: list) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in metrics:
            if family.name.startswith("convmon_btc_template_provider"):
                for s in family.samples:
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    assert samples(await store.state_metrics()) == {}
    await store.apply([change("novablock", "poolin")])
    found = samples(await store.state_metrics())
    key = ("convmon_btc_template_provider_share_ratio",
           (("provider", "poolin"), ("window", "144")))
    assert found[key] == 0.4
    assert found[("convmon_btc_template_provider_nakamoto_coefficient",
                  (("window", "144"),))] == 2
