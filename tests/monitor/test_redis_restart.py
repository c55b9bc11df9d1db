"""A Redis restart in the middle of a stream loses no event and doubles none.

"Doubles none" is about the stream: a producer that retries a publish across the outage
must not append an event twice, so each event id is counted in the stream and must appear
exactly once. The handler, by contrast, may see an entry twice (at-least-once delivery: an
ack lost in the outage redelivers), so handled ids are counted to be at least once.

The server is an embedded one with AOF (the daemon's own mode), stopped with SIGTERM and
started again on the same data dir while a producer and a consumer keep going; both retry
on connection errors as the supervisor would restart them.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convmon.monitor.bus import BusMetrics, Delivery, EventBus
from convmon.monitor.config import BusSettings
from convmon.monitor.events import Event, decode_event
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import EmbeddedRedis, find_redis_server
from tests.monitor.test_bus import make_event
from tests.shared_data import require_binary

RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


async def test_bus_survives_a_redis_restart() -> None:
    binary = require_binary("redis-server", find_redis_server())
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="cm-")), binary=binary)
    await server.start()
    redis: Redis = Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
    keys = Keys("restart")
    settings = BusSettings(batch=50, block_ms=20, claim_idle_ms=200)
    bus = EventBus(redis, keys, settings, BusMetrics(CollectorRegistry()))
    handled: list[str] = []

    async def handle(batch: Sequence[Delivery[Event]]) -> None:
        handled.extend(d.value.id for d in batch)

    consumer = bus.consumer("g", "c1", handle)
    total = 600
    produced = asyncio.Event()
    halfway = asyncio.Event()
    restarted = asyncio.Event()
    errors_seen = {"produce": 0, "consume": 0}

    async def produce() -> None:
        i = 0
        while i < total:
            try:
                await bus.publish([make_event(j) for j in range(i, i + 20)],
                                  checkpoint=("t", str(i + 19)))
                i += 20
            except RETRYABLE:
                errors_seen["produce"] += 1
                await asyncio.sleep(0.05)  # publish again: dedupe makes the retry safe
            if i >= total // 2:
                halfway.set()
                if not restarted.is_set():
                    await asyncio.sleep(0.02)
        produced.set()

    async def consume() -> None:
        while not (produced.is_set() and len(set(handled)) >= total):
            try:
                await consumer.ensure_group()
                await consumer.step()
            except RETRYABLE:
                errors_seen["consume"] += 1
                await asyncio.sleep(0.05)

    async def restart() -> None:
        await halfway.wait()
        await server.stop()
        await asyncio.sleep(0.3)
        await server.start()
        restarted.set()

    try:
        await asyncio.wait_for(asyncio.gather(produce(), consume(), restart()), 120)
        expected = {make_event(i).id: 1 for i in range(total)}
        in_stream = Counter(decode_event(fields[b"data"]).id
                            for _, fields in await redis.xrange(keys.events))
        assert in_stream == expected, {i: n for i, n in in_stream.items() if n != 1}
        handled_per_id = Counter(handled)
        assert set(handled_per_id) == set(expected)  # each handled at least once
        assert errors_seen["produce"] + errors_seen["consume"] > 0  # the outage was felt
        assert await bus.get_checkpoint("t") == str(total - 1)
    finally:
        await redis.aclose()
        await server.stop()
