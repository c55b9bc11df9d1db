"""The rule engine: evaluates rules against aggregates and events, and moves alert
instances through inactive → pending → firing → resolved (Prometheus semantics).

In: batches of events (after the aggregate store applied them) and timer ticks. Out:
compare-and-set writes of instance state, each carrying its outbox transition
(`convmon.rules.state`). Everything the engine knows between calls is in Redis, so any
number of workers (and a restarted one) agree: a worker holds nothing but compiled rules.

One evaluation round builds a single CEL context (the aggregate roots the rules read,
``now`` and every rule's parameters) and runs each relevant rule's program once; fan-out
rules return one row per map entry. Event rules run per matching event with the event in
their context. The round's verdicts are written by `convmon.rules.reconcile.Reconciler`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as KindCounter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol, runtime_checkable

import cel
from redis.asyncio import Redis

from convmon.monitor.alerting import AlertTransition
from convmon.monitor.clock import Clock
from convmon.monitor.durable import DurableScripts
from convmon.monitor.events import Event
from convmon.monitor.keys import Keys
from convmon.rules.expr import PARAMS_VAR
from convmon.rules.loader import Rule, RuleSet
from convmon.rules.machine import AlertStateMachine, Observation, number
from convmon.rules.metrics import RuleMetrics
from convmon.rules.reconcile import Reconciler, Verdict
from convmon.rules.state import OUTBOX_RETENTION_S, InstanceStore, Write
from convmon.rules.templates import render

__all__ = ["AggregateSource", "FusedAggregateSource", "RuleEngine", "RuleMetrics"]

log = logging.getLogger(__name__)


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


@dataclass
class _Round:
    """Observations of one round, per rule, plus the rules whose live instances it must
    revisit (an instance not observed holding is observed not holding)."""

    rules: list[Rule] = field(default_factory=list)
    observed: dict[str, dict[str, Observation]] = field(default_factory=dict)


class Row(NamedTuple):
    """One result of a rule's program: a fan-out key (empty without fan-out), whether the
    condition holds, the alert's value, the fan-out item and whether a firing instance stays
    firing (its ``resolve_condition`` does not hold yet)."""

    key: str
    holds: bool
    value: Any
    item: Any
    sustains: bool = False


class _EventMatch(NamedTuple):
    """An event and the event rules that listen to its kind."""

    event: Event
    rules: list[Rule]


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
        durable: DurableScripts | None = None,
        outbox_retention_s: int = OUTBOX_RETENTION_S,
    ) -> None:
        self.clock = clock
        self.rules = rules
        self.aggregates = aggregates
        self.metrics = metrics
        self.store = InstanceStore(redis, keys, durable, outbox_retention_s)
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
        self.reconciler = Reconciler(self.store, self.machine, metrics)

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
        this_round = _Round()
        # `Event.kind` is a property: read it once per event, not once per use.
        kinds = [e.kind for e in events]
        relevant = self._relevant(set(kinds))
        fused = self._fused
        snapshot: dict[str, Any] | None = None
        if fused is not None:
            # The state rules' snapshot rides in the apply pipeline (it reads after the
            # script ran): one round trip fewer per batch.
            applying_with_snapshot = asyncio.ensure_future(
                fused.apply_and_snapshot(events, self._roots(relevant))
            )
            try:
                await self._observe_events(events, kinds, now, this_round)
            finally:
                changed, snapshot = await applying_with_snapshot
        else:
            applying = asyncio.ensure_future(self.aggregates.apply(events))
            try:
                await self._observe_events(events, kinds, now, this_round)
            finally:
                changed = await applying
        await self._evaluate_state(kinds, changed, now, this_round, snapshot)

    async def evaluate_batch(self, events: Sequence[Event], changed: Sequence[bool]) -> None:
        """Evaluate a batch the aggregates already applied (``changed`` as apply said)."""
        now = self.clock.now()
        this_round = _Round()
        kinds = [e.kind for e in events]
        await self._observe_events(events, kinds, now, this_round)
        await self._evaluate_state(kinds, changed, now, this_round)

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
        self, kinds: Sequence[str], changed: Sequence[bool], now: float, this_round: _Round,
        snapshot: dict[str, Any] | None = None,
    ) -> None:
        """``kinds``: the batch's event kinds, in order; ``snapshot``: the relevant rules'
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
                await self._observe_state_rules(relevant, now, this_round, counts, snapshot)
        finally:
            live_sets = await live
        await self._reconcile(this_round, now, live_sets)

    async def evaluate_timer(self) -> None:
        """The periodic round: every window and absence rule, and event alert timers."""
        now = self.clock.now()
        this_round = _Round()
        await self._observe_state_rules(self._state_rules, now, this_round, {})
        this_round.rules.extend(self._event_rules)
        await self._reconcile(this_round, now)
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
            instance = stored[fp].state
            if instance is None or instance.status not in ("pending", "firing"):
                continue
            was_firing = instance.status == "firing"
            instance.status = "inactive"
            transition = None
            if was_firing:
                instance.seq += 1
                instance.annotations = {
                    **instance.annotations,
                    "resolution": "the rule was removed from the configuration",
                }
                transition = AlertTransition(
                    id=f"{fp}:{instance.seq}", fingerprint=fp, seq=instance.seq,
                    rule=instance.rule, state="resolved", labels=instance.labels,
                    annotations=instance.annotations, value=instance.value,
                    starts_at=instance.fired_at, ends_at=now, evaluated_at=now,
                    generator_url=self.generator_url, event_id=instance.event_id,
                )
            writes.append(Write(fp, stored[fp].version, instance, transition))
        for write, ok in zip(writes, await self.store.write(writes), strict=True):
            if ok and write.transition is not None:
                self.metrics.transitions.labels("resolved").inc()
        for name in removed:
            await self.store.forget_rule(name)

    async def _snapshot(self, rules: Sequence[Rule]) -> dict[str, Any]:
        roots = self._roots(rules)
        return await self.aggregates.snapshot(roots) if roots else {}

    async def _observe_state_rules(
        self, rules: Sequence[Rule], now: float, this_round: _Round, counts: Mapping[str, int],
        snapshot: dict[str, Any] | None = None,
    ) -> None:
        if snapshot is None:
            snapshot = await self._snapshot(rules)
        variables = {**snapshot, "now": now, PARAMS_VAR: self._params}
        context = cel.Context(variables)
        for rule in rules:
            rows = self._run(rule, context, variables)
            if rows is None:
                continue
            this_round.rules.append(rule)
            observed = this_round.observed.setdefault(rule.name, {})
            spec = rule.spec
            for row in rows:
                if not row.holds and not row.sustains:
                    continue
                template_context: dict[str, Any] = {**snapshot, "params": rule.params, "now": now}
                if spec.for_each is not None:
                    template_context["key"] = row.key
                    template_context["item"] = row.item
                labels = self._labels(rule, template_context,
                                      fan_key=row.key if spec.for_each else None)
                if labels is None:
                    continue
                obs = Observation(rule, labels, row.holds, number(row.value), template_context,
                                  count=counts.get(rule.name, 0) if row.holds else 0,
                                  sustains=row.sustains)
                observed[obs.fingerprint] = obs

    async def _observe_events(
        self, events: Sequence[Event], kinds: Sequence[str], now: float, this_round: _Round
    ) -> None:
        by_kind = self._event_rules_by_kind
        matching = [
            _EventMatch(e, by_kind[k]) for e, k in zip(events, kinds, strict=True) if k in by_kind
        ]
        if not matching:
            return
        roots: set[str] = set()
        for match in matching:
            for rule in match.rules:
                roots |= rule.program.roots
        snapshot = await self.aggregates.snapshot(sorted(roots)) if roots else {}
        for event, rules in matching:
            event_context = await self.aggregates.event_context(event)
            for rule in rules:
                # Only what this rule reads: the cel package converts the whole dict.
                fields = rule.program.event_fields
                event_var = event_context if fields is None else {
                    k: event_context[k] for k in fields if k in event_context
                }
                variables = {"now": now, PARAMS_VAR: self._own_params[rule.name],
                             "event": event_var}
                for root in rule.program.roots:
                    variables[root] = snapshot[root]
                rows = self._run(rule, variables)
                if not rows or not rows[0].holds:
                    continue
                template_context = {**snapshot, "params": rule.params, "now": now,
                                    "event": event_context}
                labels = self._labels(rule, template_context, event_id=event.id)
                if labels is None:
                    continue
                obs = Observation(rule, labels, True, number(rows[0].value), template_context,
                                  event_id=event.id)
                this_round.observed.setdefault(rule.name, {})[obs.fingerprint] = obs

    def _run(
        self, rule: Rule, context: cel.Context | dict[str, Any],
        variables: dict[str, Any] | None = None,
    ) -> list[Row] | None:
        started = time.perf_counter()
        self._evaluations[rule.name].inc()
        try:
            out: list[Row] = []
            for key, holds, value, item, sustains in rule.program.run(context, variables):
                if not isinstance(holds, bool) or not isinstance(sustains, bool):
                    raise TypeError(f"condition gave {type(holds).__name__}, not bool")
                out.append(Row(str(key), holds, value, item, sustains))
            return out
        except Exception as exc:  # a bad rule must not stop the others
            self._errors[rule.name].inc()
            log.warning("rule evaluation failed", extra={"rule": rule.name, "error": repr(exc)})
            return None
        finally:
            self.metrics.seconds.observe(time.perf_counter() - started)

    def _labels(
        self, rule: Rule, template_context: Mapping[str, Any], *, fan_key: str | None = None,
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
                labels[name] = render(text, {**template_context, "labels": labels})
        except Exception as exc:  # sandbox violations and template errors alike
            self.metrics.errors.labels(rule.name).inc()
            log.warning("label template failed", extra={"rule": rule.name, "error": repr(exc)})
            return None
        if event_id is not None:
            labels["event_id"] = event_id
        return labels

    async def _reconcile(
        self, this_round: _Round, now: float, live: Mapping[str, set[str]] | None = None
    ) -> None:
        if not this_round.rules and not this_round.observed and not self.reconciler.carried:
            return
        if live is None:
            live = await self.store.live([r.name for r in this_round.rules])
        verdicts: dict[str, Verdict] = {}
        for observed in this_round.observed.values():
            for fp, seen in observed.items():
                verdicts[fp] = Verdict(seen.rule, seen)
        for rule in this_round.rules:
            for fp in live.get(rule.name, ()):
                verdicts.setdefault(fp, Verdict(rule, None))
        evaluated = {r.name for r in this_round.rules}
        await self.reconciler.reconcile(verdicts, evaluated, now)
