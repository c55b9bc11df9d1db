"""Applied-event markers live as long as the state they protect needs: a mint (summed in
time windows) for ``applied_ttl_s``, a price, a status, an ops sample or a supply (a latest
value, idempotent on its own) for ``applied_ttl_latest_s``; and a redelivered price, ops
sample or supply changes nothing either way."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.aggregates.conftest import MakeStore
from tests.aggregates.factories import T0, mint, price, status, supply
from tests.aggregates.test_ops import sample

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too


async def test_marker_ttls_follow_what_the_event_feeds(make_store: MakeStore, redis: Redis) -> None:
    store = await make_store(applied_ttl_s=8 * 86400, applied_ttl_latest_s=900)
    flow, quote, up = mint("USDT", 10**12, T0), price("BTC", 90_000.0, T0), status("x", True, T0)
    assert await store.apply([flow, quote, up]) == [True, True, True]
    assert 0 < await redis.ttl(store.key("market", "done", quote.id)) <= 900
    assert 0 < await redis.ttl(store.key("ops", "done", up.id)) <= 900
    assert 7 * 86400 < await redis.ttl(store.key("stable", "done", flow.id)) <= 8 * 86400
    await redis.delete(store.key("market", "done", quote.id))  # the short marker has expired
    prices = await redis.hgetall(store.key("market", "prices"))
    assert await store.apply([quote]) == [False]
    assert await redis.hgetall(store.key("market", "prices")) == prices


async def test_an_ops_sample_applied_again_after_its_marker_changes_nothing(
    make_store: MakeStore, redis: Redis
) -> None:
    store = await make_store(applied_ttl_latest_s=900)
    first = sample(T0, processes=("a", "b"), backlog=3, down=("rules",))
    later = sample(T0 + 15, processes=("a",), backlog=5, down=("rules",))
    assert await store.apply([first, later]) == [True, True]
    assert 0 < await redis.ttl(store.key("ops", "done", first.id)) <= 900
    before = await store.snapshot(["ops"])
    await redis.delete(store.key("ops", "done", first.id))  # the short marker has expired
    await store.apply([first])
    assert await store.snapshot(["ops"]) == before


async def test_a_supply_applied_again_after_its_marker_changes_nothing(
    make_store: MakeStore, redis: Redis
) -> None:
    store = await make_store(applied_ttl_latest_s=900)
    first, later = supply("USDC", 60 * 10**15, T0), supply("USDC", 61 * 10**15, T0 + 300)
    flow = mint("USDC", 10**12, T0 + 100)
    assert await store.apply([first, flow, later]) == [True, True, True]
    assert 0 < await redis.ttl(store.key("stable", "done", first.id)) <= 900
    before = await store.snapshot(["stablecoin"])
    for event in (first, later):
        await redis.delete(store.key("stable", "done", event.id))  # expired
    assert await store.apply([first, later]) == [False, False]
    assert await store.snapshot(["stablecoin"]) == before
