"""The rule engine: evaluates rules against aggregates and events, and moves alert
instances through inactive → pending → firing → resolved (Prometheus semantics).

In: batches of events (after the aggregate store applied them) and timer ticks. Out:
compare-and-set writes of instance state, each carrying its outbox transition
(`convmon.rules.state`). Everything the engine knows between calls is in Redis, so any
number of workers (and a restarted one) agree: a worker holds nothing but compiled rules.

One evaluation round builds a single CEL context (the aggregate roots the rules read,
``now`` and every rule's parameters) and runs each relevant rule's program once; fan-out
rules return one row per map entry. Event rules run per matching event with the event in
their context.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as KindCounter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import cel
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.asyncio import Redis

from convmon.monitor.alerting import AlertTransition
from convmon.monitor.clock import Clock
from convmon.monitor.events import Event
from convmon.monitor.keys import Keys
from convmon.rules.expr import PARAMS_VAR
from convmon.rules.loader import Rule, RuleSet
from convmon.rules.machine import AlertStateMachine, Observation, number
from convmon.rules.state import InstanceStore, Write
from convmon.rules.templates import render

log = logging.getLogger(__name__)

_MAX_CAS_ROUNDS = 3


class AggregateSource(Protocol):
    """What the engine needs from the aggregate store (CONTRACTS §3)."""

    async def apply(self, events: Sequence[Event]) -> list[bool]: ...

    async def snapshot(self, roots: Collection[str]) -> dict[str, Any]: ...

    async def event_context(self, event: Event) -> dict[str, Any]: ...


@runtime_checkable
class FusedAggregateSource(AggregateSource, Protocol):
    """A source that can apply a batch and snapshot the result in one round trip."""

    async def apply_and_snapshot(
        self, events: Sequence[Event], roots: Collection[str]
    ) -> tuple[list[bool], dict[str, Any]]: ...


class RuleMetrics:
    """Process metrics of the engine (CONTRACTS §5)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.evaluations = Counter(
            "convmon_rule_evaluations", "Rule evaluations.", ["rule"], registry=registry
        )
        self.errors = Counter(
            "convmon_rule_evaluation_errors", "Rule evaluations that failed.", ["rule"],
            registry=registry,
        )
        self.seconds = Histogram(
            "convmon_rule_evaluation_seconds", "Time to evaluate one rule once.",
            registry=registry,
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                     0.05, 0.1),
        )
        self.transitions = Counter(
            "convmon_alert_transitions", "Alert transitions written to the outbox.",
            ["state"], registry=registry,
        )


@dataclass
class _Round:
    """Observations of one round, per rule, plus the rules whose live instances it must
    revisit (an instance not observed holding is observed not holding)."""

    rules: list[Rule] = field(default_factory=list)
    observed: dict[str, dict[str, Observation]] = field(default_factory=dict)


class RuleEngine:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        clock: Clock,
        rules: RuleSet,
        aggregates: AggregateSource,
        metrics: RuleMetrics,
        generator_url: str = "",
    ) -> None:
        self.clock = clock
        self.rules = rules
        self.aggregates = aggregates
        self.metrics = metrics
        self.store = InstanceStore(redis, keys)
        self.generator_url = generator_url
        self._params = rules.params
        self._own_params = {name: {name: p} for name, p in self._params.items()}
        self._event_rules = [r for r in rules.rules if r.kind == "event"]
        self._state_rules = [r for r in rules.rules if r.kind != "event"]
        self._event_rules_by_kind: dict[str, list[Rule]] = {}
        for rule in self._event_rules:
            for kind in rule.on:
                self._event_rules_by_kind.setdefault(kind, []).append(rule)
        self._state_rule_kinds = {r.name: r.on for r in self._state_rules}
        self._event_rules_read_roots = any(r.program.roots for r in self._event_rules)
        self._fused = aggregates if isinstance(aggregates, FusedAggregateSource) else None
        # Every rule's series exists from the start, at zero (children cached: labels()
        # costs more than the increment).
        self._evaluations = {r.name: metrics.evaluations.labels(r.name) for r in rules.rules}
        self._errors = {r.name: metrics.errors.labels(r.name) for r in rules.rules}
        self.machine = AlertStateMachine(generator_url, lambda rule: self._errors[rule].inc())

    async def handle(self, events: Sequence[Event]) -> None:
        """Apply a batch to the aggregates and evaluate what it concerns.

        Event rules that read only their event run while Redis applies the batch; window
        and absence rules need the applied state and run after it. Nothing is written
        unless the batch was applied.
        """
        if self._event_rules_read_roots:
            changed = await self.aggregates.apply(events)
            await self.evaluate_batch(events, changed)
            return
        now = self.clock.now()
        rnd = _Round()
        # `Event.kind` is a property: read it once per event, not once per use.
        kinds = [e.kind for e in events]
        relevant = self._relevant(set(kinds))
        fused = self._fused
        snap: dict[str, Any] | None = None
        if fused is not None:
            # The state rules' snapshot rides in the apply pipeline (it reads after the
            # script ran): one round trip fewer per batch.
            applying_snap = asyncio.ensure_future(
                fused.apply_and_snapshot(events, self._roots(relevant))
            )
            try:
                await self._observe_events(events, kinds, now, rnd)
            finally:
                changed, snap = await applying_snap
        else:
            applying = asyncio.ensure_future(self.aggregates.apply(events))
            try:
                await self._observe_events(events, kinds, now, rnd)
            finally:
                changed = await applying
        await self._evaluate_state(kinds, changed, now, rnd, snap)

    async def evaluate_batch(self, events: Sequence[Event], changed: Sequence[bool]) -> None:
        """Evaluate a batch the aggregates already applied (``changed`` as apply said)."""
        now = self.clock.now()
        rnd = _Round()
        kinds = [e.kind for e in events]
        await self._observe_events(events, kinds, now, rnd)
        await self._evaluate_state(kinds, changed, now, rnd)

    def _relevant(self, kinds: set[str]) -> list[Rule]:
        on = self._state_rule_kinds
        return [r for r in self._state_rules if on[r.name] & kinds]

    @staticmethod
    def _roots(rules: Sequence[Rule]) -> list[str]:
        roots: set[str] = set()
        for rule in rules:
            roots |= rule.program.roots
        return sorted(roots)

    async def _evaluate_state(
        self, kinds: Sequence[str], changed: Sequence[bool], now: float, rnd: _Round,
        snap: dict[str, Any] | None = None,
    ) -> None:
        """``kinds``: the batch's event kinds, in order; ``snap``: the relevant rules'
        snapshot when the caller already read it."""
        new_kinds = KindCounter(k for k, c in zip(kinds, changed, strict=True) if c)
        on = self._state_rule_kinds
        relevant = self._relevant(set(kinds))
        # Which instances are live does not depend on this round's evaluation: read it
        # while evaluating (a stale read only defers a resolution to the next round).
        live = asyncio.ensure_future(self.store.live([r.name for r in relevant]))
        try:
            if relevant:
                counts = {r.name: sum(new_kinds[k] for k in on[r.name]) for r in relevant}
                await self._observe_state_rules(relevant, now, rnd, counts, snap)
        finally:
            live_sets = await live
        await self._reconcile(rnd, now, live_sets)

    async def evaluate_timer(self) -> None:
        """The periodic round: every window and absence rule, and event alert timers."""
        now = self.clock.now()
        rnd = _Round()
        await self._observe_state_rules(self._state_rules, now, rnd, {})
        rnd.rules.extend(self._event_rules)
        await self._reconcile(rnd, now)
        await self._retire_removed_rules(now)

    async def _retire_removed_rules(self, now: float) -> None:
        """Resolve the instances of rules no longer configured (as Prometheus drops the
        alerts of a removed rule). While workers of two configurations run side by side,
        their alerts can flap; a rollout ends that."""
        loaded = {r.name for r in self.rules.rules}
        removed = sorted(await self.store.indexed_rules() - loaded)
        if not removed:
            return
        live = await self.store.live(removed)
        fps = [fp for name in removed for fp in live.get(name, ())]
        stored = await self.store.read(fps)
        writes: list[Write] = []
        for fp in fps:
            st = stored[fp].state
            if st is None or st.status not in ("pending", "firing"):
                continue
            was_firing = st.status == "firing"
            st.status = "inactive"
            transition = None
            if was_firing:
                st.seq += 1
                st.annotations = {**st.annotations,
                                  "resolution": "the rule was removed from the configuration"}
                transition = AlertTransition(
                    id=f"{fp}:{st.seq}", fingerprint=fp, seq=st.seq, rule=st.rule,
                    state="resolved", labels=st.labels, annotations=st.annotations,
                    value=st.value, starts_at=st.fired_at, ends_at=now, evaluated_at=now,
                    generator_url=self.generator_url, event_id=st.event_id,
                )
            writes.append(Write(fp, stored[fp].version, st, transition))
        for w, ok in zip(writes, await self.store.write(writes), strict=True):
            if ok and w.transition is not None:
                self.metrics.transitions.labels("resolved").inc()
        for name in removed:
            await self.store.forget_rule(name)

    async def _snapshot(self, rules: Sequence[Rule]) -> dict[str, Any]:
        roots = self._roots(rules)
        return await self.aggregates.snapshot(roots) if roots else {}

    async def _observe_state_rules(
        self, rules: Sequence[Rule], now: float, rnd: _Round, counts: Mapping[str, int],
        snap: dict[str, Any] | None = None,
    ) -> None:
        if snap is None:
            snap = await self._snapshot(rules)
        variables = {**snap, "now": now, PARAMS_VAR: self._params}
        context = cel.Context(variables)
        for rule in rules:
            rows = self._run(rule, context, variables)
            if rows is None:
                continue
            rnd.rules.append(rule)
            observed = rnd.observed.setdefault(rule.name, {})
            spec = rule.spec
            for key, holds, value, item in rows:
                if not holds:
                    continue
                tctx: dict[str, Any] = {**snap, "params": rule.params, "now": now}
                if spec.for_each is not None:
                    tctx["key"] = key
                    tctx["item"] = item
                labels = self._labels(rule, tctx, fan_key=key if spec.for_each else None)
                if labels is None:
                    continue
                obs = Observation(rule, labels, True, number(value), tctx,
                                  count=counts.get(rule.name, 0))
                observed[obs.fingerprint] = obs

    async def _observe_events(
        self, events: Sequence[Event], kinds: Sequence[str], now: float, rnd: _Round
    ) -> None:
        by_kind = self._event_rules_by_kind
        matching = [
            (e, by_kind[k]) for e, k in zip(events, kinds, strict=True) if k in by_kind
        ]
        if not matching:
            return
        roots: set[str] = set()
        for _, rs in matching:
            for r in rs:
                roots |= r.program.roots
        snap = await self.aggregates.snapshot(sorted(roots)) if roots else {}
        for ev, rules in matching:
            ectx = await self.aggregates.event_context(ev)
            for rule in rules:
                # Only what this rule reads: the cel package converts the whole dict.
                fields = rule.program.event_fields
                event_var = ectx if fields is None else {
                    k: ectx[k] for k in fields if k in ectx
                }
                variables = {"now": now, PARAMS_VAR: self._own_params[rule.name],
                             "event": event_var}
                for root in rule.program.roots:
                    variables[root] = snap[root]
                rows = self._run(rule, variables)
                if not rows or not rows[0][1]:
                    continue
                tctx = {**snap, "params": rule.params, "now": now, "event": ectx}
                labels = self._labels(rule, tctx, event_id=ev.id)
                if labels is None:
                    continue
                obs = Observation(rule, labels, True, number(rows[0][2]), tctx, event_id=ev.id)
                rnd.observed.setdefault(rule.name, {})[obs.fingerprint] = obs

    def _run(
        self, rule: Rule, context: cel.Context | dict[str, Any],
        variables: dict[str, Any] | None = None,
    ) -> list[tuple[str, bool, Any, Any]] | None:
        started = time.perf_counter()
        self._evaluations[rule.name].inc()
        try:
            rows = rule.program.run(context, variables)
            out: list[tuple[str, bool, Any, Any]] = []
            for row in rows:
                key, holds, value, item = row
                if not isinstance(holds, bool):
                    raise TypeError(f"condition gave {type(holds).__name__}, not bool")
                out.append((str(key), holds, value, item))
            return out
        except Exception as exc:  # a bad rule must not stop the others
            self._errors[rule.name].inc()
            log.warning("rule evaluation failed", extra={"rule": rule.name, "error": repr(exc)})
            return None
        finally:
            self.metrics.seconds.observe(time.perf_counter() - started)

    def _labels(
        self, rule: Rule, tctx: Mapping[str, Any], *, fan_key: str | None = None,
        event_id: str | None = None,
    ) -> dict[str, str] | None:
        """The instance's labels, or None (counted as an error) when a template fails:
        without its labels an instance has no identity."""
        spec = rule.spec
        labels = {"alertname": rule.name, "severity": spec.severity}
        if spec.for_each is not None and fan_key is not None:
            labels[spec.for_each.label] = fan_key
        try:
            for name, text in spec.labels.items():
                labels[name] = render(text, {**tctx, "labels": labels})
        except Exception as exc:  # sandbox violations and template errors alike
            self.metrics.errors.labels(rule.name).inc()
            log.warning("label template failed", extra={"rule": rule.name, "error": repr(exc)})
            return None
        if event_id is not None:
            labels["event_id"] = event_id
        return labels

    async def _reconcile(
        self, rnd: _Round, now: float, live: Mapping[str, set[str]] | None = None
    ) -> None:
        if not rnd.rules and not rnd.observed:
            return
        if live is None:
            live = await self.store.live([r.name for r in rnd.rules])
        todo: dict[str, tuple[Rule, Observation | None]] = {}
        for observed in rnd.observed.values():
            for fp, seen in observed.items():
                todo[fp] = (seen.rule, seen)
        for rule in rnd.rules:
            for fp in live.get(rule.name, ()):
                todo.setdefault(fp, (rule, None))
        for _ in range(_MAX_CAS_ROUNDS):
            if not todo:
                return
            stored = await self.store.read(list(todo))
            writes = []
            for fp, (rule, obs) in todo.items():
                w = self.machine.step(rule, stored[fp], obs, now)
                if w is not None:
                    writes.append(w)
            results = await self.store.write(writes)
            retry: dict[str, tuple[Rule, Observation | None]] = {}
            for w, ok in zip(writes, results, strict=True):
                if ok:
                    if w.transition is not None:
                        self.metrics.transitions.labels(w.transition.state).inc()
                else:
                    retry[w.fingerprint] = todo[w.fingerprint]
            todo = retry
