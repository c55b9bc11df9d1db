"""The alert state machine against the real aggregate store and real Redis: every rule
kind through pending → firing → resolved, `for` (duration and count), `keep_firing_for`,
timers surviving a restart, and redelivery producing no transitions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.alerting import AlertTransition, decode_transition
from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.engine import RuleEngine, RuleMetrics
from convmon.rules.loader import RuleSet, load_rules
from tests.aggregates import factories as f

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

RULES = """\
rules:
  - name: PegOff
    kind: window
    events: [market.price]
    for_each: {map: market.pegs, label: token}
    condition: item.abs_deviation != null && item.abs_deviation > params.max
    value: item.deviation
    for: 5m
    params: {max: 0.005}
    severity: critical
    labels: {group: stablecoin}
    annotations: {summary: "{{ key }} off by {{ value | pct(1) }}"}
  - name: PegOffCounted
    kind: window
    events: [market.price]
    for_each: {map: market.pegs, label: token}
    condition: item.abs_deviation != null && item.abs_deviation > 0.005
    for: 3 events
    severity: warning
  - name: PegOffSticky
    kind: window
    events: [market.price]
    for_each: {map: market.pegs, label: token}
    condition: item.abs_deviation != null && item.abs_deviation > 0.005
    keep_firing_for: 10m
    severity: warning
  - name: BigMint
    kind: event
    events: [stablecoin.mint]
    condition: event.usd != null && event.usd >= params.min_usd
    value: event.usd
    for: 2m
    resolve_after: 30m
    params: {min_usd: 100000000}
    severity: warning
    labels: {token: "{{ event.token }}"}
    annotations: {summary: "{{ event.token }} mint of {{ value | human }}"}
  - name: NoBlock
    kind: absence
    events: [bitcoin.block]
    age: btc.last_block_age_s
    max_age: 30m
    severity: warning
"""


class Harness:
    def __init__(self, redis: Redis, keys: Keys, rules: RuleSet, clock: ManualClock) -> None:
        self.redis, self.keys, self.rules, self.clock = redis, keys, rules, clock
        self.registry = CollectorRegistry()

    async def engine(self) -> RuleEngine:
        """A fresh engine and store, as a restarted worker would build them."""
        store = AggregateStore(self.redis, self.keys, self.clock, AggregatesConfig())
        await store.load()
        return RuleEngine(self.redis, self.keys, self.clock, self.rules, store,
                          RuleMetrics(CollectorRegistry()))

    async def transitions(self, rule: str | None = None) -> list[AlertTransition]:
        out = [decode_transition(e[b"data"]) for _, e in await self.redis.xrange(self.keys.alerts)]
        return [t for t in out if rule is None or t.rule == rule]

    async def states(self, rule: str) -> list[str]:
        return [t.state for t in await self.transitions(rule)]

    async def active(self) -> dict[str, AlertTransition]:
        raw = await self.redis.hgetall(self.keys.active_alerts)
        return {k.decode(): decode_transition(v) for k, v in raw.items()}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(f.T0 + 10_000)


@pytest.fixture
def h(redis: Redis, keys: Keys, clock: ManualClock, tmp_path: Path) -> Harness:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    return Harness(redis, keys, load_rules([path], include_pack=False), clock)


async def test_window_rule_pending_firing_resolved(h: Harness, clock: ManualClock) -> None:
    engine = await h.engine()
    t0 = clock.now()
    await engine.handle([f.price("USDT", 0.98, t0)])
    assert await h.states("PegOff") == ["pending"]
    clock.advance(240)
    await engine.evaluate_timer()
    assert await h.states("PegOff") == ["pending"]
    clock.advance(60)
    await engine.evaluate_timer()
    assert await h.states("PegOff") == ["pending", "firing"]
    clock.advance(30)
    await engine.handle([f.price("USDT", 1.0, clock.now())])
    pending, firing, resolved = await h.transitions("PegOff")
    assert [t.seq for t in (pending, firing, resolved)] == [1, 2, 3]
    assert pending.id == f"{pending.fingerprint}:1" and resolved.fingerprint == pending.fingerprint
    assert pending.labels == {"alertname": "PegOff", "severity": "critical", "token": "USDT",
                              "group": "stablecoin"}
    assert pending.starts_at == t0 and firing.starts_at == t0 + 300
    assert resolved.ends_at == t0 + 330 and resolved.starts_at == t0 + 300
    assert firing.annotations["summary"] == "USDT off by -2.0%"
    assert firing.value == pytest.approx(-0.02)
    assert not [a for a in (await h.active()).values() if a.rule == "PegOff"]


async def test_pending_that_clears_is_dropped_without_a_resolution(
    h: Harness, clock: ManualClock
) -> None:
    engine = await h.engine()
    await engine.handle([f.price("USDC", 0.97, clock.now())])
    assert await h.states("PegOff") == ["pending"]
    fp = (await h.transitions("PegOff"))[0].fingerprint
    assert fp in await h.active()
    clock.advance(60)
    await engine.handle([f.price("USDC", 1.0, clock.now())])
    assert await h.states("PegOff") == ["pending"]
    assert fp not in await h.active()
    clock.advance(60)
    await engine.handle([f.price("USDC", 0.97, clock.now())])
    assert [t.seq for t in await h.transitions("PegOff")] == [1, 2]


async def test_for_as_a_count_of_events(h: Harness, clock: ManualClock) -> None:
    engine = await h.engine()
    for _ in range(2):
        clock.advance(1)
        await engine.handle([f.price("USDT", 0.98, clock.now())])
        await engine.evaluate_timer()  # timer rounds do not count as events
    assert await h.states("PegOffCounted") == ["pending"]
    clock.advance(1)
    await engine.handle([f.price("USDT", 0.98, clock.now())])
    assert await h.states("PegOffCounted") == ["pending", "firing"]


async def test_keep_firing_for(h: Harness, clock: ManualClock) -> None:
    engine = await h.engine()
    await engine.handle([f.price("USDT", 0.98, clock.now())])
    assert await h.states("PegOffSticky") == ["firing"]
    clock.advance(60)
    await engine.handle([f.price("USDT", 1.0, clock.now())])
    clock.advance(500)
    await engine.evaluate_timer()
    assert await h.states("PegOffSticky") == ["firing"]
    clock.advance(120)
    await engine.evaluate_timer()
    assert await h.states("PegOffSticky") == ["firing", "resolved"]


async def test_event_rule_instance_per_event_and_auto_resolve(
    h: Harness, clock: ManualClock
) -> None:
    engine = await h.engine()
    big = f.mint("USDT", 150_000_000 * 10**6, clock.now(), n=1)
    small = f.mint("USDT", 50_000_000 * 10**6, clock.now(), n=2)
    other = f.mint("USDC", 200_000_000 * 10**6, clock.now(), n=3)
    await engine.handle([big, small, other])
    pendings = await h.transitions("BigMint")
    assert sorted(t.labels["event_id"] for t in pendings) == sorted([big.id, other.id])
    assert {t.state for t in pendings} == {"pending"}
    assert {t.event_id for t in pendings} == {big.id, other.id}
    clock.advance(120)
    await engine.evaluate_timer()
    clock.advance(30 * 60 - 1)
    await engine.evaluate_timer()
    mine = [t for t in await h.transitions("BigMint") if t.event_id == big.id]
    assert [t.state for t in mine] == ["pending", "firing"]
    assert mine[1].annotations["summary"] == "USDT mint of 150.00M"
    clock.advance(1)
    await engine.evaluate_timer()
    mine = [t for t in await h.transitions("BigMint") if t.event_id == big.id]
    assert [t.state for t in mine] == ["pending", "firing", "resolved"]
    # Redelivery after resolution creates nothing: the resolved instance is remembered.
    await engine.handle([big])
    assert len(await h.transitions("BigMint")) == 6
    assert not await h.active()


async def test_absence_rule(h: Harness, clock: ManualClock) -> None:
    engine = await h.engine()
    now = int(clock.now())
    await engine.handle([f.block(900_000, "foundryusa", timestamp=now)])
    clock.advance(29 * 60)
    await engine.evaluate_timer()
    assert await h.states("NoBlock") == []
    clock.advance(2 * 60)
    await engine.evaluate_timer()
    assert await h.states("NoBlock") == ["firing"]
    [firing] = await h.transitions("NoBlock")
    assert firing.value == pytest.approx(31 * 60)
    await engine.handle([f.block(900_001, "antpool", timestamp=int(clock.now()))])
    assert await h.states("NoBlock") == ["firing", "resolved"]


async def test_restart_in_the_middle_of_for_keeps_the_timer(
    h: Harness, clock: ManualClock
) -> None:
    first = await h.engine()
    t0 = clock.now()
    await first.handle([f.price("USDT", 0.98, t0)])
    clock.advance(180)
    await first.evaluate_timer()
    del first
    restarted = await h.engine()
    clock.advance(120)
    await restarted.evaluate_timer()
    pending, firing = await h.transitions("PegOff")
    assert firing.state == "firing" and firing.starts_at == t0 + 300
    assert pending.starts_at == t0


async def test_redelivered_batch_produces_no_transitions(
    h: Harness, clock: ManualClock
) -> None:
    engine = await h.engine()
    batch = [f.price("USDT", 0.98, clock.now()),
             f.mint("USDT", 150_000_000 * 10**6, clock.now(), n=9)]
    await engine.handle(batch)
    before = await h.transitions()
    for _ in range(3):
        await engine.handle(batch)
        await (await h.engine()).handle(batch)
    assert await h.transitions() == before
    # The counted rule did not count the redeliveries as new events.
    assert await h.states("PegOffCounted") == ["pending"]


async def test_metrics_count_evaluations_errors_and_transitions(
    h: Harness, clock: ManualClock, registry: CollectorRegistry, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES + """\
  - name: Broken
    kind: window
    events: [market.price]
    condition: market.prices["NOPE"].price > 1.0
    severity: info
""")
    rules = load_rules([bad], include_pack=False)
    store = AggregateStore(h.redis, h.keys, clock, AggregatesConfig())
    await store.load()
    engine = RuleEngine(h.redis, h.keys, clock, rules, store, RuleMetrics(registry))
    await engine.handle([f.price("USDT", 0.98, clock.now())])
    value = registry.get_sample_value
    assert value("convmon_rule_evaluations_total", {"rule": "PegOff"}) == 1
    assert value("convmon_rule_evaluation_errors_total", {"rule": "Broken"}) == 1
    assert value("convmon_rule_evaluation_errors_total", {"rule": "PegOff"}) == 0
    assert value("convmon_alert_transitions_total", {"state": "pending"}) == 2  # two rules
    assert value("convmon_alert_transitions_total", {"state": "firing"}) == 1
    assert (value("convmon_rule_evaluation_seconds_count") or 0) >= 4
    assert value("convmon_rules_reconcile_dropped_total") == 0  # exported from the start


async def test_templates_are_sandboxed(
    redis: Redis, keys: Keys, clock: ManualClock, tmp_path: Path
) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("""\
rules:
  - name: Sneaky
    kind: event
    events: [stablecoin.mint]
    condition: "true"
    severity: info
    labels: {token: "{{ event.token }}"}
    annotations:
      summary: "x{{ event.__class__.__mro__ }}y"
      description: "{{ range.__globals__ }}<b>{{ event.token }}</b>"
""")
    h = Harness(redis, keys, load_rules([path], include_pack=False), clock)
    engine = await h.engine()
    await engine.handle([f.mint("USDT", 10**6, clock.now())])
    [t] = await h.transitions("Sneaky")
    assert t.labels["token"] == "USDT"
    assert t.annotations["summary"] == "xy"
    # Nothing is escaped here (receivers escape for their medium).
    assert t.annotations["description"] == "<b>USDT</b>"


async def test_alerts_of_a_removed_rule_are_resolved(
    h: Harness, clock: ManualClock, tmp_path: Path
) -> None:
    engine = await h.engine()
    await engine.handle([f.price("USDT", 0.98, clock.now())])
    assert await h.states("PegOffSticky") == ["firing"]
    assert await h.states("PegOff") == ["pending"]
    kept = tmp_path / "kept.yaml"
    kept.write_text(RULES.split("  - name: PegOffCounted")[0])
    h.rules = load_rules([kept], include_pack=False)
    clock.advance(60)
    reconfigured = await h.engine()
    await reconfigured.evaluate_timer()
    assert await h.states("PegOffSticky") == ["firing", "resolved"]
    [resolved] = (await h.transitions("PegOffSticky"))[1:]
    assert resolved.annotations["resolution"] == "the rule was removed from the configuration"
    assert await h.states("PegOffCounted") == ["pending"]  # dropped silently, as pending
    assert {a.rule for a in (await h.active()).values()} == {"PegOff"}
    index = {x.decode() for x in await h.redis.smembers(h.keys.rules_index)}
    assert index == {"PegOff"}


class ContendedRedis(Redis):
    """A Redis client that, while ``contend`` is set, lets another writer update each
    alert instance between the engine's read and its compare-and-set write: before a
    pipeline carrying instance writes goes out, the instance versions are bumped."""

    contend = False

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        client = self
        execute = pipe.execute

        async def execute_contended(raise_on_error: bool = True) -> Any:
            if client.contend:
                for args, _ in pipe.command_stack:
                    if args[0] == "EVALSHA" and b":rules:inst:" in str(args[3]).encode():
                        await client.hincrby(args[3], "v", 1)
            return await execute(raise_on_error)

        pipe.execute = execute_contended  # type: ignore[method-assign]
        return pipe


async def test_work_that_loses_every_compare_and_set_is_counted_and_retried(
    h: Harness, redis_url: str, clock: ManualClock
) -> None:
    """Every write of a round loses to another writer: the work is counted, and the next
    round writes it (an event alert is never observed again: without the carry it would
    be lost)."""
    redis = ContendedRedis.from_url(redis_url)
    try:
        registry = CollectorRegistry()
        store = AggregateStore(redis, h.keys, clock, AggregatesConfig())
        await store.load()
        engine = RuleEngine(redis, h.keys, clock, h.rules, store, RuleMetrics(registry))
        dropped = "convmon_rules_reconcile_dropped_total"
        assert registry.get_sample_value(dropped) == 0
        redis.contend = True
        await engine.handle([f.mint("USDT", 200_000_000 * 10**6, clock.now())])
        assert registry.get_sample_value(dropped) == 1
        assert await h.transitions("BigMint") == []
        redis.contend = False
        clock.advance(15)
        await engine.evaluate_timer()
        [pending] = await h.transitions("BigMint")
        assert pending.state == "pending" and pending.labels["token"] == "USDT"
        assert registry.get_sample_value(dropped) == 1
        assert not engine.reconciler.carried
    finally:
        await redis.aclose()
