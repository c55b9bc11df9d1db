"""Prices, pegs, USD valuation of events, miner economics, collector status."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregateError
from tests.aggregates import factories as f
from tests.aggregates.conftest import MakeStore

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

DAY = 86_400


def independent_hashprice(rewards_sats: list[int], difficulty: float, price: float) -> float:
    """USD per PH/s per day, written out from the definitions in DESIGN.md."""
    btc_per_block = sum(rewards_sats) / len(rewards_sats) / 1e8
    btc_per_day = btc_per_block * 144  # 86,400 s / 600 s
    network_phs = difficulty * 4_294_967_296 / 600 / 1e15
    return btc_per_day * price / network_phs


async def test_hashprice_from_known_blocks(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    difficulty = 1.4e14
    blocks = [
        f.block(h, "foundryusa", fees=1_000_000 + 10_000 * (h % 37), difficulty=difficulty)
        for h in range(880_000, 880_200)
    ]
    await store.apply(blocks)
    miner = (await store.snapshot(["miner"]))["miner"]
    assert miner["hashprice_usd_per_phs_day"] is None  # no price: no figure, not zero
    assert miner["revenue_usd_per_mwh"] == {"15": None, "20": None, "25": None}
    await store.apply([f.price("BTC", 95_000.0, clock.now())])
    miner = (await store.snapshot(["miner"]))["miner"]
    last144 = [b.payload for b in blocks[-144:]]
    expected = independent_hashprice(
        [p.subsidy_sats + p.fees_sats for p in last144], difficulty, 95_000.0  # type: ignore[union-attr]
    )
    assert miner["hashprice_usd_per_phs_day"] == pytest.approx(expected, rel=1e-12)
    assert miner["btc_price"] == 95_000.0
    for e in (15, 20, 25):
        per_mwh = expected / 1000 / (e * 24 / 1e6)
        assert miner["revenue_usd_per_mwh"][str(e)] == pytest.approx(per_mwh, rel=1e-12)
        assert miner["revenue_to_ai_low_ratio"][str(e)] == pytest.approx(per_mwh / 200)
    assert miner["ai_benchmark_low_usd_per_mwh"] == 200.0
    assert miner["ai_benchmark_high_usd_per_mwh"] == 500.0
    # a stale price is not used
    clock.advance(store.config.price_staleness_s + 1)
    miner = (await store.snapshot(["miner"]))["miner"]
    assert miner["hashprice_usd_per_phs_day"] is None


async def test_hashprice_change_over_7_days(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    await store.apply([f.block(h, "antpool") for h in range(1, 150)])
    await store.apply([f.price("BTC", 100_000.0, clock.now())])
    before = (await store.snapshot(["miner"]))["miner"]["hashprice_usd_per_phs_day"]
    assert before is not None
    clock.advance(7 * DAY)
    await store.apply([f.price("BTC", 80_000.0, clock.now())])
    miner = (await store.snapshot(["miner"]))["miner"]
    assert miner["hashprice_7d_ago"] == pytest.approx(before)
    assert miner["hashprice_change_7d"] == pytest.approx(-0.2)


async def test_peg_deviation(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    await store.apply([f.price("USDT", 0.994, clock.now(), sources=("kraken", "coinbase"))])
    market = (await store.snapshot(["market"]))["market"]
    assert market["pegs"]["USDT"]["deviation"] == pytest.approx(-0.006)
    assert market["pegs"]["USDT"]["abs_deviation"] == pytest.approx(0.006)
    assert market["pegs"]["USDC"] == {"price": None, "deviation": None, "abs_deviation": None}
    assert market["prices"]["USDT"]["sources"] == ["kraken", "coinbase"]
    # an older sample delivered late does not replace the newer one
    assert await store.apply([f.price("USDT", 1.0, clock.now() - 5)]) == [False]
    clock.advance(store.config.price_staleness_s + 1)
    market = (await store.snapshot(["market"]))["market"]
    assert market["pegs"]["USDT"]["deviation"] is None
    assert market["prices"]["USDT"]["age_s"] == pytest.approx(store.config.price_staleness_s + 1)


async def test_usd_valuation_of_events(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    payout = f.payout("helium", "HNT", 250 * 10**8, clock.now(), ["a"])
    ctx = await store.event_context(payout)
    assert ctx["amount"] == 250.0
    assert ctx["usd"] is None and ctx["usd_source"] is None
    assert ctx["kind"] == "solana.depin_payout" and ctx["network"] == "helium"
    mint = f.mint("USDT", 150_000_000 * 10**6, clock.now(), track="offshore")
    ctx = await store.event_context(mint)
    assert (ctx["amount"], ctx["usd"], ctx["usd_source"]) == (150e6, 150e6, "peg")
    assert ctx["id"] == mint.id and ctx["position"] == mint.position
    await store.apply([f.price("HNT", 3.0, clock.now()), f.price("USDT", 0.99, clock.now())])
    assert (await store.event_context(payout))["usd"] == 750.0
    ctx = await store.event_context(mint)
    assert (ctx["usd"], ctx["usd_source"]) == (pytest.approx(148.5e6), "price")
    block = f.block(10, "foundryusa")
    ctx = await store.event_context(block)
    assert ctx["usd"] is None and ctx["pool"] == "foundryusa"


async def test_collectors_from_status_hash_and_events(
    make_store: MakeStore, clock: ManualClock, redis: Redis, keys: Keys
) -> None:
    store = await make_store()
    t = clock.now()
    await redis.hset(keys.collector_status("bitcoin"),
                     mapping={"connected": 1, "since": t - 100, "last_event_at": t - 30})
    await redis.sadd(keys.collectors, "bitcoin")
    await store.apply([f.status("depin", False, t - 400)])
    coll = (await store.snapshot(["collectors"]))["collectors"]
    assert coll["bitcoin"] == {"connected": True, "since": t - 100, "disconnected_for_s": 0.0,
                               "last_event_age_s": 30.0}
    assert coll["depin"]["connected"] is False
    assert coll["depin"]["disconnected_for_s"] == 400.0
    assert coll["market"]["connected"] is None
    # a later disconnect event wins over the older hash state
    await store.apply([f.status("bitcoin", False, t - 10)])
    coll = (await store.snapshot(["collectors"]))["collectors"]
    assert coll["bitcoin"]["connected"] is False
    assert coll["bitcoin"]["disconnected_for_s"] == 10.0


async def test_unknown_root_is_an_error(make_store: MakeStore) -> None:
    store = await make_store()
    with pytest.raises(AggregateError, match="bitcoin"):
        await store.snapshot(["bitcoin"])
    assert await store.snapshot(["now"]) == {}


async def test_ignored_kinds_and_empty_state(make_store: MakeStore) -> None:
    store = await make_store()
    assert await store.apply([]) == []
    snap = await store.snapshot(["btc", "miner", "stablecoin", "depin"])
    assert snap["btc"]["tip_height"] is None
    assert snap["btc"]["windows"]["144"]["blocks"] == 0
    assert snap["btc"]["windows"]["144"]["fees_sats_mean"] is None
    assert snap["miner"]["hashprice_usd_per_phs_day"] is None
    assert snap["stablecoin"]["tokens"] == {}
