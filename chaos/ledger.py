"""Counting: what the simulators produced against what reached Redis and the receiver.

In: the facts the simulators produced (`Fact`, each tagged with the scenario that was
running), the entries of the ``convmon:events`` stream (their ``id`` field and the Redis
entry id, whose milliseconds say when the entry was appended), the transitions of the
``convmon:alerts`` stream and the notifications the webhook receiver recorded. Out: per
scenario window, produced / published / lost / duplicated events (`EventFigures`) and
expected / delivered / lost / duplicated notifications (`NotificationFigures`).

A fact is identified by the first three ``:``-separated parts of the event ids it yields
(``btc:block:<hash>``, ``sol:payout:<signature>``, ``sol:mint:<signature>``): a block
connected by a reorg (``btc:block:<hash>:reorg:<id>``) or a payout in two mints
(``sol:payout:<sig>:<mint>``) still counts as that fact being published. A duplicate is an
event id that appears more than once in the stream, charged to the window in which its
second copy was appended. This module does no I/O, so its arithmetic is tested on its own.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

SAMPLE = 3
"""How many example ids a figure keeps for the report."""


def fact_key(event_id: str) -> str:
    """The fact an event id stands for: its first three ``:``-separated parts."""
    return ":".join(event_id.split(":")[:3])


def entry_time(entry_id: str) -> float:
    """Unix seconds at which Redis appended a stream entry (``<ms>-<seq>``)."""
    return int(entry_id.split("-", 1)[0]) / 1000.0


@dataclass(frozen=True)
class Fact:
    key: str
    """``btc:block:<hash>``, ``sol:payout:<signature>``, ...: see `fact_key`."""
    source: str
    """The collector expected to publish it (``bitcoin``, ``depin``, ...)."""
    scenario: str
    produced_at: float
    detail: str = ""
    """What it was, for the report (e.g. ``helium payout``)."""


@dataclass(frozen=True)
class Window:
    """A scenario's stretch of wall-clock time (``end`` is exclusive)."""

    name: str
    start: float
    end: float

    def holds(self, t: float) -> bool:
        return self.start <= t < self.end


def window_of(windows: Sequence[Window], t: float) -> str | None:
    for w in windows:
        if w.holds(t):
            return w.name
    return None


@dataclass
class EventFigures:
    scenario: str
    produced: int = 0
    published: int = 0
    """Produced facts with at least one entry in the stream."""
    lost: int = 0
    duplicated: int = 0
    """Event ids whose second copy was appended in this window."""
    lost_examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)
    lost_by_source: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


@dataclass(frozen=True)
class StreamEntry:
    entry_id: str
    """Redis stream entry id (``<ms>-<seq>``)."""
    event_id: str


class EventLedger:
    """The facts produced so far, and their tally against the stream."""

    def __init__(self) -> None:
        self.facts: list[Fact] = []
        self._keys: set[str] = set()

    def produce(
        self, key: str, source: str, scenario: str, at: float, detail: str = ""
    ) -> None:
        if fact_key(key) != key:
            raise ValueError(f"fact key {key!r} must have exactly three ':'-separated parts")
        if key in self._keys:
            raise ValueError(f"fact {key!r} produced twice")
        self._keys.add(key)
        self.facts.append(Fact(key, source, scenario, at, detail))

    def produced_in(self, scenario: str) -> list[Fact]:
        return [f for f in self.facts if f.scenario == scenario]

    def tally(
        self, entries: Iterable[StreamEntry], windows: Sequence[Window],
        scenarios: Sequence[str] | None = None,
    ) -> list[EventFigures]:
        """Figures per scenario (the ``scenarios`` given, else every window's name)."""
        names = list(scenarios) if scenarios is not None else [w.name for w in windows]
        figures = {name: EventFigures(name) for name in names}
        seen: Counter[str] = Counter()
        published: set[str] = set()
        for entry in entries:
            seen[entry.event_id] += 1
            published.add(fact_key(entry.event_id))
            if seen[entry.event_id] == 2:
                where = window_of(windows, entry_time(entry.entry_id))
                fig = figures.get(where) if where is not None else None
                if fig is not None:
                    fig.duplicated += 1
                    if len(fig.duplicate_examples) < SAMPLE:
                        fig.duplicate_examples.append(entry.event_id)
        for fact in self.facts:
            fig = figures.get(fact.scenario)
            if fig is None:
                continue
            fig.produced += 1
            if fact.key in published:
                fig.published += 1
            else:
                fig.lost += 1
                fig.lost_by_source[fact.source] = fig.lost_by_source.get(fact.source, 0) + 1
                if len(fig.lost_examples) < SAMPLE:
                    fig.lost_examples.append(fact.key)
        return [figures[name] for name in names]

    def unpublished(
        self, entries: Iterable[StreamEntry], scenario: str | None = None
    ) -> list[Fact]:
        """Facts (of one scenario, or all) with no entry in the stream yet."""
        published = {fact_key(e.event_id) for e in entries}
        return [f for f in self.facts
                if f.key not in published and (scenario is None or f.scenario == scenario)]


@dataclass(frozen=True)
class Emitted:
    """One firing or resolved transition the rule engine wrote to the alerts outbox."""

    group: str
    fingerprint: str
    state: str
    evaluated_at: float
    alertname: str = ""


@dataclass(frozen=True)
class Delivered:
    """One alert inside one notification the receiver accepted."""

    group: str
    fingerprint: str
    status: str
    """``firing`` or ``resolved`` (the alert's status in the notification)."""
    starts_at: str = ""
    """The alert's ``startsAt``: a resolved notification says when the alert fired."""


ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass
class NotificationFigures:
    scenario: str
    expected: int = 0
    delivered: int = 0
    """Expected (group, alert, state) that reached the receiver at least once."""
    folded: int = 0
    """Firing transitions never delivered as firing, whose resolved notification (which
    says when the alert fired) was delivered: an alert that lived inside an outage."""
    lost: int = 0
    duplicated: int = 0
    """Expected (group, alert, state) delivered more than once."""
    lost_examples: list[str] = field(default_factory=list)
    duplicate_examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0


@dataclass
class Unexpected:
    """Delivered (group, alert, state) that match no emitted transition."""

    count: int = 0
    other_group: int = 0
    """Of which the (alert, state) was emitted, but for another group."""
    examples: list[str] = field(default_factory=list)


def tally_notifications(
    emitted: Iterable[Emitted], delivered: Iterable[Delivered], windows: Sequence[Window],
    scenarios: Sequence[str] | None = None,
) -> tuple[list[NotificationFigures], Unexpected]:
    """Figures per scenario (by the transition's ``evaluated_at``), and what was delivered
    that no emitted transition accounts for."""
    names = list(scenarios) if scenarios is not None else [w.name for w in windows]
    figures = {name: NotificationFigures(name) for name in names}
    copies: Counter[tuple[str, str, str]] = Counter()
    resolved_with_start: set[tuple[str, str]] = set()
    for d in delivered:
        copies[(d.group, d.fingerprint, d.status)] += 1
        if d.status == "resolved" and d.starts_at and d.starts_at != ZERO_TIME:
            resolved_with_start.add((d.group, d.fingerprint))
    expected_keys: set[tuple[str, str, str]] = set()
    for e in emitted:
        key = (e.group, e.fingerprint, e.state)
        if key in expected_keys:
            continue  # the same transition read twice (e.g. a re-emitted outbox entry)
        expected_keys.add(key)
        where = window_of(windows, e.evaluated_at)
        fig = figures.get(where) if where is not None else None
        if fig is None:
            continue
        fig.expected += 1
        n = copies.get(key, 0)
        label = f"{e.alertname or e.fingerprint}/{e.state}"
        if n >= 1:
            fig.delivered += 1
        elif e.state == "firing" and (e.group, e.fingerprint) in resolved_with_start:
            fig.folded += 1
        else:
            fig.lost += 1
            if len(fig.lost_examples) < SAMPLE:
                fig.lost_examples.append(label)
        if n > 1:
            fig.duplicated += 1
            if len(fig.duplicate_examples) < SAMPLE:
                fig.duplicate_examples.append(f"{label} x{n}")
    unexpected = Unexpected()
    emitted_alerts = {(fp, state) for _g, fp, state in expected_keys}
    for group, fp, state in copies:
        if (group, fp, state) in expected_keys:
            continue
        unexpected.count += 1
        if (fp, state) in emitted_alerts:
            unexpected.other_group += 1
        if len(unexpected.examples) < SAMPLE:
            unexpected.examples.append(f"group {group} alert {fp} {state}")
    return [figures[name] for name in names], unexpected


@dataclass
class Gauge:
    """min / max / last of a sampled figure."""

    samples: int = 0
    low: float | None = None
    high: float | None = None
    last: float | None = None

    def add(self, value: float) -> None:
        self.samples += 1
        self.low = value if self.low is None else min(self.low, value)
        self.high = value if self.high is None else max(self.high, value)
        self.last = value


class GaugeSet:
    """Named gauges, overall and per scenario."""

    def __init__(self) -> None:
        self.overall: dict[str, Gauge] = defaultdict(Gauge)
        self.by_scenario: dict[str, dict[str, Gauge]] = defaultdict(lambda: defaultdict(Gauge))

    def add(self, name: str, scenario: str, value: float) -> None:
        self.overall[name].add(value)
        self.by_scenario[scenario][name].add(value)


GroupsFor = Callable[[dict[str, str]], list[str]]
"""Labels of an alert -> the group keys it joins on routes to the watched receiver."""
