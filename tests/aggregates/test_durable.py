"""With ``bus.replica_acks`` the aggregates are applied through `DurableScripts` (every apply
call confirmed by a replica, per node, before `apply` returns): on the local cluster the
windows come out the same as without it, redelivery still changes nothing, and a cluster
whose replicas cannot confirm makes `apply` fail (to be retried) instead of returning."""

from __future__ import annotations

import uuid

import pytest
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.durable import DurableScripts, ReplicaAckError
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.sim.redis_cluster import LocalRedisCluster
from tests.aggregates.test_migration import ROOTS, SMALL, history
from tests.conftest import client_for


@pytest.fixture
async def cluster(redis_cluster: LocalRedisCluster) -> Redis:
    return client_for(redis_cluster.url)


async def test_confirmed_applies_equal_plain_ones(
    cluster: Redis, clock: ManualClock
) -> None:
    config = AggregatesConfig(**SMALL)
    clock.advance(12 * 600)
    durable = DurableScripts(cluster, 1, 5000)
    confirmed = AggregateStore(cluster, Keys(prefix=f"t{uuid.uuid4().hex[:12]}"), clock,
                               config, durable=durable)
    plain = AggregateStore(cluster, Keys(prefix=f"t{uuid.uuid4().hex[:12]}"), clock, config)
    try:
        for store in (confirmed, plain):
            await store.load()
            assert all(await store.apply(history()))
        assert await confirmed.snapshot(ROOTS) == await plain.snapshot(ROOTS)
        assert not any(await confirmed.apply(history()))
        # More replicas than a primary has: no write can be confirmed.
        durable.replicas = 2
        durable.timeout_ms = 50
        with pytest.raises(ReplicaAckError):
            await confirmed.apply([*history()])
    finally:
        await durable.aclose()
        await cluster.aclose()
