"""The bus through Sentinel (``redis+sentinel://``): a primary killed mid-stream, the replica
promoted by the sentinel, the old primary back as a replica; nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis as redis_sync
from prometheus_client import CollectorRegistry

from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.config import BusSettings
from convmon.monitor.keys import Keys
from convmon.sim.redis_sentinel import LocalSentinel
from tests.conftest import client_for
from tests.monitor.failover import run_through_fault
from tests.monitor.test_cluster import assert_once_each
from tests.shared_data import require_binary
from tests.waiting import eventually


@pytest.fixture
def sentinel() -> Iterator[LocalSentinel]:
    setup = LocalSentinel.from_path()
    if setup is None:
        require_binary("redis-server (sentinel tests)", None)
        raise AssertionError("unreachable")
    setup.start()
    try:
        yield setup
    finally:
        setup.stop()


async def test_a_primary_killed_behind_sentinel_loses_and_doubles_nothing(
    sentinel: LocalSentinel,
) -> None:
    client = client_for(sentinel.url)
    keys = Keys(prefix=f"t{uuid.uuid4().hex[:12]}")
    settings = BusSettings(block_ms=20, claim_idle_ms=300, replica_acks=1)
    bus = EventBus(client, keys, settings, BusMetrics(CollectorRegistry()))
    assert sentinel.primary is not None and sentinel.replica is not None
    old, new = sentinel.primary, sentinel.replica
    await eventually(lambda: _replica_online(sentinel), "the replica in sync")

    async def kill_primary() -> None:
        old.kill()
        await eventually(lambda: sentinel.primary_port() == new.port, "the replica promoted")
        await asyncio.to_thread(old.start)  # the sentinel turns it into a replica

    try:
        handled, deliveries = await run_through_fault(bus, 2000, kill_primary)
        await assert_once_each(client, bus, handled, deliveries, 2000)
    finally:
        await client.aclose()


def _replica_online(sentinel: LocalSentinel) -> bool:
    assert sentinel.primary is not None
    client = redis_sync.Redis(host="127.0.0.1", port=sentinel.primary.port)
    try:
        return bool(client.info("replication").get("connected_slaves"))
    finally:
        client.close()
