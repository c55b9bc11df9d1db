"""Bus semantics against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from convmon.monitor.bus import BusMetrics, Delivery, EventBus, StreamConsumer
from convmon.monitor.config import BusSettings
from convmon.monitor.events import CollectorStatus, Event, MarketPrice
from convmon.monitor.keys import Keys

pytestmark = pytest.mark.all_redis


def make_event(i: int) -> Event:
    return Event(
        id=f"test:status:{i}",
        chain="convmon",
        source="test",
        observed_at=1000.0 + i,
        occurred_at=1000.0 + i,
        position=i,
        payload=CollectorStatus(collector="test", connected=i % 2 == 0, detail=str(i)),
    )


class Recorder:
    def __init__(self, fail_on: set[int] | None = None) -> None:
        self.seen: list[int] = []
        self.fail_on = fail_on or set()

    async def __call__(self, batch: Sequence[Delivery[Event]]) -> None:
        for d in batch:
            if d.value.position in self.fail_on:
                raise RuntimeError(f"poison {d.value.position}")
        self.seen.extend(d.value.position for d in batch)


async def drain(consumer: StreamConsumer[Event], rounds: int = 20) -> None:
    await consumer.ensure_group()
    for _ in range(rounds):
        await consumer.step(block_ms=10)


async def test_publish_is_idempotent_and_checkpoint_is_atomic(bus: EventBus, redis: Redis) -> None:
    events = [make_event(i) for i in range(10)]
    assert await bus.publish(events, checkpoint=("test", "9")) == 10
    assert await bus.publish(events[5:], checkpoint=("test", "9")) == 0
    assert await redis.xlen(bus.keys.events) == 10
    assert await bus.get_checkpoint("test") == "9"


async def test_consume_acks_after_success(bus: EventBus, redis: Redis) -> None:
    await bus.publish([make_event(i) for i in range(250)])
    rec = Recorder()
    consumer = bus.consumer("g", "c1", rec)
    await drain(consumer)
    assert rec.seen == list(range(250))
    pending = await redis.xpending(bus.keys.events, "g")
    assert pending["pending"] == 0


async def test_killed_consumer_entries_are_reclaimed_by_another(
    bus: EventBus, redis: Redis
) -> None:
    await bus.publish([make_event(i) for i in range(20)])
    # c1 reads the entries and dies before acking (no handler ran to completion).
    dying = bus.consumer("g", "c1", Recorder())
    await dying.ensure_group()
    await redis.xreadgroup("g", "c1", {bus.keys.events: ">"}, count=20)
    rec = Recorder()
    other = bus.consumer("g", "c2", rec)
    await other.step(block_ms=10)
    assert rec.seen == []  # not idle long enough yet
    await asyncio.sleep(bus.settings.claim_idle_ms / 1000 + 0.05)
    await drain(other)
    assert sorted(rec.seen) == list(range(20))
    assert (await redis.xpending(bus.keys.events, "g"))["pending"] == 0


async def test_restarted_consumer_resumes_its_own_pending(bus: EventBus, redis: Redis) -> None:
    await bus.publish([make_event(i) for i in range(5)])
    first = bus.consumer("g", "c1", Recorder())
    await first.ensure_group()
    await redis.xreadgroup("g", "c1", {bus.keys.events: ">"}, count=5)
    rec = Recorder()
    again = bus.consumer("g", "c1", rec)
    await drain(again, rounds=3)
    assert rec.seen == list(range(5))


async def test_poison_entry_reaches_dead_letter_and_others_pass(
    bus: EventBus, redis: Redis, registry: CollectorRegistry
) -> None:
    await bus.publish([make_event(i) for i in range(6)])
    rec = Recorder(fail_on={3})
    consumer = bus.consumer("g", "c1", rec)
    await consumer.ensure_group()
    for _ in range(bus.settings.max_deliveries + 2):
        await consumer.step(block_ms=10)
        await asyncio.sleep(bus.settings.claim_idle_ms / 1000 + 0.02)
    assert sorted(rec.seen) == [0, 1, 2, 4, 5]
    dead = await redis.xrange(bus.keys.events_dead)
    assert len(dead) == 1
    assert dead[0][1][b"reason"] == b"max_deliveries"
    assert (await redis.xpending(bus.keys.events, "g"))["pending"] == 0
    assert registry.get_sample_value(
        "convmon_bus_dead_letters_total",
        {"stream": bus.keys.events, "group": "g", "reason": "max_deliveries"},
    ) == 1


async def test_undecodable_entry_is_dead_lettered(bus: EventBus, redis: Redis) -> None:
    await redis.xadd(bus.keys.events, {"id": "x", "kind": "junk", "data": b"{not json"})
    await bus.publish([make_event(1)])
    rec = Recorder()
    await drain(bus.consumer("g", "c1", rec), rounds=3)
    assert rec.seen == [1]
    dead = await redis.xrange(bus.keys.events_dead)
    assert [d[1][b"reason"] for d in dead] == [b"undecodable"]


async def test_trimming_bounds_the_stream(redis: Redis, keys: Keys) -> None:
    settings = BusSettings(maxlen=1000)
    bus = EventBus(redis, keys, settings, BusMetrics(CollectorRegistry()))
    for start in range(0, 5000, 500):
        await bus.publish([make_event(i) for i in range(start, start + 500)])
    length = await redis.xlen(keys.events)
    assert 1000 <= length < 2000


async def test_checkpoint_survives_a_new_bus(bus: EventBus, redis: Redis) -> None:
    await bus.publish([make_event(1)], checkpoint=("btc", "840000:abc"))
    again = EventBus(redis, bus.keys, bus.settings, BusMetrics(CollectorRegistry()))
    assert await again.get_checkpoint("btc") == "840000:abc"


async def test_entries_trimmed_while_pending_are_acked_and_counted(
    bus: EventBus, redis: Redis, registry: CollectorRegistry
) -> None:
    await bus.publish([make_event(i) for i in range(2)])
    dying = bus.consumer("g", "dead", Recorder())
    await dying.ensure_group()
    read = await redis.xreadgroup("g", "dead", {bus.keys.events: ">"}, count=10)
    first_id = read[0][1][0][0]
    await redis.xdel(bus.keys.events, first_id)  # trimmed while pending on a dead consumer
    await asyncio.sleep(bus.settings.claim_idle_ms / 1000 + 0.05)
    rec = Recorder()
    live = bus.consumer("g", "live", rec)
    for _ in range(5):
        await live.step(block_ms=10)
    assert rec.seen == [1]
    assert (await redis.xpending(bus.keys.events, "g"))["pending"] == 0
    assert await redis.xlen(bus.keys.events_dead) == 0
    assert registry.get_sample_value(
        "convmon_bus_trimmed_unprocessed_entries_total",
        {"stream": bus.keys.events, "group": "g"},
    ) == 1


async def test_long_gone_consumers_are_pruned(bus: EventBus, redis: Redis) -> None:
    await bus.publish([make_event(i) for i in range(3)])
    old = bus.consumer("g", "old-pod", Recorder())
    await drain(old, rounds=2)  # handled and acked: nothing pending
    holder = bus.consumer("g", "holder", Recorder())
    await redis.xreadgroup("g", "holder", {bus.keys.events: "0"}, count=1)
    await bus.publish([make_event(9)])
    await redis.xreadgroup("g", "holder", {bus.keys.events: ">"}, count=1)
    await asyncio.sleep(0.05)
    live = bus.consumer("g", "live", Recorder())
    await live.ensure_group()
    assert await live.prune_consumers(idle_ms=10) == ["old-pod"]
    names = {c["name"] for c in await redis.xinfo_consumers(bus.keys.events, "g")}
    assert names == {b"holder"}  # the one holding an entry is kept
    del holder


async def test_dead_letter_counters_exist_from_the_start(redis: Redis, keys: Keys) -> None:
    """Alerting rules take increase() of them: the series must exist at 0 before the first
    dead letter, or the first one is never seen as an increase."""
    registry = CollectorRegistry()
    bus = EventBus(redis, keys, BusSettings(), BusMetrics(registry))

    async def handle(batch: Sequence[Delivery[Event]]) -> None:
        return None

    bus.consumer("zero", "c1", handle)
    for reason in ("max_deliveries", "undecodable"):
        labels = {"stream": keys.events, "group": "zero", "reason": reason}
        assert registry.get_sample_value("convmon_bus_dead_letters_total", labels) == 0.0
    assert registry.get_sample_value(
        "convmon_bus_handler_errors_total", {"stream": keys.events, "group": "zero"}
    ) == 0.0


async def test_the_stream_is_trimmed_by_time(redis: Redis, keys: Keys) -> None:
    """Entries older than ``retention_s`` go at the next publish (whole stream nodes of 100
    entries, as ``XTRIM MINID ~`` does); the recent ones stay."""
    bus = EventBus(redis, keys, BusSettings(retention_s=3600), BusMetrics(CollectorRegistry()))
    for n in range(250):  # from 1970: far older than the retention
        await redis.xadd(keys.events, {"id": f"old{n}", "kind": "x", "data": "{}"},
                         id=f"{1000 + n}-0")
    await bus.publish([make_event(i) for i in range(10)])
    rows = await redis.xrange(keys.events)
    ids = [f[b"id"].decode() for _, f in rows]
    assert sum(1 for i in ids if i.startswith("old")) <= 50
    assert [i for i in ids if not i.startswith("old")] == [f"test:status:{i}" for i in range(10)]


async def test_dedupe_markers_live_as_long_as_their_family_needs(
    redis: Redis, keys: Keys
) -> None:
    settings = BusSettings(dedupe_ttl_s=5 * 86400, family_dedupe_ttl_s={"market": 600})
    bus = EventBus(redis, keys, settings, BusMetrics(CollectorRegistry()))
    price = Event(id="market:price:BTC:1", chain="market", source="test", observed_at=1.0,
                  occurred_at=1.0, position=1, payload=MarketPrice(symbol="BTC", price_usd=1.0))
    assert await bus.publish([price, make_event(1)]) == 2
    assert 0 < await redis.ttl(keys.dedupe(price.id)) <= 600
    assert 600 < await redis.ttl(keys.dedupe(make_event(1).id)) <= 5 * 86400
    assert await bus.publish([price, make_event(1)]) == 0


async def test_a_sharded_consumer_handles_one_batch_at_a_time(
    redis: Redis, keys: Keys
) -> None:
    settings = BusSettings(shards=3, family_shards={"collector": 0, "market": 1},
                           block_ms=20, claim_idle_ms=200, batch=10)
    bus = EventBus(redis, keys, settings, BusMetrics(CollectorRegistry()))
    prices = [Event(id=f"market:price:BTC:{i}", chain="market", source="test",
                    observed_at=float(i), occurred_at=float(i), position=i,
                    payload=MarketPrice(symbol="BTC", price_usd=1.0 + i)) for i in range(40)]
    statuses = [make_event(i) for i in range(40)]
    assert await bus.publish([*prices, *statuses]) == 80
    assert await redis.xlen(keys.event_stream(0)) == 40
    assert await redis.xlen(keys.event_stream(1)) == 40
    active, most, seen = 0, 0, 0

    async def slow(batch: Sequence[Delivery[Event]]) -> None:
        nonlocal active, most, seen
        active += 1
        most = max(most, active)
        await asyncio.sleep(0.005)
        seen += len(batch)
        active -= 1

    consumer = bus.consumer("g", "c1", slow)
    await consumer.ensure_group()
    for _ in range(20):
        await consumer.step(block_ms=10)
    assert (seen, most) == (80, 1)


async def test_a_failing_shard_stops_the_consumer_with_its_own_error(
    redis: Redis, keys: Keys
) -> None:
    bus = EventBus(redis, keys, BusSettings(shards=2, block_ms=20),
                   BusMetrics(CollectorRegistry()))
    consumer = bus.consumer("g", "c1", Recorder())
    await consumer.ensure_group()
    await redis.delete(keys.event_stream(1))
    await redis.set(keys.event_stream(1), "not a stream")  # shard 1 now fails on every call
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        await consumer.run()
