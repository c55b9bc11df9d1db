"""The alert state machine (Prometheus semantics), as pure decisions.

In: a rule, the instance as stored (with its version) and this round's observation (or
none: the condition does not hold). Out: the compare-and-set `Write` to make, carrying the
outbox transition when the state changes, or None when nothing changes.

Window and absence instances: inactive → pending (``for`` not met: a duration since it
became active, or a count of event-triggered evaluations) → firing; a pending instance
whose condition stops holding goes back to inactive without a notification; a firing one
resolves once the condition has not held for ``keep_firing_for`` (with a rule's
``resolve_condition``: once that one holds, hysteresis; until then the instance counts as
holding). Event instances: pending (when ``for`` is set) → firing → resolved
``resolve_after`` later, and stay remembered as resolved so a redelivered event cannot
fire again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from convmon.monitor.alerting import AlertTransition, alert_fingerprint
from convmon.rules.loader import Rule
from convmon.rules.state import InstanceState, Stored, Write
from convmon.rules.templates import render


@dataclass
class Observation:
    """A rule's verdict for one instance in one evaluation."""

    rule: Rule
    labels: dict[str, str]
    holds: bool
    value: float | None
    context: dict[str, Any]
    event_id: str | None = None
    count: int = 0
    sustains: bool = False
    """The condition no longer holds but the rule's ``resolve_condition`` does not hold
    either: a firing instance stays firing, any other is treated as not holding."""

    @property
    def fingerprint(self) -> str:
        return alert_fingerprint(self.labels)


class AlertStateMachine:
    def __init__(self, generator_url: str, count_error: Callable[[str], None]) -> None:
        self.generator_url = generator_url
        self._errors = count_error

    def step(
        self, rule: Rule, stored: Stored, obs: Observation | None, now: float
    ) -> Write | None:
        if rule.kind == "event":
            return self._step_event(rule, stored, obs, now)
        return self._step_state(rule, stored, obs, now)

    def _step_state(
        self, rule: Rule, stored: Stored, obs: Observation | None, now: float
    ) -> Write | None:
        spec = rule.spec
        st = stored.state
        status = st.status if st is not None else "inactive"
        if obs is not None and not obs.holds and not (obs.sustains and status == "firing"):
            obs = None
        if obs is not None:
            if st is None or status in ("inactive", "resolved"):
                st = InstanceState(rule=rule.name, labels=obs.labels, seq=st.seq if st else 0)
                st.active_at = now
                st.count = obs.count
                st.last_true = now
                st.value = obs.value
                if self._for_met(rule, st, now):
                    return self._transition(rule, stored, st, obs, "firing", now)
                return self._transition(rule, stored, st, obs, "pending", now)
            if status == "pending":
                st.count += obs.count
                st.last_true = now
                st.value = obs.value
                if self._for_met(rule, st, now):
                    return self._transition(rule, stored, st, obs, "firing", now)
                if obs.count:
                    return Write(stored.fingerprint, stored.version, st, None)
                return None
            if spec.keep_firing_for > 0:
                st.last_true = now
                st.value = obs.value
                return Write(stored.fingerprint, stored.version, st, None)
            return None
        if st is None or status not in ("pending", "firing"):
            return None
        if status == "pending":
            st.status = "inactive"
            st.count = 0
            return Write(stored.fingerprint, stored.version, st, None)
        if spec.keep_firing_for > 0 and now - st.last_true < spec.keep_firing_for:
            return None
        return self._transition(rule, stored, st, None, "resolved", now)

    def _step_event(
        self, rule: Rule, stored: Stored, obs: Observation | None, now: float
    ) -> Write | None:
        spec = rule.spec
        st = stored.state
        if obs is not None:
            if st is not None:
                return None  # already seen: pending, firing or resolved (redelivery)
            st = InstanceState(rule=rule.name, labels=obs.labels, active_at=now,
                               last_true=now, value=obs.value, event_id=obs.event_id)
            state = "firing" if spec.for_.seconds <= 0 else "pending"
            return self._transition(rule, stored, st, obs, state, now)
        if st is None:
            return None
        if st.status == "pending" and now - st.active_at >= spec.for_.seconds:
            return self._transition(rule, stored, st, None, "firing", now)
        if st.status == "firing" and now - st.fired_at >= spec.resolve_after:
            return self._transition(rule, stored, st, None, "resolved", now)
        return None

    def _for_met(self, rule: Rule, st: InstanceState, now: float) -> bool:
        spec = rule.spec.for_
        if spec.count:
            return st.count >= spec.count
        return now - st.active_at >= spec.seconds

    def _transition(
        self, rule: Rule, stored: Stored, st: InstanceState, obs: Observation | None,
        state: str, now: float,
    ) -> Write:
        st.seq += 1
        if obs is not None:
            tctx = {**obs.context, "value": obs.value, "labels": obs.labels}
            st.annotations = self._annotations(rule, tctx)
        if state == "firing":
            st.fired_at = now
        st.status = "firing" if state == "firing" else "pending" if state == "pending" else (
            "resolved" if rule.kind == "event" else "inactive"
        )
        starts_at = st.active_at if state == "pending" else st.fired_at
        transition = AlertTransition(
            id=f"{stored.fingerprint}:{st.seq}",
            fingerprint=stored.fingerprint,
            seq=st.seq,
            rule=rule.name,
            state=state,  # type: ignore[arg-type]
            labels=st.labels,
            annotations=st.annotations,
            value=st.value,
            starts_at=starts_at,
            ends_at=now if state == "resolved" else None,
            evaluated_at=now,
            generator_url=self.generator_url,
            event_id=st.event_id if obs is None else obs.event_id,
        )
        return Write(stored.fingerprint, stored.version, st, transition)

    def _annotations(self, rule: Rule, tctx: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, text in rule.spec.annotations.items():
            try:
                out[name] = render(text, tctx)
            except Exception as exc:  # a template error must not lose the alert
                self._errors(rule.name)
                out[name] = f"<template error: {exc}>"
        return out


def number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        v = float(value)
        return v if math.isfinite(v) else None
    return None
