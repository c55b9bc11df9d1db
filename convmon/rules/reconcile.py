"""Writing one round's verdicts: each alert instance the round concerns steps through the
state machine and is written with a compare-and-set.

In: the round's `Verdict`s (observations of instances whose condition held, and live
instances of the evaluated rules, which did not hold) and the round's time. Out: writes of
instance state through `convmon.rules.state.InstanceStore`, each carrying its outbox
transition, counted per transition state.

A write loses its compare-and-set when another worker wrote the same instance since it was
read; the instance is then read again and stepped again, up to ``MAX_CAS_ROUNDS`` times.
What still lost after that is counted (``convmon_rules_reconcile_dropped_total``), logged,
and carried to this worker's next round, where it is merged with the fresh verdicts: a
fresh observation of the same instance wins (adding the carried event count), a rule the
next round evaluated again decides by itself whether the instance still holds, and an
event rule's observation, which no later round makes again, is retried as it was. Carried
work lives in the worker's memory only: a worker that stops loses it, as before, and the
counter says how often that could happen.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import NamedTuple

from convmon.rules.loader import Rule
from convmon.rules.machine import AlertStateMachine, Observation
from convmon.rules.metrics import RuleMetrics
from convmon.rules.state import InstanceStore, Write

log = logging.getLogger(__name__)

MAX_CAS_ROUNDS = 3
"""Compare-and-set attempts per instance in one round before its work is carried over."""


class Verdict(NamedTuple):
    """What one round says about one instance: its rule and the observation (None: the
    condition did not hold, or only the instance's timers move)."""

    rule: Rule
    observation: Observation | None


class Reconciler:
    """Steps and writes instances for a worker's rounds; keeps what lost every
    compare-and-set of a round for the next one."""

    def __init__(
        self, store: InstanceStore, machine: AlertStateMachine, metrics: RuleMetrics
    ) -> None:
        self.store = store
        self.machine = machine
        self.metrics = metrics
        self._carried: dict[str, Verdict] = {}

    @property
    def carried(self) -> Mapping[str, Verdict]:
        """Work that lost every compare-and-set of its round, by fingerprint."""
        return self._carried

    async def reconcile(
        self, verdicts: dict[str, Verdict], evaluated: Collection[str], now: float
    ) -> None:
        """Step and write ``verdicts`` (by fingerprint) and the work carried from the
        previous round; ``evaluated`` names the rules this round evaluated."""
        todo = self._merge_carried(verdicts, evaluated)
        for _ in range(MAX_CAS_ROUNDS):
            if not todo:
                return
            todo = await self._attempt(todo, now)
        if todo:
            self._carried = todo
            self.metrics.reconcile_dropped.inc(len(todo))
            log.warning(
                "instance updates lost every compare-and-set; retried next round",
                extra={"instances": len(todo), "attempts": MAX_CAS_ROUNDS,
                       "rules": sorted({v.rule.name for v in todo.values()})},
            )

    def _merge_carried(
        self, verdicts: dict[str, Verdict], evaluated: Collection[str]
    ) -> dict[str, Verdict]:
        carried, self._carried = self._carried, {}
        for fp, old in carried.items():
            fresh = verdicts.get(fp)
            if fresh is not None:
                obs, old_obs = fresh.observation, old.observation
                if obs is not None and old_obs is not None and old_obs.count:
                    verdicts[fp] = Verdict(fresh.rule,
                                           replace(obs, count=obs.count + old_obs.count))
                continue
            if old.rule.kind != "event" and old.rule.name in evaluated:
                continue  # evaluated again and not holding: nothing of the old verdict stands
            verdicts[fp] = old
        return verdicts

    async def _attempt(self, todo: dict[str, Verdict], now: float) -> dict[str, Verdict]:
        """One read-step-write pass; returns the work whose write lost."""
        stored = await self.store.read(list(todo))
        writes: list[Write] = []
        for fp, verdict in todo.items():
            write = self.machine.step(verdict.rule, stored[fp], verdict.observation, now)
            if write is not None:
                writes.append(write)
        lost: dict[str, Verdict] = {}
        for write, ok in zip(writes, await self.store.write(writes), strict=True):
            if not ok:
                lost[write.fingerprint] = todo[write.fingerprint]
            elif write.transition is not None:
                self.metrics.transitions.labels(write.transition.state).inc()
        return lost
