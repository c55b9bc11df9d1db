"""The end-of-run report: one row per scenario, memory figures, and what went wrong.

Columns: events produced / published / lost / duplicated when the scenario ended (after
its bounded settle), events still lost at the end of the run (a fact published late, e.g.
after the harness restarted a stuck daemon, is lost at its scenario's end but not here),
and notifications expected / delivered / folded (an alert that lived inside an outage,
notified once as resolved with its start time) / lost / duplicated for the firing and
resolved transitions evaluated in the window.
"""

from __future__ import annotations

from chaos.ledger import Gauge, GaugeSet, Unexpected
from chaos.results import ScenarioResult

MiB = 1024 * 1024


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def summary_table(results: list[ScenarioResult]) -> list[str]:
    head = (f"{'scenario':<16} {'produced':>8} {'publ.':>6} {'lost':>5} {'dup':>4} "
            f"{'lost@end':>8} | {'notif':>5} {'deliv':>5} {'folded':>6} {'lost':>5} "
            f"{'dup':>4} | result")
    lines = [head, "-" * len(head)]
    total = [0] * 10
    for r in results:
        ev, end, nf = r.events, r.events_at_end, r.notifications
        row = [
            ev.produced if ev else None, ev.published if ev else None,
            ev.lost if ev else None, ev.duplicated if ev else None,
            end.lost if end else None,
            nf.expected if nf else None, nf.delivered if nf else None,
            nf.folded if nf else None, nf.lost if nf else None,
            nf.duplicated if nf else None,
        ]
        for i, v in enumerate(row):
            total[i] += v or 0
        lines.append(
            f"{r.name:<16} {_n(row[0]):>8} {_n(row[1]):>6} {_n(row[2]):>5} {_n(row[3]):>4} "
            f"{_n(row[4]):>8} | {_n(row[5]):>5} {_n(row[6]):>5} {_n(row[7]):>6} "
            f"{_n(row[8]):>5} {_n(row[9]):>4} | {'ok' if r.ok else 'NOT OK'}")
    lines.append("-" * len(head))
    lines.append(
        f"{'total':<16} {total[0]:>8} {total[1]:>6} {total[2]:>5} {total[3]:>4} "
        f"{total[4]:>8} | {total[5]:>5} {total[6]:>5} {total[7]:>6} {total[8]:>5} "
        f"{total[9]:>4} |")
    return lines


def _mib(v: float | None) -> str:
    return "-" if v is None else f"{v / MiB:.1f}"


def _gauge(g: Gauge) -> str:
    return f"min {_mib(g.low)} / max {_mib(g.high)} / last {_mib(g.last)} MiB ({g.samples} samples)"


def memory_lines(gauges: GaugeSet) -> list[str]:
    labels = {"daemon_rss_bytes": "daemon RSS", "redis_used_memory_bytes": "Redis used_memory"}
    lines = []
    for key, label in labels.items():
        g = gauges.overall.get(key)
        lines.append(f"{label:<18} " + (_gauge(g) if g is not None else "no samples"))
        peaks = [f"{name} {_mib(by[key].high)}" for name, by in gauges.by_scenario.items()
                 if key in by]
        if peaks:
            lines.append(f"{'':<18} max per scenario: " + ", ".join(peaks))
    return lines


def findings(results: list[ScenarioResult], unexpected: Unexpected) -> list[str]:
    out: list[str] = []
    for r in results:
        prefix = f"{r.name}: "
        out.extend(prefix + f for f in r.failures)
        if r.exits:
            said = "; ".join(sorted({words for _, words in r.exits if words}))
            out.append(prefix + f"the daemon exited by itself {len(r.exits)} time(s)"
                       + (f": {said}" if said else ""))
        for fig, when in ((r.events, "at the scenario's end"),
                          (r.events_at_end, "at the end of the run")):
            if fig is None:
                continue
            if fig.lost:
                by = ", ".join(f"{k} {v}" for k, v in sorted(fig.lost_by_source.items()))
                out.append(prefix + f"{fig.lost} event(s) lost {when} ({by}); e.g. "
                           + ", ".join(fig.lost_examples))
            if fig.duplicated and when == "at the end of the run":
                out.append(prefix + f"{fig.duplicated} event id(s) duplicated; e.g. "
                           + ", ".join(fig.duplicate_examples))
        nf = r.notifications
        if nf is not None and nf.lost:
            out.append(prefix + f"{nf.lost} notification(s) never delivered; e.g. "
                       + ", ".join(nf.lost_examples))
        if nf is not None and nf.duplicated:
            out.append(prefix + f"{nf.duplicated} notification(s) delivered more than once; "
                       "e.g. " + ", ".join(nf.duplicate_examples))
    if unexpected.count:
        out.append(f"{unexpected.count} delivered (group, alert, state) match no transition "
                   f"in convmon:alerts ({unexpected.other_group} of them an emitted alert "
                   "and state in another group); e.g. " + "; ".join(unexpected.examples))
    return out
