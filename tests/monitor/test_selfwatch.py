"""The ops sampler against real Redis (the current server and 6.2): what it reads from
heartbeats, collector liveness, consumer groups and dead-letter streams, that replicas
publish one sample per interval and one disconnect per expired collector between them, and
that the aggregates turn samples into the ``ops`` root (a process that died, one that
stopped cleanly)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import msgspec
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.events import CollectorStatus, Event, OpsSample, decode_event
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.monitor.redismemory import redis_memory_metrics
from convmon.monitor.selfwatch import EXPIRED_DETAIL, RESUMED_DETAIL, OpsSampler
from convmon.rules.aggregates import AggregatesConfig, AggregateStore

pytestmark = pytest.mark.all_redis

T0 = 1_800_000_000.0
TTL_S = 30


class SteppedClock(ManualClock):
    """Time moves only when the test advances it; ``sleep`` waits for that."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self._moved = asyncio.Condition()

    async def sleep(self, seconds: float) -> None:
        until = self.now() + max(0.0, seconds)
        async with self._moved:
            await self._moved.wait_for(lambda: self.now() >= until)

    async def move(self, seconds: float) -> None:
        self.advance(seconds)
        async with self._moved:
            self._moved.notify_all()


def runtime(redis: Redis, keys: Keys, bus: EventBus, clock: ManualClock, tmp_path: Path,
            instance: str = "sampler-1") -> Runtime:
    return Runtime(settings=CoreSettings(), redis=redis, keys=keys, bus=bus, clock=clock,
                   metrics=CollectorRegistry(), instance=instance, data_dir=tmp_path)


def component(name: str, state: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "role": "collectors", "state": state, "restarts": 0,
            "last_error": "", "since": T0, "up": state == "running", **extra}


async def heartbeat(redis: Redis, keys: Keys, instance: str, roles: str,
                    components: list[dict[str, Any]]) -> None:
    key = keys.heartbeat(instance)
    await redis.hset(key, mapping={"instance": instance, "roles": roles, "updated_at": T0,
                                   "components": json.dumps(components)})
    await redis.expire(key, TTL_S)


async def stream_events(redis: Redis, keys: Keys, kind: str) -> list[Event]:
    rows: Any = await redis.xrange(keys.events)
    return [decode_event(f[b"data"]) for _, f in rows if f[b"kind"] == kind.encode()]


async def test_sample_lists_live_processes_and_their_components(
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    await heartbeat(redis, keys, "host-a", "collectors,rules", [
        component("bitcoin", "running", restarts=2),
        component("depin", "backoff", restarts=5, last_error="ConnectionError: " + "x" * 900),
    ])
    # A heartbeat of the format before `up` was added: up follows the state.
    old = [{k: v for k, v in component("market", "running").items() if k != "up"}]
    await heartbeat(redis, keys, "host-b", "collectors", old)
    await redis.hset(keys.heartbeat("host-b"), "stopping", "1")
    await heartbeat(redis, keys, "host-dead", "alerts", [component("dispatcher", "running")])
    await redis.delete(keys.heartbeat("host-dead"))  # its process died

    event = await OpsSampler(runtime(redis, keys, bus, clock, tmp_path)).sample()

    sample = event.payload
    assert isinstance(sample, OpsSample)
    assert event.id == f"ops:sample:{int(T0 * 1000)}"
    assert [(p.instance, p.roles) for p in sample.processes] == [
        ("host-a", ["collectors", "rules"]), ("host-b", ["collectors"]),
    ]
    assert all(p.ttl_s is not None and 0 < p.ttl_s <= TTL_S for p in sample.processes)
    assert [p.stopping for p in sample.processes] == [False, True]
    by_name = {c.name: c for c in sample.components}
    assert sorted(by_name) == ["bitcoin", "depin", "market"]
    assert (by_name["bitcoin"].up, by_name["bitcoin"].restarts) == (True, 2)
    assert (by_name["depin"].up, by_name["depin"].state) == (False, "backoff")
    assert len(by_name["depin"].last_error) == 200
    assert by_name["market"].up is True
    assert [e.id for e in await stream_events(redis, keys, "ops.sample")] == [event.id]


async def test_groups_pending_lag_and_dead_letters(
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    sampler = OpsSampler(runtime(redis, keys, bus, clock, tmp_path))
    for n in range(5):
        await redis.xadd(keys.events, {"id": f"e{n}", "kind": "x", "data": "{}"})
    await redis.xgroup_create(keys.events, "rules", id="0")
    await redis.xreadgroup("rules", "worker-1", {keys.events: ">"}, count=2)
    await redis.xadd(keys.events_dead, {"id": "poison", "reason": "max_deliveries"})

    sample = (await sampler.sample()).payload
    assert isinstance(sample, OpsSample)
    [group] = [g for g in sample.groups if g.stream == "events"]
    assert (group.group, group.pending, group.consumers) == ("rules", 2, 1)
    version = int((await redis.info("server"))["redis_version"].split(".")[0])
    # Redis 6.2 reports no lag; 7 counts the entries not yet delivered.
    assert group.lag == (None if version < 7 else 3)
    assert group.behind_s >= 0 and group.oldest_pending_s is not None
    assert sample.dead_letters == {"events": 1, "alerts": 0}


async def test_two_samplers_publish_one_sample_per_interval(
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path
) -> None:
    clock = SteppedClock(T0 + 3)
    samplers = [OpsSampler(runtime(redis, keys, bus, clock, tmp_path, f"s{i}"), interval_s=15)
                for i in (1, 2)]
    tasks = [asyncio.create_task(s.run()) for s in samplers]

    async def samples_are(n: int) -> list[Event]:
        while len(found := await stream_events(redis, keys, "ops.sample")) < n:
            await redis.xread({keys.events: "$"}, block=100)  # wakes on the next entry
        return found

    try:
        found = await samples_are(1)
        for k in range(2, 5):
            await clock.move(15)
            found = await samples_are(k)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    start = int(T0 * 1000)
    assert [e.id for e in found] == [f"ops:sample:{start + k * 15_000}" for k in range(4)]
    assert all(t.cancelled() for t in tasks)


async def test_an_expired_collector_is_disconnected_once_by_several_samplers(
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    for name in ("bitcoin", "market", "depin"):
        await redis.sadd(keys.collectors, name)
    # bitcoin: connected, but the process that kept its liveness key died.
    await redis.hset(keys.collector_status("bitcoin"),
                     mapping={"connected": "1", "since": T0 - 600, "detail": "ws open"})
    # market: connected and live; depin: disconnected (nothing to do).
    await redis.hset(keys.collector_status("market"), mapping={"connected": "1", "since": T0})
    await redis.set(keys.collector_live("market"), "host-a", ex=TTL_S)
    await redis.hset(keys.collector_status("depin"), mapping={"connected": "0", "since": T0})
    samplers = [OpsSampler(runtime(redis, keys, bus, clock, tmp_path, f"s{i}")) for i in range(3)]

    await asyncio.gather(*(s.sample() for s in samplers))
    await asyncio.gather(*(s.sample() for s in samplers))

    statuses = await stream_events(redis, keys, "collector.status")
    assert [(e.id, e.payload) for e in statuses] == [(
        f"collector:bitcoin:expired:{T0 - 600}",
        CollectorStatus(collector="bitcoin", connected=False, detail=EXPIRED_DETAIL),
    )]
    status = await redis.hgetall(keys.collector_status("bitcoin"))
    assert (status[b"connected"], status[b"detail"]) == (b"0", EXPIRED_DETAIL.encode())
    assert float(status[b"since"]) == T0
    assert (await redis.hget(keys.collector_status("market"), "connected")) == b"1"
    assert (await redis.hget(keys.collector_status("depin"), "connected")) == b"0"
    assert len(await stream_events(redis, keys, "ops.sample")) == 1

    # Its process was only late: the liveness key is back, and so is the status, once.
    clock.advance(20)
    await redis.set(keys.collector_live("bitcoin"), "host-b", ex=TTL_S)
    changed = await asyncio.gather(*(s.expire_collectors(clock.now()) for s in samplers))
    assert sorted(changed) == [[], [], ["bitcoin"]]
    statuses = await stream_events(redis, keys, "collector.status")
    assert [(e.id, e.payload) for e in statuses[1:]] == [(
        f"collector:bitcoin:resumed:{T0}",
        CollectorStatus(collector="bitcoin", connected=True, detail=RESUMED_DETAIL),
    )]
    assert (await redis.hget(keys.collector_status("bitcoin"), "connected")) == b"1"
    # A collector that disconnected by itself is not "resumed" by a stray liveness key.
    await redis.set(keys.collector_live("depin"), "host-b", ex=TTL_S)
    assert await samplers[0].expire_collectors(clock.now()) == []


async def test_the_ops_root_tells_a_process_that_died_from_one_that_stopped(
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path
) -> None:
    clock = ManualClock(T0)
    sampler = OpsSampler(runtime(redis, keys, bus, clock, tmp_path))
    store = AggregateStore(redis, keys, clock, AggregatesConfig())
    await store.load()
    for name in ("alive", "crashed", "stopped"):
        await heartbeat(redis, keys, name, "collectors", [component("bitcoin", "running")])
    await store.apply([await sampler.sample()])

    # "stopped" deletes its heartbeat on a clean shutdown, 15 s later: long before its TTL
    # would have run out. "crashed" is deleted too, but its heartbeat is found missing only
    # after its TTL would have run out, as when it expires.
    await redis.delete(keys.heartbeat("stopped"))
    clock.advance(15)
    await redis.expire(keys.heartbeat("alive"), TTL_S)
    await redis.expire(keys.heartbeat("crashed"), TTL_S)
    await store.apply([await sampler.sample()])
    await redis.delete(keys.heartbeat("crashed"))
    clock.advance(TTL_S + 15)
    await redis.expire(keys.heartbeat("alive"), TTL_S)
    await store.apply([await sampler.sample()])

    ops = (await store.snapshot({"ops"}))["ops"]
    states = {name: p["state"] for name, p in ops["processes"].items()}
    assert states == {"alive": "alive", "crashed": "died", "stopped": "stopped"}
    assert ops["processes"]["crashed"]["gone_for_s"] == 0
    assert sorted(ops["components"]) == ["alive/bitcoin"]
    assert ops["sample_age_s"] == 0 and ops["interval_s"] == 15


async def test_sample_carries_the_memory_of_the_redis_primary(
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path
) -> None:
    info = await redis.info("memory")
    sample = (await OpsSampler(runtime(redis, keys, bus, ManualClock(T0), tmp_path))
              .sample()).payload
    assert isinstance(sample, OpsSample)
    [memory] = sample.redis
    assert memory.node == "primary"
    assert memory.used_memory > 0 and memory.maxmemory == int(info["maxmemory"])


async def test_a_redis_that_refuses_info_leaves_memory_out_and_says_so_once(
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Some managed offerings restrict INFO: here a real ACL user allowed everything else."""
    user, password = f"{keys.prefix}-noinfo", uuid.uuid4().hex
    await redis.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                            channels=["*"], commands=["+@all", "-info"], reset=True)
    pool = redis.connection_pool
    restricted = Redis(connection_pool=ConnectionPool(
        connection_class=pool.connection_class,
        **{**pool.connection_kwargs, "username": user, "password": password},
    ))
    try:
        with pytest.raises(ResponseError):
            await restricted.info("memory")
        rt = runtime(restricted, keys, bus, ManualClock(T0), tmp_path)
        sampler = OpsSampler(rt)
        with caplog.at_level(logging.WARNING, logger="convmon.monitor.selfwatch"):
            first = (await sampler.sample()).payload
            rt.clock.advance(15)  # type: ignore[attr-defined]
            second = (await sampler.sample()).payload
        assert isinstance(first, OpsSample) and isinstance(second, OpsSample)
        assert first.redis == [] and second.redis == []
        assert [e.id for e in await stream_events(redis, keys, "ops.sample")] == [
            f"ops:sample:{int(T0 * 1000)}", f"ops:sample:{int((T0 + 15) * 1000)}",
        ]
        refused = [r for r in caplog.records if "refuses INFO" in r.getMessage()]
        assert len(refused) == 1
        assert rt.metrics.get_sample_value("convmon_ops_redis_memory_refused_total") == 2.0
        # /metrics goes on without the memory gauges rather than failing whole.
        assert await redis_memory_metrics(restricted) == []
    finally:
        await restricted.aclose()
        await redis.acl_deluser(user)


async def test_a_failure_raises_out_of_run(
    redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path
) -> None:
    unreachable = Redis(unix_socket_path=str(tmp_path / "nobody.sock"),
                        retry=Retry(NoBackoff(), 0))
    rt = runtime(unreachable, keys, bus, ManualClock(T0), tmp_path)
    try:
        with pytest.raises(RedisConnectionError):
            await OpsSampler(rt).run()
    finally:
        await unreachable.aclose()


def test_the_interval_is_validated(redis: Redis, keys: Keys, bus: EventBus,
                                   tmp_path: Path) -> None:
    rt = runtime(redis, keys, bus, ManualClock(T0), tmp_path)
    for bad in (0.0, -5.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="interval_s"):
            OpsSampler(rt, interval_s=bad)


def test_samples_round_trip_through_the_event_codec() -> None:
    sample = OpsSample(interval_s=15)
    event = Event(id="ops:sample:0", chain="convmon", source="ops/x", observed_at=T0,
                  occurred_at=T0, position=0, payload=sample)
    assert decode_event(msgspec.json.encode(event)) == event
