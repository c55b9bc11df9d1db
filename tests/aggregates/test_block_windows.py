"""Block windows against an independent in-memory count: any arrival order, reorgs,
redelivery, attribution, two workers. The blocks carry template providers and
jurisdictions that change along the chain, so the per-provider and per-jurisdiction counts
are checked the same way as the pools'."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.events import BitcoinBlock, Event
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from tests.aggregates import factories as f
from tests.aggregates import oracle
from tests.aggregates.conftest import MakeStore
from tests.conftest import client_for

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

POOLS = ["foundryusa", "antpool", "viabtc", "f2pool", "unknown", "btccom"]
SMALL = {"bitcoin_windows": [5, 10, 20], "hashprice_window": 5, "block_history_margin": 6}
ENTITIES = AggregatesConfig().entity_map()
# What the collector writes into the payloads here: two pools under one parent.
PARENTS = {"antpool": "Bitmain", "btccom": "Bitmain"}


def provider_at(height: int, pool: str) -> str | None:
    """What the collector stamped: viabtc mines on antpool's template at even heights
    (the mapping changes along the chain), btccom always, the others on their own."""
    if pool == "btccom" or (pool == "viabtc" and height % 2 == 0):
        return "antpool"
    return pool if pool in ("foundryusa", "f2pool") and height % 3 == 0 else None


def jurisdiction_at(height: int, pool: str) -> str | None:
    """foundryusa is US; antpool and btccom CN; viabtc CN at heights divisible by three,
    unknown (no row) otherwise; f2pool carries none (counts as unknown)."""
    if pool == "foundryusa":
        return "US"
    if pool in ("antpool", "btccom") or (pool == "viabtc" and height % 3 == 0):
        return "CN"
    return "unknown" if pool == "viabtc" else None


def provider_of(b: BitcoinBlock) -> str:
    return "unknown" if b.pool == "unknown" else b.template_provider or b.pool


def jurisdiction_of(b: BitcoinBlock) -> str:
    return "unknown" if b.pool == "unknown" else b.jurisdiction or "unknown"


def model_windows(blocks: list[Event], windows: list[int]) -> dict[str, Any]:
    """Independent count: per window, blocks in (tip-N, tip] of the given best chain."""
    by_height = {}
    for e in blocks:
        assert isinstance(e.payload, BitcoinBlock)
        by_height[e.payload.height] = e.payload
    tip = max(by_height)
    out: dict[str, Any] = {}
    for n in windows:
        inside = [by_height[h] for h in range(tip - n + 1, tip + 1) if h in by_height]
        pools = Counter(b.pool for b in inside)
        entities = Counter(
            "unknown" if b.pool == "unknown" else ENTITIES.get(b.pool) or b.entity or b.pool
            for b in inside
        )
        providers = Counter(provider_of(b) for b in inside)
        places = Counter(jurisdiction_of(b) for b in inside)
        longest: dict[str, int] = {}
        run_pool, run = None, 0
        for h in range(tip - n + 1, tip + 1):
            b = by_height.get(h)
            if b is None:
                run_pool, run = None, 0
                continue
            run = run + 1 if b.pool == run_pool else 1
            run_pool = b.pool
            if b.pool != "unknown":
                longest[b.pool] = max(longest.get(b.pool, 0), run)
        out[str(n)] = {
            "blocks": len(inside),
            "pools": dict(pools),
            "entities": dict(entities),
            "empty": sum(1 for b in inside if b.tx_count == 1),
            "fees": sum(b.fees_sats for b in inside),
            "top2": oracle.top_share(pools, 2),
            "hhi": oracle.hhi(pools),
            "nakamoto": oracle.nakamoto(pools),
            "entity_nakamoto": oracle.nakamoto(entities),
            "providers": dict(providers),
            "provider_members": {
                prov: len({b.pool for b in inside if provider_of(b) == prov})
                for prov in providers if prov != "unknown"
            },
            "provider_top2": oracle.top_share(providers, 2),
            "provider_hhi": oracle.hhi(providers),
            "provider_nakamoto": oracle.nakamoto(providers),
            "jurisdictions": dict(places),
            "jurisdiction_top1": oracle.top_share(places, 1),
            "longest": longest,
            "current": (run_pool, run),
        }
    return out


def assert_matches(btc: dict[str, Any], model: dict[str, Any]) -> None:
    for n, m in model.items():
        w = btc["windows"][n]
        assert w["blocks"] == m["blocks"], n
        assert {p: v["blocks"] for p, v in w["pools"].items()} == m["pools"], n
        assert {e: v["blocks"] for e, v in w["entities"].items()} == m["entities"], n
        assert w["empty_blocks"] == m["empty"], n
        assert w["top2_share"] == pytest.approx(float(m["top2"]))
        assert w["hhi"] == pytest.approx(float(m["hhi"]))
        assert w["nakamoto"] == m["nakamoto"]
        assert w["entity_nakamoto"] == m["entity_nakamoto"]
        assert {p: v["blocks"] for p, v in w["providers"].items()} == m["providers"], n
        assert {p: v["pools"] for p, v in w["providers"].items()
                if p != "unknown"} == m["provider_members"], n
        assert w["provider_top2_share"] == pytest.approx(float(m["provider_top2"]))
        assert w["provider_hhi"] == pytest.approx(float(m["provider_hhi"]))
        assert w["provider_nakamoto"] == m["provider_nakamoto"]
        assert {j: v["blocks"] for j, v in w["jurisdictions"].items()} == m["jurisdictions"]
        assert w["jurisdiction_top1_share"] == pytest.approx(float(m["jurisdiction_top1"]))
        if m["blocks"]:
            assert w["fees_sats_mean"] == pytest.approx(m["fees"] / m["blocks"])
        longest = {p: v["longest_run"] for p, v in w["pools"].items() if v["longest_run"]}
        assert longest == m["longest"], n
    largest = model[max(model, key=int)]
    assert (btc["current_run"]["pool"], btc["current_run"]["length"]) == largest["current"]


def chain(heights: list[int], pools: list[str], branch: str = "a") -> list[Event]:
    return [
        f.block(h, p, branch=branch, tx_count=1 if (h * 7) % 5 == 0 else 2000, fees=h * 1000,
                entity=PARENTS.get(p), provider=provider_at(h, p),
                jurisdiction=jurisdiction_at(h, p))
        for h, p in zip(heights, pools, strict=True)
    ]


async def fresh_store(redis_url: str, clock: ManualClock) -> tuple[Redis, Keys, AggregateStore]:
    redis: Redis = client_for(redis_url)
    keys = Keys(prefix=f"tp{uuid.uuid4().hex[:12]}")
    store = AggregateStore(redis, keys, clock, AggregatesConfig(**SMALL))  # type: ignore[arg-type]
    await store.load()
    return redis, keys, store


async def drop(redis: Redis, keys: Keys) -> None:
    async for k in redis.scan_iter(match=f"{keys.prefix}:*", count=1000):
        await redis.delete(k)
    await redis.aclose()


def btc_state(snap: dict[str, Any]) -> dict[str, Any]:
    btc = dict(snap["btc"])
    btc.pop("reorgs_total")
    btc.pop("last_reorg_depth")
    btc.pop("last_reorg_time")
    return btc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    heights=st.sets(st.integers(min_value=100, max_value=160), min_size=1, max_size=45),
)
def test_any_arrival_order_equals_independent_count(
    redis_url: str, data: st.DataObject, heights: set[int]
) -> None:
    hs = sorted(heights)
    pools = data.draw(st.lists(st.sampled_from(POOLS), min_size=len(hs), max_size=len(hs)))
    blocks = chain(hs, pools)
    order = data.draw(st.permutations(blocks))
    batch = data.draw(st.integers(min_value=1, max_value=10))

    async def scenario() -> None:
        redis, keys, store = await fresh_store(redis_url, ManualClock(f.T0))
        try:
            for i in range(0, len(order), batch):
                await store.apply(order[i : i + batch])
            snap = await store.snapshot(["btc"])
            tip = max(hs)
            kept = [b for b in blocks if b.position > tip - 26]
            assert_matches(snap["btc"], model_windows(kept, [5, 10, 20]))
            assert snap["btc"]["tip_height"] == tip
        finally:
            await drop(redis, keys)

    asyncio.run(scenario())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    depth=st.integers(min_value=1, max_value=5),
    extra=st.integers(min_value=0, max_value=4),
    shuffle=st.booleans(),
)
def test_reorg_then_new_branch_equals_new_branch_directly(
    redis_url: str, data: st.DataObject, depth: int, extra: int, shuffle: bool
) -> None:
    base_h = list(range(200, 230))
    base = chain(base_h, data.draw(st.lists(st.sampled_from(POOLS), min_size=30, max_size=30)))
    a_h = list(range(230, 230 + depth))
    a = chain(a_h, data.draw(st.lists(st.sampled_from(POOLS), min_size=depth, max_size=depth)))
    b_h = list(range(230, 230 + depth + extra))
    b = chain(
        b_h, data.draw(st.lists(st.sampled_from(POOLS), min_size=len(b_h), max_size=len(b_h))),
        branch="b",
    )
    rg = f.reorg(229, a, b[-1])
    stream = [*base, *a, rg, *b]
    if shuffle:
        stream = data.draw(st.permutations(stream))

    async def scenario() -> None:
        r1, k1, with_reorg = await fresh_store(redis_url, ManualClock(f.T0))
        r2, k2, direct = await fresh_store(redis_url, ManualClock(f.T0))
        try:
            await with_reorg.apply(stream)
            await direct.apply([*base, *b])
            s1 = await with_reorg.snapshot(["btc"])
            s2 = await direct.snapshot(["btc"])
            assert btc_state(s1) == btc_state(s2)
            assert s1["btc"]["reorgs_total"] == 1
            assert s1["btc"]["last_reorg_depth"] == depth
            assert_matches(s1["btc"], model_windows([*base, *b], [5, 10, 20]))
        finally:
            await drop(r1, k1)
            await drop(r2, k2)

    asyncio.run(scenario())


@pytest.mark.parametrize("depth", [1, 3])
async def test_reorg_reverts_every_window_exactly(make_store: MakeStore, depth: int) -> None:
    store = await make_store(**SMALL)
    rng = random.Random(depth)
    base = chain(list(range(1, 41)), [rng.choice(POOLS) for _ in range(40)])
    await store.apply(base)
    before = await store.snapshot(["btc"])
    a = chain(list(range(41, 41 + depth)), ["foundryusa"] * depth)
    await store.apply(a)
    after_a = await store.snapshot(["btc"])
    assert after_a["btc"]["tip_height"] == 40 + depth
    # the reorg alone (no new blocks yet) must restore the state before A exactly
    b = chain(list(range(41, 42 + depth)), ["antpool"] * (depth + 1), branch="b")
    await store.apply([f.reorg(40, a, b[-1])])
    reverted = await store.snapshot(["btc"])
    assert btc_state(reverted) == btc_state(before)
    await store.apply(b)
    final = await store.snapshot(["btc"])
    assert_matches(final["btc"], model_windows([*base, *b], [5, 10, 20]))
    assert final["btc"]["tip_hash"] == f.block_hash(41 + depth, "b")


async def test_redelivery_changes_nothing(make_store: MakeStore) -> None:
    store = await make_store(**SMALL)
    blocks = chain(list(range(1, 31)), [POOLS[h % 4] for h in range(30)])
    rg = f.reorg(29, blocks[-1:], f.block(30, "viabtc", branch="b"))
    events = [*blocks, rg, f.block(30, "viabtc", branch="b"), f.attribution(28, "f2pool")]
    first = await store.apply(events)
    assert all(first)
    snap = await store.snapshot(["btc"])
    again = await store.apply(events)
    assert not any(again)
    assert await store.snapshot(["btc"]) == snap
    assert snap["btc"]["reorgs_total"] == 1


async def test_attribution_updates_a_stored_block(make_store: MakeStore) -> None:
    store = await make_store(**SMALL)
    blocks = chain([1, 2, 3], ["unknown", "antpool", "antpool"])
    await store.apply(blocks)
    w = (await store.snapshot(["btc"]))["btc"]["windows"]["5"]
    assert w["unknown_blocks"] == 1
    assert w["pools"]["antpool"]["longest_run"] == 2
    assert await store.apply([f.attribution(1, "antpool", version="v2", entity="Bitmain")]) == [
        True
    ]
    w = (await store.snapshot(["btc"]))["btc"]["windows"]["5"]
    assert w["unknown_blocks"] == 0
    assert w["pools"]["antpool"]["blocks"] == 3
    assert w["pools"]["antpool"]["longest_run"] == 3
    assert w["entities"]["Bitmain"]["blocks"] == 3
    # an older registry version does not undo a newer attribution
    assert await store.apply([f.attribution(1, "viabtc", version="v1")]) == [False]
    # a hash that does not match the stored block changes nothing visible
    await store.apply([f.attribution(2, "viabtc", branch="z", version="v3")])
    w = (await store.snapshot(["btc"]))["btc"]["windows"]["5"]
    assert w["pools"]["antpool"]["blocks"] == 3
    assert "viabtc" not in w["pools"]


async def test_attribution_before_its_block_is_kept(make_store: MakeStore) -> None:
    store = await make_store(**SMALL)
    await store.apply([f.attribution(7, "foundryusa")])
    await store.apply([f.block(7, "unknown")])
    w = (await store.snapshot(["btc"]))["btc"]["windows"]["5"]
    assert {p: v["blocks"] for p, v in w["pools"].items()} == {"foundryusa": 1}
    assert w["unknown_blocks"] == 0


async def test_two_workers_interleaved_equal_one(
    redis: Redis, redis_url: str, keys: Keys, clock: ManualClock, make_store: MakeStore
) -> None:
    rng = random.Random(7)
    base = chain(list(range(500, 560)), [rng.choice(POOLS) for _ in range(60)])
    a = chain([560, 561, 562], ["antpool"] * 3)
    b = chain([560, 561, 562, 563], ["viabtc"] * 4, branch="b")
    stream = [*base, *a, f.reorg(559, a, b[-1]), *b]
    stream += [f.attribution(540, "f2pool"), f.price("BTC", 90_000.0, f.T0)]
    stream += [f.mint("USDC", 10**12 + i, f.T0 - 60 * i, n=i) for i in range(20)]
    stream += [f.payout("helium", "HNT", 10**8 * i, f.T0 - 30 * i, [f"r{i}"]) for i in range(20)]
    single_worker = await make_store(**SMALL)
    other_keys = Keys(prefix=keys.prefix + "w")
    w1 = await make_store(keys_=other_keys, **SMALL)
    w2 = AggregateStore(client_for(redis_url), other_keys, clock, w1.config)
    await w2.load()
    try:
        await single_worker.apply(stream)
        halves = (stream[0::2], stream[1::2])
        for i in range(0, len(stream), 8):
            await asyncio.gather(w1.apply(halves[0][i : i + 8]), w2.apply(halves[1][i : i + 8]))
        # redelivery of the whole stream to the second worker changes nothing
        assert not any(await w2.apply(stream))
        roots = ["btc", "stablecoin", "depin", "market", "miner"]
        assert await w1.snapshot(roots) == await single_worker.snapshot(roots)
    finally:
        async for k in redis.scan_iter(match=f"{other_keys.prefix}:*"):
            await redis.delete(k)
        await w2.redis.aclose()


async def test_changed_windows_are_recounted(
    redis: Redis, keys: Keys, clock: ManualClock
) -> None:
    blocks = chain(list(range(1, 31)), [POOLS[h % 5] for h in range(30)])
    small = AggregateStore(redis, keys, clock, AggregatesConfig(
        bitcoin_windows=[5, 10], hashprice_window=5, block_history_margin=12))
    await small.load()
    await small.apply(blocks)
    bigger = AggregateStore(redis, keys, clock, AggregatesConfig(**SMALL))  # type: ignore[arg-type]
    await bigger.load()
    snap = await bigger.snapshot(["btc"])
    assert_matches(snap["btc"], model_windows(blocks, [5, 10, 20]))


def mixed_stream() -> list[Event]:
    rng = random.Random(11)
    base = chain(list(range(700, 740)), [rng.choice(POOLS) for _ in range(40)])
    a = chain([740, 741], ["antpool", "antpool"])
    b = chain([740, 741, 742], ["viabtc"] * 3, branch="b")
    t = f.T0
    return [
        *base, *a, f.reorg(739, a, b[-1]), *b, f.attribution(735, "f2pool"),
        f.price("BTC", 90_000.0, t - 5), f.price("BTC", 91_000.0, t - 4),
        f.price("BTC", 92_000.0, t - 1), f.price("USDT", 0.998, t - 3),
        f.status("bitcoin", True, t - 50), f.status("bitcoin", False, t - 20),
        f.supply("USDC", 10**12, t - 4 * 3600), f.supply("USDC", 2 * 10**12, t - 100),
        *[f.mint("USDC", 10**9 * (i + 1), t - 997 * i, n=i) for i in range(15)],
        *[f.mint("USDT", 10**8 * (i + 1), t - 3001 * i, burn=True, n=i) for i in range(10)],
        *[f.payout("nosana", "NOS", 10**6 * i, t - 601 * i, [f"r{i % 7}"], decimals=6, n=i)
          for i in range(15)],
    ]


STREAM = mixed_stream()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    order=st.permutations(range(len(STREAM))),
    split=st.lists(st.booleans(), min_size=len(STREAM), max_size=len(STREAM)),
    batch=st.integers(min_value=1, max_value=12),
)
def test_two_workers_any_split_equal_one(
    redis_url: str, order: list[int], split: list[bool], batch: int
) -> None:
    """Blocks, reorg, attribution and the time series, split between two workers at
    random, applied concurrently in random order, equal one worker applying in order
    (supply samples excepted: drift depends on which mints were seen before a sample)."""
    events = [STREAM[i] for i in order]
    halves = ([e for e, s in zip(events, split, strict=True) if s],
              [e for e, s in zip(events, split, strict=True) if not s])

    async def scenario() -> None:
        clock = ManualClock(f.T0)
        r1, k1, single_worker = await fresh_store(redis_url, clock)
        r2, k2, w1 = await fresh_store(redis_url, clock)
        r3 = client_for(redis_url)
        w2 = AggregateStore(r3, k2, clock, w1.config)
        try:
            await single_worker.apply(STREAM)
            for i in range(0, max(len(halves[0]), len(halves[1])), batch):
                await asyncio.gather(
                    w1.apply(halves[0][i : i + batch]), w2.apply(halves[1][i : i + batch])
                )
            roots = ["btc", "stablecoin", "depin", "market", "miner", "collectors"]
            s1, s2 = await single_worker.snapshot(roots), await w2.snapshot(roots)
            for tok in (*s1["stablecoin"]["tokens"].values(), *s2["stablecoin"]["tokens"].values()):
                tok.pop("supply_drift")
            assert s1 == s2
        finally:
            await r3.aclose()
            await drop(r1, k1)
            await drop(r2, k2)

    asyncio.run(scenario())
