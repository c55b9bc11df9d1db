"""Unit tests for rules, in the manner of ``promtool test rules``.

In: a YAML test file — rule files to load (the default pack unless told otherwise),
parameter overrides, and tests made of input events at given offsets and the alerts
expected at given offsets. Out: one `TestResult` per test, with every mismatch.

Each test runs under a fresh key prefix in the given Redis, against the real aggregate
store and engine, on a `ManualClock`. Time advances through every input time, expectation
time and timer tick (``evaluation_interval``, default 1m); at one instant events are
applied first, then the timer evaluates, then expectations are checked.

```yaml
rule_files: [my-rules.yaml]        # relative to this file
include_default_pack: true
params: {BitcoinNoBlock: {max_age_s: 1800}}
evaluation_interval: 1m
tests:
  - name: a silent chain
    input:
      - at: 0m
        blocks: {count: 3, every: 10m, pools: [foundryusa, antpool]}
      - at: 25m
        event: {kind: collector.status, collector: bitcoin, connected: false}
    alerts:
      - at: 90m
        alertname: BitcoinNoBlock
        expect: [{state: firing}]
        fired: 1                   # optional: times it went firing so far (flapping)
```
Events are ``{kind, id?, chain?, source?, position?, at?}`` plus the payload's fields (an
event's ``at`` is a duration added to its step's).
``blocks`` generates attributed bitcoin blocks cycling through ``pools`` (with
``mined_ago``, old blocks arriving fast: a collector's backfill).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from pydantic import Field

from convmon.monitor.alerting import decode_transition
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import Model
from convmon.monitor.events import Event, Payload
from convmon.monitor.keys import Keys
from convmon.monitor.yamlfile import FileError, load_yaml_file, validate_model
from convmon.rules.engine import AggregateSource, RuleEngine, RuleMetrics
from convmon.rules.loader import load_rules
from convmon.rules.schema import Duration, ParamValue, parse_duration

StoreFactory = Callable[[Any, Keys, ManualClock], Awaitable[AggregateSource]]
"""Builds the aggregate store for one test: (redis, keys, clock) → loaded store."""

_CHAINS = {"bitcoin": "bitcoin", "solana": "solana", "market": "market", "collector": "convmon"}
_MAX_STEPS = 50_000


class BlockSeries(Model):
    count: int = Field(gt=0, le=5000)
    every: Duration = 600.0
    pools: list[str] = Field(min_length=1)
    start_height: int = 900_000
    entities: dict[str, str] = Field(default_factory=dict)
    providers: dict[str, str] = Field(default_factory=dict)
    """Pool -> the template provider its blocks carry (none: the pool's own)."""
    jurisdictions: dict[str, str] = Field(default_factory=dict)
    """Pool -> the jurisdiction its blocks carry (none: unknown)."""
    mined_ago: Duration | None = None
    """A backfill: the first block was mined this long before the step and the blocks
    arrive ``arrive_every`` apart from the step on (their timestamps stay ``every`` apart)."""
    arrive_every: Duration = 1.0


class InputStep(Model):
    at: Duration = 0.0
    event: dict[str, Any] | None = None
    events: list[dict[str, Any]] = Field(default_factory=list)
    blocks: BlockSeries | None = None


class ExpectedAlert(Model):
    """An active alert that must exist; ``labels`` and ``annotations`` must be contained
    in the alert's (``alertname`` is the check's)."""

    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    state: str = Field(default="firing", pattern="^(pending|firing)$")


class AlertCheck(Model):
    at: Duration
    alertname: str
    expect: list[ExpectedAlert] = Field(default_factory=list)
    fired: int | None = Field(default=None, ge=0)
    """When given: how many times (all instances together) the alert has gone to firing
    since the test started, counted on the outbox; catches an alert that flaps."""


class RuleTestCase(Model):
    name: str
    start: float = 1_800_000_000.0
    input: list[InputStep] = Field(default_factory=list)
    alerts: list[AlertCheck] = Field(default_factory=list)


class RuleTestFile(Model):
    rule_files: list[str] = Field(default_factory=list)
    include_default_pack: bool = True
    params: dict[str, dict[str, ParamValue]] = Field(default_factory=dict)
    evaluation_interval: Duration = 60.0
    tests: list[RuleTestCase] = Field(default_factory=list)


@dataclass
class TestResult:
    file: str
    name: str
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def load_test_file(path: str | Path) -> RuleTestFile:
    located = load_yaml_file(path)
    return validate_model(RuleTestFile, located.data, located)


async def run_test_file(
    path: str | Path, redis: Any, make_store: StoreFactory, prefix: str = "convmon-ruletest"
) -> list[TestResult]:
    """Run every test of one file; raises `FileErrors` when the file or its rules are bad."""
    path = Path(path)
    spec = load_test_file(path)
    rules = load_rules(
        [path.parent / f for f in spec.rule_files],
        include_pack=spec.include_default_pack,
        overrides=spec.params,
    )
    results = []
    for case in spec.tests:
        keys = Keys(prefix=f"{prefix}-{uuid.uuid4().hex[:12]}")
        try:
            result = TestResult(str(path), case.name)
            try:
                await _run_case(case, spec, rules, redis, keys, make_store, result)
            except FileError as exc:
                result.failures.append(str(exc))
            results.append(result)
        finally:
            await _drop_prefix(redis, keys.prefix)
    return results


async def _run_case(
    case: RuleTestCase, spec: RuleTestFile, rules: Any, redis: Any, keys: Keys,
    make_store: StoreFactory, result: TestResult,
) -> None:
    from prometheus_client import CollectorRegistry

    clock = ManualClock(case.start)
    store = await make_store(redis, keys, clock)
    engine = RuleEngine(redis, keys, clock, rules, store, RuleMetrics(CollectorRegistry()))
    inputs: dict[float, list[Event]] = {}
    for i, step in enumerate(case.input):
        for t, event in _events_of(step, case.start, f"{case.name}:{i}"):
            inputs.setdefault(t, []).append(event)
    checks: dict[float, list[AlertCheck]] = {}
    for check in case.alerts:
        checks.setdefault(case.start + check.at, []).append(check)
    end = max([*inputs, *checks, case.start])
    interval = spec.evaluation_interval
    if interval <= 0 or (end - case.start) / interval > _MAX_STEPS:
        raise FileError(result.file, None, "evaluation_interval",
                        f"too many timer steps; use an interval above {interval}s")
    ticks = {case.start + k * interval for k in range(int((end - case.start) / interval) + 1)}
    for t in sorted(set(inputs) | set(checks) | ticks):
        clock.advance(t - clock.now())
        events = inputs.get(t, [])
        for i in range(0, len(events), 500):
            await engine.handle(events[i : i + 500])
        if t in ticks:
            await engine.evaluate_timer()
        for check in checks.get(t, []):
            await _check(check, redis, keys, result)


async def _check(check: AlertCheck, redis: Any, keys: Keys, result: TestResult) -> None:
    raw = await redis.hvals(keys.active_alerts)
    actual = [decode_transition(v) for v in raw]
    actual = [a for a in actual if a.rule == check.alertname]
    remaining = list(actual)
    missing = []
    for exp in check.expect:
        for a in remaining:
            if (a.state == exp.state
                    and all(a.labels.get(k) == v for k, v in exp.labels.items())
                    and all(a.annotations.get(k) == v for k, v in exp.annotations.items())):
                remaining.remove(a)
                break
        else:
            missing.append(exp)
    if missing or remaining:
        wanted_notes = sorted({k for e in check.expect for k in e.annotations})

        def fmt(labels: Mapping[str, str], state: str, notes: Mapping[str, str]) -> str:
            shown = {k: v for k, v in labels.items() if k not in ("alertname",)}
            return f"{state} {shown}" + (f" {dict(notes)}" if notes else "")
        exp_text = "; ".join(fmt(e.labels, e.state, e.annotations) for e in check.expect)
        got_text = "; ".join(
            fmt(a.labels, a.state, {k: a.annotations.get(k, "") for k in wanted_notes})
            for a in actual
        )
        exp_text, got_text = exp_text or "none", got_text or "none"
        result.failures.append(
            f"at {check.at:g}s, {check.alertname}: expected [{exp_text}], got [{got_text}]"
        )
    if check.fired is not None:
        entries = await redis.xrange(keys.alerts)
        transitions = [decode_transition(fields.get(b"data") or fields.get("data"))
                       for _, fields in entries]
        fired = sum(1 for a in transitions if a.rule == check.alertname and a.state == "firing")
        if fired != check.fired:
            result.failures.append(
                f"at {check.at:g}s, {check.alertname}: expected to have fired "
                f"{check.fired} time(s), fired {fired}"
            )


def _events_of(step: InputStep, start: float, tag: str) -> list[tuple[float, Event]]:
    t0 = start + step.at
    out: list[tuple[float, Event]] = []
    raw = ([step.event] if step.event else []) + step.events
    for j, item in enumerate(raw):
        out.append(_event(item, t0, f"{tag}:{j}"))
    if step.blocks is not None:
        out.extend(_blocks(step.blocks, t0))
    return out


def _event(item: Mapping[str, Any], t0: float, tag: str) -> tuple[float, Event]:
    data = dict(item)
    kind = str(data.get("kind", ""))
    t = t0 + parse_duration(data.pop("at", 0) or 0)
    eid = str(data.pop("id", f"test:{tag}"))
    source = str(data.pop("source", "test"))
    position = int(data.pop("position", int(t * 1000)))
    family = kind.split(".")[0]
    chain = str(data.get("chain")) if family == "stablecoin" else _CHAINS.get(family, "convmon")
    try:
        payload = msgspec.convert(data, type=Payload)
    except msgspec.ValidationError as exc:
        raise FileError("<test>", None, f"input {tag}", f"invalid {kind} event: {exc}") from None
    return t, Event(id=eid, chain=chain, source=source, observed_at=t, occurred_at=t,
                    position=position, payload=payload)


def _blocks(series: BlockSeries, t0: float) -> list[tuple[float, Event]]:
    out = []
    for i in range(series.count):
        height = series.start_height + i
        pool = series.pools[i % len(series.pools)]
        t = t0 + i * series.every
        mined = t
        if series.mined_ago is not None:
            t = t0 + i * series.arrive_every
            mined = t0 - series.mined_ago + i * series.every
        payload = {
            "kind": "bitcoin.block", "height": height, "hash": f"{height:064x}",
            "prev_hash": f"{height - 1:064x}", "timestamp": int(mined), "difficulty": 1.5e14,
            "tx_count": 3000, "pool": pool, "pool_name": pool,
            "entity": series.entities.get(pool),
            "template_provider": series.providers.get(pool),
            "jurisdiction": series.jurisdictions.get(pool),
            "match": "tag" if pool != "unknown" else "none",
            "coinbase_value_sats": 322_500_000, "subsidy_sats": 312_500_000,
            "fees_sats": 10_000_000,
        }
        event = Event(id=f"btc:block:{height:064x}", chain="bitcoin", source="test",
                      observed_at=t, occurred_at=mined, position=height,
                      payload=msgspec.convert(payload, type=Payload))
        out.append((t, event))
    return out


async def _drop_prefix(redis: Any, prefix: str) -> None:
    # SCAN over every node and one DEL per key: on a cluster the keys span several slots.
    found = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for start in range(0, len(found), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for key in found[start:start + 500]:
                pipe.delete(key)
            await pipe.execute()


def summarize(results: Sequence[TestResult]) -> tuple[int, int]:
    failed = sum(1 for r in results if not r.ok)
    return len(results) - failed, failed
