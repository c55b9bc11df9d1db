"""Every stream is trimmed by time as well as by length: the event stream by
``bus.retention_s`` (tests/monitor/test_bus.py), the alert outbox by
``bus.outbox_retention_s``, the dead-letter streams (events, alert transitions,
notifications) by ``bus.dead_letter_retention_s``. Old entries go at the next write, in
whole stream nodes of 100 entries as ``XTRIM MINID ~`` trims; recent ones stay."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.alerts.store import AlertStore
from convmon.monitor.bus import BusMetrics, Delivery, EventBus, retention_minid
from convmon.monitor.config import BusSettings
from convmon.monitor.events import Event
from convmon.monitor.keys import Keys
from convmon.rules.state import InstanceState, InstanceStore, Write
from tests.alerts.helpers import transition

OLD = 250


async def fill_with_old_entries(redis: Redis, stream: str) -> None:
    """``OLD`` entries from 1970, far older than any retention."""
    for n in range(OLD):
        await redis.xadd(stream, {"old": str(n)}, id=f"{1000 + n}-0")


async def old_left(redis: Redis, stream: str) -> int:
    return sum(1 for _, fields in await redis.xrange(stream) if b"old" in fields)


def test_the_trim_point_is_the_retention_before_now() -> None:
    assert retention_minid(3600, now=1_800_000_000.0) == "1799996400000-0"
    assert retention_minid(3600, now=10.0) == "0-0"


async def test_the_outbox_is_trimmed_by_its_retention(redis: Redis, keys: Keys) -> None:
    await fill_with_old_entries(redis, keys.alerts)
    store = InstanceStore(redis, keys, outbox_retention_s=3600)
    t = transition({"alertname": "PegOff"}, "firing", 1, 1_800_000_000.0)
    state = InstanceState(rule="PegOff", labels=t.labels, status="firing", seq=1)
    assert await store.write([Write(t.fingerprint, 0, state, t)]) == [True]
    assert await old_left(redis, keys.alerts) <= 50
    assert [f[b"id"] for _, f in await redis.xrange(keys.alerts) if b"id" in f] == [t.id.encode()]


async def test_undelivered_notifications_are_trimmed_by_the_dead_letter_retention(
    redis: Redis, keys: Keys
) -> None:
    await fill_with_old_entries(redis, keys.notifications_dead)
    await AlertStore(redis, keys, dead_retention_s=3600).dead_letter({"group": "g"})
    assert await old_left(redis, keys.notifications_dead) <= 50
    assert await redis.xlen(keys.notifications_dead) >= 1


async def test_event_dead_letters_are_trimmed_by_the_dead_letter_retention(
    redis: Redis, keys: Keys
) -> None:
    await fill_with_old_entries(redis, keys.events_dead)
    bus = EventBus(redis, keys, BusSettings(dead_letter_retention_s=3600, block_ms=10),
                   BusMetrics(CollectorRegistry()))

    async def handle(batch: Sequence[Delivery[Event]]) -> None:
        pass

    consumer = bus.consumer("rules", "w1", handle)
    await consumer.ensure_group()
    await redis.xadd(keys.events, {"id": "x", "kind": "nope", "data": "not json"})
    await consumer.step(block_ms=10)
    reasons = [f[b"reason"] for _, f in await redis.xrange(keys.events_dead) if b"reason" in f]
    assert reasons == [b"undecodable"]
    assert await old_left(redis, keys.events_dead) <= 50
