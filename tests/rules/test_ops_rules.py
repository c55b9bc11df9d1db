"""The default pack's ops rules where the rule-test format cannot reach: collector
silence is judged from the status hashes collectors write, and its per-collector limits are
a map parameter whose overrides merge with the defaults; Redis memory is judged from what
the real ops sampler reads from a real server with a maxmemory."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.alerting import decode_transition
from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.events import Event, OpsRedisMemory, OpsSample
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.monitor.redisconn import EmbeddedRedis, find_redis_server
from convmon.monitor.selfwatch import OpsSampler
from convmon.monitor.yamlfile import FileErrors
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.engine import RuleEngine, RuleMetrics
from convmon.rules.loader import RuleSet, load_rules

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

T0 = 1_800_000_000.0


async def firing(redis: Redis, keys: Keys, rule: str, label: str = "collector",
                 state: str = "firing") -> dict[str, str]:
    """Label ``label`` -> summary of the rule's instances in ``state``."""
    out = {}
    for raw in await redis.hvals(keys.active_alerts):
        alert = decode_transition(raw)
        if alert.rule == rule and alert.state == state:
            out[alert.labels[label]] = alert.annotations["summary"]
    return out


async def evaluate(redis: Redis, keys: Keys, rules: RuleSet, clock: ManualClock) -> None:
    store = AggregateStore(redis, keys, clock, AggregatesConfig())
    await store.load()
    engine = RuleEngine(redis, keys, clock, rules, store, RuleMetrics(CollectorRegistry()))
    await engine.evaluate_timer()


async def status(redis: Redis, keys: Keys, name: str, connected: bool, idle_s: float) -> None:
    await redis.sadd(keys.collectors, name)
    await redis.hset(keys.collector_status(name), mapping={
        "connected": int(connected), "since": T0 - 86_400, "last_event_at": T0 - idle_s,
    })


async def test_a_connected_collector_that_processes_nothing_is_silent(
    redis: Redis, keys: Keys
) -> None:
    clock = ManualClock(T0)
    await status(redis, keys, "bitcoin", True, idle_s=2 * 3600 + 60)
    await status(redis, keys, "market", True, idle_s=300)  # within its 10 min
    await status(redis, keys, "stablecoins_ethereum", False, idle_s=3600)  # disconnected
    await status(redis, keys, "my_collector", True, idle_s=86_400)  # no limit configured
    await evaluate(redis, keys, load_rules([]), clock)
    assert await firing(redis, keys, "CollectorSilent") == {
        "bitcoin": "Collector bitcoin connected but silent for 2h1m",
    }


async def test_overriding_one_collector_keeps_the_others_defaults(
    redis: Redis, keys: Keys
) -> None:
    clock = ManualClock(T0)
    await status(redis, keys, "bitcoin", True, idle_s=2 * 3600 + 60)
    await status(redis, keys, "market", True, idle_s=900)
    await status(redis, keys, "my_collector", True, idle_s=700)
    rules = load_rules([], overrides={
        "CollectorSilent": {"max_silence_s": {"bitcoin": 4 * 3600, "my_collector": 600}},
    })
    assert rules.by_name("CollectorSilent").params["max_silence_s"] == {
        "bitcoin": 14_400.0, "stablecoins_ethereum": 900.0, "stablecoins_base": 900.0,
        "stablecoins_solana": 21_600.0,
        "depin": 93_600.0, "market": 600.0, "my_collector": 600.0,
    }
    await evaluate(redis, keys, rules, clock)
    assert sorted(await firing(redis, keys, "CollectorSilent")) == ["market", "my_collector"]


def test_a_map_parameter_takes_only_numbers() -> None:
    with pytest.raises(FileErrors) as info:
        load_rules([], overrides={"CollectorSilent": {"max_silence_s": {"bitcoin": "2h"}}})
    [error] = info.value.errors
    assert "rules.params.CollectorSilent.max_silence_s" in str(error)
    with pytest.raises(FileErrors):
        load_rules([], overrides={"CollectorSilent": {"max_silence_s": 600}})


def ops_sample(t: float, *memory: OpsRedisMemory) -> Event:
    return Event(id=f"ops:sample:{int(t * 1000)}", chain="convmon", source="ops/test",
                 observed_at=t, occurred_at=t, position=int(t * 1000),
                 payload=OpsSample(interval_s=60, redis=list(memory)))


async def engine_for(redis: Redis, keys: Keys, rules: RuleSet, clock: ManualClock
                     ) -> RuleEngine:
    store = AggregateStore(redis, keys, clock, AggregatesConfig())
    await store.load()
    return RuleEngine(redis, keys, clock, rules, store, RuleMetrics(CollectorRegistry()))


async def test_the_redis_memory_threshold_is_a_parameter(redis: Redis, keys: Keys) -> None:
    clock = ManualClock(T0)
    default = await engine_for(redis, keys, load_rules([]), clock)
    lowered_keys = Keys(f"{keys.prefix}:lowered")
    lowered = await engine_for(redis, lowered_keys, load_rules(
        [], overrides={"RedisMemoryNearLimit": {"max_ratio": 0.5}}), clock)
    for minute in range(11):
        clock.advance(60 if minute else 0)
        event = ops_sample(clock.now(), OpsRedisMemory(node="primary", used_memory=600,
                                                       maxmemory=1000))
        for engine in (default, lowered):
            await engine.handle([event])
            await engine.evaluate_timer()
    assert await firing(redis, keys, "RedisMemoryNearLimit", "node") == {}
    assert await firing(redis, lowered_keys, "RedisMemoryNearLimit", "node") == {
        "primary": "Redis primary uses 60% of its maxmemory",
    }


@pytest.fixture
async def limited_redis() -> AsyncIterator[Redis]:
    """A private redis-server (maxmemory is server-wide: never set it on the shared one)."""
    binary = find_redis_server()
    if binary is None:
        pytest.skip("no redis-server binary")
    # Unix socket paths are limited to ~107 bytes; keep the directory short.
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="cm-mem-")), binary=binary)
    await server.start()
    client = Redis.from_url(server.url)
    try:
        yield client
    finally:
        await client.aclose()
        await server.stop()


async def test_a_real_primary_above_the_limit_for_ten_minutes_alerts(
    limited_redis: Redis, tmp_path: Path
) -> None:
    """The real sampler reads the server's INFO; the rule fires after its ``for`` and
    only for a primary that has a maxmemory."""
    redis, keys, clock = limited_redis, Keys(f"t{uuid.uuid4().hex[:12]}"), ManualClock(T0)
    bus = EventBus(redis, keys, CoreSettings().bus, BusMetrics(CollectorRegistry()))
    rt = Runtime(settings=CoreSettings(), redis=redis, keys=keys, bus=bus, clock=clock,
                 metrics=CollectorRegistry(), instance="sampler", data_dir=tmp_path)
    sampler = OpsSampler(rt, interval_s=60)
    # The threshold well below the ratio set here: Redis's own use moves a little.
    rules = load_rules([], overrides={"RedisMemoryNearLimit": {"max_ratio": 0.5}})
    engine = await engine_for(redis, keys, rules, clock)

    async def minute() -> OpsSample:
        event = await sampler.sample()
        await engine.handle([event])
        await engine.evaluate_timer()
        clock.advance(60)
        assert isinstance(event.payload, OpsSample)
        return event.payload

    unlimited = await minute()  # no maxmemory (0): never a ratio, never an alert
    assert [(m.node, m.maxmemory) for m in unlimited.redis] == [("primary", 0)]
    used = int((await redis.info("memory"))["used_memory"])
    await redis.config_set("maxmemory", int(used / 0.7))
    for _ in range(10):
        sample = await minute()
        assert 0.5 < sample.redis[0].used_memory / sample.redis[0].maxmemory < 1
    pending = await firing(redis, keys, "RedisMemoryNearLimit", "node", state="pending")
    assert list(pending) == ["primary"]
    await minute()  # ten minutes after the first sample above the limit
    assert list(await firing(redis, keys, "RedisMemoryNearLimit", "node")) == ["primary"]
