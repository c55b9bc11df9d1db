"""The bus on a real Redis Cluster: shards on several nodes, and a primary killed mid-stream.

The fault is the real one: ``kill -9`` of the primary that holds a shard's slot while a
producer publishes (each batch confirmed by a replica, ``bus.replica_acks: 1``) and a
consumer group reads; the replica is promoted by the cluster itself, and the dead node
comes back as a replica of the new primary. Nothing may be lost (every event id reaches
the handler) and nothing doubled (each id is once in the stream; the producer's retries
are deduped).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.bus import BusMetrics, Delivery, EventBus
from convmon.monitor.config import BusSettings
from convmon.monitor.events import Event, MarketPrice
from convmon.monitor.keys import Keys
from convmon.sim.redis_cluster import LocalRedisCluster
from tests.conftest import client_for
from tests.monitor.failover import run_through_fault, status_event
from tests.waiting import eventually


@pytest.fixture
async def cluster_client(redis_cluster: LocalRedisCluster) -> AsyncIterator[Redis]:
    client = client_for(redis_cluster.url)
    try:
        yield client
    finally:
        await client.aclose()


async def test_shards_spread_over_primaries_and_dedupe_per_family(
    redis_cluster: LocalRedisCluster, cluster_client: Redis
) -> None:
    keys = Keys(prefix=f"t{uuid.uuid4().hex[:12]}")
    settings = BusSettings(shards=4, family_shards={"collector": 0, "market": 1},
                           block_ms=20, claim_idle_ms=200)
    bus = EventBus(cluster_client, keys, settings, BusMetrics(CollectorRegistry()))
    owners = {redis_cluster.primary_for(k).port for k in keys.event_streams(4)}
    assert len(owners) == 3, "the four shard tags land on all three primaries"
    statuses = [status_event(i) for i in range(30)]
    prices = [
        Event(id=f"test:price:{i}", chain="market", source="test", observed_at=float(i),
              occurred_at=float(i), position=i,
              payload=MarketPrice(symbol="BTC", price_usd=60000.0 + i))
        for i in range(30)
    ]
    assert statuses[0].kind.split(".")[0] == "collector"
    assert await bus.publish([*statuses, *prices], checkpoint=("test", "29")) == 60
    assert await bus.publish([*statuses[10:], *prices[:5]]) == 0
    assert await cluster_client.xlen(keys.event_stream(0)) == 30
    assert await cluster_client.xlen(keys.event_stream(1)) == 30
    assert await bus.get_checkpoint("test") == "29"
    seen: list[str] = []

    async def handle(batch: Sequence[Delivery[Event]]) -> None:
        seen.extend(d.value.id for d in batch)

    consumer = bus.consumer("g", "c1", handle)
    await consumer.ensure_group()
    await eventually(lambda: _stepped(consumer, seen, 60), "both shards consumed")
    assert sorted(seen) == sorted(e.id for e in [*statuses, *prices])


def _promoted(cluster: LocalRedisCluster, key: str, old_port: int) -> bool:
    node = cluster.serving_primary(key)
    return node is not None and node.port != old_port


async def _stepped(consumer: object, seen: list[str], want: int) -> bool:
    await consumer.step(block_ms=10)  # type: ignore[attr-defined]
    return len(seen) >= want


async def test_a_primary_killed_mid_stream_loses_and_doubles_nothing(
    redis_cluster: LocalRedisCluster, cluster_client: Redis
) -> None:
    keys = Keys(prefix=f"t{uuid.uuid4().hex[:12]}")
    settings = BusSettings(block_ms=20, claim_idle_ms=300, replica_acks=1,
                           replica_ack_timeout_ms=2000)
    bus = EventBus(cluster_client, keys, settings, BusMetrics(CollectorRegistry()))
    total = 3000
    victim = redis_cluster.primary_for(keys.events)

    async def kill_primary() -> None:
        redis_cluster.kill(victim)
        await eventually(lambda: _promoted(redis_cluster, keys.events, victim.port),
                         "the replica promoted")
        # The new primary has no replica until the dead node comes back (as a replica):
        # until then no write can be confirmed by one, and the producer keeps retrying.
        await asyncio.to_thread(redis_cluster.restart, victim)

    try:
        handled, deliveries = await run_through_fault(bus, total, kill_primary)
    finally:
        if victim not in redis_cluster.live_nodes():
            redis_cluster.restart(victim)
        redis_cluster.wait_healthy()
    await assert_once_each(cluster_client, bus, handled, deliveries, total)


async def assert_once_each(
    client: Redis, bus: EventBus, handled: set[str], deliveries: int, total: int
) -> None:
    rows = await client.xrange(bus.keys.events)
    ids = [f[b"id"].decode() for _, f in rows]
    assert len(ids) == len(set(ids)) == total, "each event is once in the stream"
    assert handled == {f"test:status:{i}" for i in range(total)}
    assert deliveries >= total
    assert await bus.get_checkpoint("test") == str(total - 1)
