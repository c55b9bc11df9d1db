"""The default pack's ops rules where the rule-test format cannot reach: collector
silence is judged from the status hashes collectors write, and its per-collector limits are
a map parameter whose overrides merge with the defaults."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.alerting import decode_transition
from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.monitor.yamlfile import FileErrors
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.engine import RuleEngine, RuleMetrics
from convmon.rules.loader import RuleSet, load_rules

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

T0 = 1_800_000_000.0


async def firing(redis: Redis, keys: Keys, rule: str) -> dict[str, str]:
    """Label ``collector`` -> summary of the rule's firing instances."""
    out = {}
    for raw in await redis.hvals(keys.active_alerts):
        alert = decode_transition(raw)
        if alert.rule == rule and alert.state == "firing":
            out[alert.labels["collector"]] = alert.annotations["summary"]
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
