"""What a chaos run is made of and what each scenario found.

`Plan` holds the durations and counts of a run (`FULL` for ``make chaos``, `SHORT` for
CI); `ScenarioResult` collects one scenario's notes, failures, unexpected daemon exits and
figures; `report_line` is the one line printed when a scenario ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chaos.ledger import EventFigures, NotificationFigures


@dataclass
class ScenarioResult:
    name: str
    what: str
    start: float
    end: float = 0.0
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    exits: list[tuple[int, str]] = field(default_factory=list)
    """Return code and last words of each daemon exit the harness did not cause."""
    events: EventFigures | None = None
    events_at_end: EventFigures | None = None
    notifications: NotificationFigures | None = None

    @property
    def ok(self) -> bool:
        return (not self.failures and not self.exits and (self.events is None or self.events.ok)
                and (self.events_at_end is None or self.events_at_end.ok)
                and (self.notifications is None or self.notifications.ok))


@dataclass(frozen=True)
class Plan:
    """Durations and counts of one run (`FULL` or `SHORT`)."""

    kills: int
    kill_gap_s: tuple[float, float]
    baseline_s: float
    drops_s: float
    drop_every_s: float
    garbage_rounds: int
    outage_s: float
    redis_down_s: float
    startup_timeout_s: float
    recover_timeout_s: float
    settle_timeout_s: float
    drain_timeout_s: float


FULL = Plan(kills=10, kill_gap_s=(4.0, 14.0), baseline_s=20, drops_s=60, drop_every_s=5,
            garbage_rounds=3, outage_s=180, redis_down_s=5, startup_timeout_s=90,
            recover_timeout_s=60, settle_timeout_s=60, drain_timeout_s=120)
SHORT = Plan(kills=3, kill_gap_s=(3.0, 8.0), baseline_s=8, drops_s=15, drop_every_s=5,
             garbage_rounds=1, outage_s=40, redis_down_s=3, startup_timeout_s=90,
             recover_timeout_s=30, settle_timeout_s=30, drain_timeout_s=60)


def report_line(r: ScenarioResult) -> str:
    ev = r.events
    parts = [f"[{r.name}]"]
    if ev is not None:
        parts.append(f"events produced {ev.produced} published {ev.published} "
                     f"lost {ev.lost} duplicated {ev.duplicated}")
        if ev.lost_by_source:
            parts.append("lost by source " + ", ".join(
                f"{k} {v}" for k, v in sorted(ev.lost_by_source.items())))
        if ev.duplicate_examples:
            parts.append("e.g. duplicated " + ", ".join(x[:48] for x in ev.duplicate_examples))
    parts.extend(r.notes)
    if r.exits:
        codes = ", ".join(str(c) for c in sorted({rc for rc, _ in r.exits}))
        said = "; ".join(sorted({words for _, words in r.exits if words}))
        parts.append(f"FAIL: the daemon exited by itself {len(r.exits)} time(s) (rc {codes}"
                     + (f", saying: {said}" if said else "")
                     + "); the harness started it again each time")
    parts.extend(f"FAIL: {f}" for f in r.failures)
    parts.append("ok" if r.ok else "NOT OK")
    return " | ".join(parts)
