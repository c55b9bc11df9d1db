"""Dead letters can be listed and redriven; a redriven entry is handled normally."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from convmon.monitor.bus import EventBus
from convmon.monitor.deadletters import list_dead, redrive
from tests.monitor.test_bus import Recorder, drain, make_event


async def test_redrive_after_the_cause_is_fixed(bus: EventBus, redis: Redis) -> None:
    await bus.publish([make_event(i) for i in range(3)])
    broken = Recorder(fail_on={1})
    consumer = bus.consumer("g", "c1", broken)
    await consumer.ensure_group()
    for _ in range(bus.settings.max_deliveries + 2):
        await consumer.step(block_ms=10)
        await asyncio.sleep(bus.settings.claim_idle_ms / 1000 + 0.02)
    dead = await list_dead(redis, bus.keys, "events")
    assert [(d.item_id, d.reason, d.group) for d in dead] == [
        ("test:status:1", "max_deliveries", "g")
    ]
    fixed = Recorder()
    consumer.handler = fixed
    assert await redrive(redis, bus.keys, "events") == 1
    assert await list_dead(redis, bus.keys, "events") == []
    await drain(consumer, rounds=3)
    assert fixed.seen == [1]
