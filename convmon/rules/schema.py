"""The rule file format (YAML), validated with pydantic.

A rule file holds ``rules:``, a list of rules of three kinds:

- ``event``: evaluated on each event whose kind is in ``events``; one alert instance per
  event (its id becomes the ``event_id`` label), resolved ``resolve_after`` after firing.
- ``window``: a condition over aggregates, evaluated after each batch holding an event of a
  kind in ``events`` and on the timer; ``for_each`` fans it out over a map, one instance per
  key (the key becomes the label ``for_each.label``).
- ``absence``: ``age`` (seconds a stream has been silent; null when it never spoke) is
  compared with ``max_age`` on the timer and after events of the kinds in ``events``.

``for`` is a duration (``90s``, ``5m``, ``26h``, ``7d``, seconds as a number) or a count
(``6 events`` / ``6 blocks``: consecutive evaluations after events where the condition
held). ``params`` are named constants the expressions read as ``params.<name>``; users
override them per rule from the configuration.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from convmon.monitor.config import Model
from convmon.monitor.events import EVENT_KINDS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_COUNT = re.compile(r"^\s*(\d+)\s*(events?|blocks?|evaluations?)\s*$")
RULE_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def parse_duration(value: Any) -> float:
    """Seconds from ``30s``/``5m``/``1h``/``7d``/``1w`` or a number of seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 90s, 5m, 1h or 7d")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError("duration must not be negative")
        return float(value)
    if isinstance(value, str):
        total = 0.0
        parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", value)
        if parts and re.fullmatch(r"(?:\s*\d+(?:\.\d+)?\s*(?:ms|s|m|h|d|w))+\s*", value):
            for number, unit in parts:
                total += float(number) * _UNITS[unit]
            return total
        m = _DURATION.match(value)
        if m and m.group(2) is None:
            return float(m.group(1))
    raise ValueError(f"invalid duration {value!r} (expected e.g. 90s, 5m, 1h, 7d)")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class ForSpec(Model):
    """``for``: a duration, or a count of consecutive evaluations after events."""

    seconds: float = 0.0
    count: int = 0


def parse_for(value: Any) -> ForSpec:
    if isinstance(value, ForSpec):
        return value
    if isinstance(value, str):
        m = _COUNT.match(value)
        if m:
            return ForSpec(count=int(m.group(1)))
    if isinstance(value, dict):
        return ForSpec.model_validate(value)
    return ForSpec(seconds=parse_duration(value))


class FanOut(Model):
    """Evaluate once per entry of the map ``map`` (CEL); the key becomes label ``label``.
    In the condition, value and annotations, ``key`` is the key and ``item`` its value."""

    map: str
    label: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")


Severity = Literal["critical", "warning", "info", "none"]
"""``none``: alerts that are not a problem, such as the always-firing ``Watchdog``."""
ParamValue = bool | int | float | str | list[str] | dict[str, float]
"""A map of numbers (e.g. seconds per collector) merges with its default when overridden."""


class RuleSpec(Model):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(pattern=RULE_NAME)
    kind: Literal["event", "window", "absence"]
    events: list[str] = Field(default_factory=list)
    """Event kinds that trigger an evaluation (event rules: the kinds they match)."""
    condition: str | None = None
    resolve_condition: str | None = None
    """CEL bool: a firing instance resolves only once this holds, even when ``condition``
    has stopped holding (hysteresis: fire above a threshold, resolve below a lower one).
    Without it, a firing instance resolves when ``condition`` stops holding."""
    value: str | None = None
    """CEL number shown as the alert's value (absence rules: defaults to ``age``)."""
    age: str | None = None
    max_age: str | float | None = None
    """CEL number of seconds, or a duration (absence rules)."""
    for_each: FanOut | None = None
    for_: Annotated[ForSpec, BeforeValidator(parse_for)] = Field(
        default_factory=ForSpec, alias="for"
    )
    keep_firing_for: Duration = 0.0
    resolve_after: Duration = 3600.0
    severity: Severity
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    params: dict[str, ParamValue] = Field(default_factory=dict)

    @field_validator("events")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        unknown = sorted(set(kinds) - EVENT_KINDS)
        if unknown:
            raise ValueError(
                f"unknown event kind(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(EVENT_KINDS))})"
            )
        return kinds

    @field_validator("labels")
    @classmethod
    def _reserved_labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for name in labels:
            if name in ("alertname", "severity", "event_id"):
                raise ValueError(f"label {name!r} is set by the engine")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"invalid label name {name!r}")
        return labels

    @model_validator(mode="after")
    def _kind_fields(self) -> RuleSpec:
        if self.kind == "absence":
            if not self.age or not self.max_age:
                raise ValueError("absence rules need 'age' and 'max_age'")
            if self.condition:
                raise ValueError("absence rules take 'age' and 'max_age', not 'condition'")
        else:
            if not self.condition:
                raise ValueError(f"{self.kind} rules need a 'condition'")
            if self.age or self.max_age:
                raise ValueError("'age' and 'max_age' belong to absence rules")
        if self.kind == "event":
            if not self.events:
                raise ValueError("event rules need 'events' (the event kinds they match)")
            if self.for_each is not None:
                raise ValueError("event rules cannot fan out ('for_each')")
            if self.for_.count:
                raise ValueError("event rules take 'for' as a duration only")
        if self.resolve_condition and self.kind == "event":
            raise ValueError("event rules resolve after 'resolve_after'; no resolve_condition")
        if self.keep_firing_for and self.kind == "event":
            raise ValueError("event rules resolve after 'resolve_after'; no keep_firing_for")
        return self


def max_age_source(value: str | float) -> str:
    """``max_age`` accepts a duration literal as well as CEL; return CEL."""
    if isinstance(value, (int, float)):
        return repr(float(value))
    try:
        return repr(parse_duration(value))
    except ValueError:
        return value
