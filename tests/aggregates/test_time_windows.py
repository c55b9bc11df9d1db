"""Time-bucketed sums over 1 h / 24 h / 7 d with a manual clock: roll-over, exact big
amounts, largest mint, track shares, supply drift, unique recipients (HyperLogLog)."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from tests.aggregates import factories as f
from tests.aggregates.conftest import MakeStore
from tests.conftest import client_for

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

HOUR = 3600


async def hget_int(redis: Redis, key: str, field: str) -> int:
    value = await redis.hget(key, field)
    assert value is not None
    return int(value)

DAY = 86_400


async def test_windows_roll_over(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    now = clock.now()
    await store.apply([f.mint("USDC", 5_000_000, now), f.mint("USDC", 1_000_000, now, burn=True)])
    clock.advance(30 * 60)
    await store.apply([f.mint("USDC", 2_000_000, clock.now())])
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDC/ethereum"]
    assert (tok["minted_1h"], tok["burned_1h"], tok["net_1h"]) == (7.0, 1.0, 6.0)
    clock.advance(31 * 60 + store.config.bucket_s)
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDC/ethereum"]
    assert (tok["minted_1h"], tok["net_1h"]) == (2.0, 2.0)
    assert (tok["minted_24h"], tok["net_24h"], tok["minted_7d"]) == (7.0, 6.0, 7.0)
    clock.advance(DAY)
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDC/ethereum"]
    assert (tok["minted_1h"], tok["minted_24h"], tok["net_7d"]) == (0.0, 0.0, 6.0)
    assert tok["largest_mint_24h"] == 0.0
    clock.advance(7 * DAY)
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDC/ethereum"]
    assert (tok["minted_7d"], tok["burned_7d"]) == (0.0, 0.0)
    assert (tok["minted_total"], tok["burned_total"]) == (7.0, 1.0)


async def test_an_event_older_than_a_window_is_not_in_it(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    now = clock.now()
    await store.apply([f.mint("USDT", 9_000_000, now - 2 * HOUR, track="offshore"),
                       f.mint("USDT", 1_000_000, now - 8 * DAY, track="offshore")])
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDT/ethereum"]
    assert (tok["minted_1h"], tok["minted_24h"], tok["minted_7d"]) == (0.0, 9.0, 9.0)
    assert tok["minted_total"] == 10.0


async def test_big_amounts_sum_exactly(
    make_store: MakeStore, clock: ManualClock, redis: Redis
) -> None:
    """18-decimal amounts pass 2^53 base units many times over; sums stay exact."""
    store = await make_store()
    amounts = [10**27 + 123_456_789_012_345_678 * i + 1 for i in range(1, 40)]
    events = [f.mint("USD1", a, clock.now() - 60 * i, decimals=18, track="machine-native", n=i)
              for i, a in enumerate(amounts)]
    await store.apply(events)
    total = await hget_int(redis, store.key("stable", "ts", "w", "mint:USD1/ethereum"), "tot")
    assert total == sum(amounts)
    clock.advance(HOUR - 60 * 19)  # the oldest ~20 leave the 1 h window
    await store.snapshot(["stablecoin"])
    wk = store.key("stable", "ts", "w", "mint:USD1/ethereum")
    bucket = store.config.bucket_s
    lo = int(clock.now() // bucket) - HOUR // bucket + 1
    assert (await hget_int(redis, wk, "lo3600")) == lo
    expected = sum(a for i, a in enumerate(amounts) if int((f.T0 - 60 * i) // bucket) >= lo)
    assert (await hget_int(redis, wk, "s3600")) == expected
    assert 0 < expected < sum(amounts)
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USD1/ethereum"]
    assert tok["minted_total"] == float(Decimal(sum(amounts)).scaleb(-18))
    assert tok["largest_mint_24h"] == float(Decimal(max(amounts)).scaleb(-18))


async def test_largest_mint_and_track_shares(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    t = clock.now()
    await store.apply([
        f.mint("USDC", 300 * 10**6, t), f.mint("USDC", 100 * 10**6, t, n=1),
        f.mint("USDT", 600 * 10**6, t, track="offshore"),
        f.mint("USDT", 50 * 10**6, t, track="offshore", burn=True),
        f.mint("USDC", 100 * 10**6, t, chain="solana", n=2),
        f.price("USDT", 1.0, t),
    ])
    sc = (await store.snapshot(["stablecoin"]))["stablecoin"]
    assert sc["tokens"]["USDC/ethereum"]["largest_mint_24h"] == 300.0
    assert sc["tokens"]["USDT/ethereum"]["net_24h_usd"] == 550.0
    assert sc["tracks"]["regulated"]["minted_24h_usd"] == 500.0
    assert sc["tracks"]["regulated"]["share_24h"] == pytest.approx(500 / 1100)
    assert sc["tracks"]["offshore"]["share_24h"] == pytest.approx(600 / 1100)
    assert sc["last_event_time"] == {"ethereum": t, "solana": t}


async def test_supply_drift_against_tracked_issuance(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    t = clock.now()
    await store.apply([f.supply("USDC", 1_000 * 10**6, t)])
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDC/ethereum"]
    assert (tok["supply"], tok["supply_drift"]) == (1000.0, None)
    await store.apply(
        [f.mint("USDC", 100 * 10**6, t + 10), f.supply("USDC", 1_100 * 10**6, t + 60)]
    )
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDC/ethereum"]
    assert (tok["supply"], tok["supply_drift"]) == (1100.0, 0.0)
    # 50 tokens appeared that no mint event explains
    await store.apply([f.supply("USDC", 1_150 * 10**6, t + 120)])
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDC/ethereum"]
    assert tok["supply_drift"] == 50.0
    # an older sample delivered late is ignored
    assert await store.apply([f.supply("USDC", 1 * 10**6, t + 30)]) == [False]


async def test_depin_sums_recipients_and_cadence(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    t = clock.now()
    await store.apply([
        f.payout("helium", "HNT", 5 * 10**8, t - 2 * DAY, ["a", "b"], n=1),
        f.payout("helium", "HNT", 3 * 10**8, t - 2 * HOUR, ["a", "b", "c"], n=2),
        f.payout("helium", "HNT", 2 * 10**8, t - 60, ["c", "d"], n=3),
        f.payout("nosana", "NOS", 7 * 10**6, t - 60, ["x"], decimals=6),
    ])
    dp = (await store.snapshot(["depin"]))["depin"]["networks"]
    hnt = dp["helium"]["tokens"]["HNT"]
    assert (hnt["paid_1h"], hnt["paid_24h"], hnt["paid_7d"]) == (2.0, 5.0, 10.0)
    assert hnt["daily_mean_7d"] == pytest.approx(10 / 7)
    assert hnt["paid_24h_usd"] is None
    assert dp["helium"]["recipients_24h"] == 4
    assert dp["helium"]["payouts_24h"] == 2
    assert dp["helium"]["last_payout_time"] == int(t - 60)
    assert dp["helium"]["since_last_payout_s"] == pytest.approx(60, abs=1)
    assert dp["helium"]["expected_cadence_s"] == 86_400
    assert dp["nosana"]["tokens"]["NOS"]["paid_24h"] == 7.0
    assert dp["hivemapper"]["last_payout_time"] is None
    await store.apply([f.price("HNT", 4.0, t)])
    dp = (await store.snapshot(["depin"]))["depin"]["networks"]
    assert dp["helium"]["tokens"]["HNT"]["paid_24h_usd"] == 20.0
    clock.advance(DAY + HOUR)
    dp = (await store.snapshot(["depin"]))["depin"]["networks"]
    assert dp["helium"]["recipients_24h"] == 0
    assert dp["helium"]["payouts_24h"] == 0
    assert dp["helium"]["tokens"]["HNT"]["paid_7d"] == 10.0


async def test_the_collectors_cadence_wins_over_the_configured_default(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    t = clock.now()
    await store.apply([
        f.payout("helium", "HNT", 10**8, t - 60, ["a"], cadence_s=2 * HOUR),
        f.payout("render", "RENDER", 10**8, t - 60, ["b"], cadence_s=3 * DAY),
    ])
    dp = (await store.snapshot(["depin"]))["depin"]["networks"]
    assert dp["helium"]["expected_cadence_s"] == 2 * HOUR  # not the 24 h default
    assert dp["render"]["expected_cadence_s"] == 3 * DAY  # a network the default lacks
    assert dp["nosana"]["expected_cadence_s"] == 3_600  # no payout yet: the default


async def test_hyperloglog_counts_many_recipients(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    t = clock.now()
    events = [
        f.payout(
            "hivemapper", "HONEY", 10**9, t - i,
            [f"owner{j}" for j in range(i * 50, i * 50 + 100)], decimals=9, n=i,
        )
        for i in range(120)
    ]
    await store.apply(events)  # 12,000 recipients in one batch and one bucket
    unique = 119 * 50 + 100
    got = (await store.snapshot(["depin"]))["depin"]["networks"]["hivemapper"]["recipients_24h"]
    assert abs(got - unique) / unique < 0.02


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3 * HOUR),  # clock advance
            st.lists(
                st.tuples(
                    st.integers(min_value=0, max_value=9 * DAY),  # event age
                    st.integers(min_value=1, max_value=10**30),  # units (18 decimals)
                ),
                max_size=6,
            ),
        ),
        min_size=1,
        max_size=12,
    )
)
def test_sliding_sums_equal_an_independent_sum(
    redis_url: str, steps: list[tuple[int, list[tuple[int, int]]]]
) -> None:
    async def scenario() -> None:
        redis: Redis = client_for(redis_url)
        keys = Keys(prefix=f"tp{uuid.uuid4().hex[:12]}")
        clock = ManualClock(f.T0)
        store = AggregateStore(redis, keys, clock, AggregatesConfig())
        await store.load()
        bucket = store.config.bucket_s
        seen: list[tuple[float, int]] = []
        try:
            for n, (advance, events) in enumerate(steps):
                clock.advance(advance)
                batch = [
                    f.mint("USD1", units, clock.now() - age, decimals=18, n=n * 10 + k)
                    for k, (age, units) in enumerate(events)
                ]
                await store.apply(batch)
                seen += [(clock.now() - age, units) for age, units in events]
                tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]
                if not seen:
                    continue
                cur = int(clock.now() // bucket)
                wk = store.key("stable", "ts", "w", "mint:USD1/ethereum")
                for name, secs in store.config.time_windows.items():
                    lo = cur - secs // bucket + 1
                    expected = sum(u for t, u in seen if int(t // bucket) >= lo)
                    assert (await hget_int(redis, wk, f"s{secs}")) == expected
                    assert tok["USD1/ethereum"][f"minted_{name}"] == pytest.approx(
                        expected / 10**18
                    )
                assert (await hget_int(redis, wk, "tot")) == sum(u for _, u in seen)
        finally:
            async for k in redis.scan_iter(match=f"{keys.prefix}:*", count=1000):
                await redis.delete(k)
            await redis.aclose()

    asyncio.run(scenario())


async def test_a_malformed_event_fails_alone(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    good = f.mint("USDC", 10**6, clock.now())
    bad = f.mint("USDC", 10**6, clock.now(), n=1)
    # typed events cannot carry a non-number; the script argument can, so feed it directly
    garbled = f"M\x1f{bad.id}\x1fUSDC/ethereum\x1f{{}}\x1fnot-a-number\x1fx\x1fethereum"
    assert await store._eval_batches([garbled]) == [-1]
    assert await store.apply([good, bad]) == [True, True]  # the bad id was not left marked
    tok = (await store.snapshot(["stablecoin"]))["stablecoin"]["tokens"]["USDC/ethereum"]
    assert tok["minted_total"] == 2.0
