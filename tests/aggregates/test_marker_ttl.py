"""Applied-event markers live as long as the state they protect needs: a mint (summed in
time windows) for ``applied_ttl_s``, a price or a status (a latest value, idempotent on its
own) for ``applied_ttl_latest_s``; and a redelivered price changes nothing either way."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from tests.aggregates.conftest import MakeStore
from tests.aggregates.factories import T0, mint, price, status

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
