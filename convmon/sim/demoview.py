"""The demo's live terminal view: pool shares, payouts, flows, prices and firing alerts,
read from the daemon's own ``/metrics`` (what Prometheus and Grafana see) and the active
alerts in Redis.

The view fits the terminal: the active alerts always show (the point of the demo); the
other panels are laid out in two columns when the terminal is wide enough and dropped,
least important first, when it is not tall enough. Pools are shown by name.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from convmon.monitor.plugins import Runtime

Samples = dict[str, list[tuple[dict[str, str], float]]]


async def scrape(url: str) -> Samples:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
    out: Samples = defaultdict(list)
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[smp.name].append((smp.labels, smp.value))
    return out


def _table(title: str, *cols: str) -> Table:
    t = Table(title=title, title_justify="left", expand=False)
    for c in cols:
        t.add_column(c)
    return t


def panels(samples: Samples, names: dict[str, str]) -> dict[str, Table]:
    """Every panel but the alerts, by name."""
    pools = _table("Pool shares (last 1008 blocks)", "pool", "share")
    shares = sorted(
        ((lab.get("pool", "?"), v) for lab, v in samples.get("convmon_btc_pool_share_ratio", [])
         if lab.get("window") == "1008"),
        key=lambda x: -x[1],
    )
    for pool, v in shares[:8]:
        pools.add_row(escape(names.get(pool, pool)), f"{v:.1%}")
    conc = _table("Concentration", "window", "top-2", "HHI", "Nakamoto")
    top2 = {lab.get("window"): v for lab, v in samples.get("convmon_btc_top_pools_share_ratio", [])
            if lab.get("n") == "2"}
    hhi = {lab.get("window"): v for lab, v in samples.get("convmon_btc_hhi", [])}
    nak = {lab.get("window"): v for lab, v in samples.get("convmon_btc_nakamoto_coefficient", [])}
    for w in sorted(top2, key=lambda x: int(x or 0)):
        conc.add_row(str(w), f"{top2[w]:.1%}", f"{hhi.get(w, 0):.0f}", f"{nak.get(w, 0):.0f}")
    depin = _table("DePIN paid (24 h)", "network", "token", "amount")
    for lab, v in samples.get("convmon_depin_window_paid_tokens", []):
        if lab.get("window") == "24h":
            depin.add_row(lab.get("network", ""), lab.get("token", ""), f"{v:,.0f}")
    flows = _table("Stablecoin net issuance (24 h)", "token", "chain", "net")
    for lab, v in samples.get("convmon_stablecoin_net_issuance_tokens", []):
        if lab.get("window") == "24h":
            flows.add_row(lab.get("token", ""), lab.get("chain", ""), f"{v:,.0f}")
    prices = _table("Prices", "symbol", "USD")
    price_samples = samples.get("convmon_price_usd", [])
    for lab, v in sorted(price_samples, key=lambda x: x[0].get("symbol", "")):
        prices.add_row(lab.get("symbol", ""), f"{v:,.4f}" if v < 10 else f"{v:,.2f}")
    payments = _table("x402 payments", "chain", "facilitator", "count", "payers 24 h")
    payers = {(lab.get("chain"), lab.get("facilitator")): v
              for lab, v in samples.get("convmon_payments_x402_unique_payers", [])
              if lab.get("window") == "24h"}
    counted = sorted(samples.get("convmon_payments_x402_total", []), key=lambda x: -x[1])
    for lab, v in counted[:6]:
        key = (lab.get("chain"), lab.get("facilitator"))
        payments.add_row(lab.get("chain", ""), escape(lab.get("facilitator", "")),
                         f"{v:,.0f}", f"{payers.get(key, 0):,.0f}")
    return {"concentration": conc, "pools": pools, "prices": prices, "flows": flows,
            "depin": depin, "payments": payments}


# Least important last: dropped first when the terminal is short.
PRIORITY = ("concentration", "pools", "prices", "flows", "depin", "payments")
LEFT = ("concentration", "pools")


def alerts_table(alerts: list[dict[str, Any]], rows: int | None = None) -> Table:
    """One line per alert (long summaries end in an ellipsis), at most ``rows`` lines."""
    fired = Table(title="Active alerts", title_justify="left", expand=True)
    fired.add_column("state", no_wrap=True, min_width=7)
    fired.add_column("severity", no_wrap=True, min_width=8)
    fired.add_column("alert", no_wrap=True, overflow="ellipsis", min_width=12, max_width=40)
    fired.add_column("summary", no_wrap=True, overflow="ellipsis", ratio=1)
    ordered = sorted(alerts, key=lambda a: (a.get("state") != "firing", a.get("starts_at", 0)))
    shown = ordered if rows is None or len(ordered) <= rows else ordered[: max(0, rows - 1)]
    for a in shown:
        labels = a.get("labels", {})
        colour = "red" if a.get("state") == "firing" else "yellow"
        fired.add_row(
            f"[{colour}]{a.get('state')}[/{colour}]", labels.get("severity", ""),
            escape(labels.get("alertname", "")),
            escape(a.get("annotations", {}).get("summary", "")),
        )
    if len(shown) < len(ordered):
        fired.add_row("", "", "", f"... and {len(ordered) - len(shown)} more alerts")
    return fired


def height(console: Console, renderable: RenderableType, width: int) -> int:
    return len(console.render_lines(renderable, console.options.update(width=width)))


def render(
    samples: Samples, alerts: list[dict[str, Any]], console: Console,
    names: dict[str, str] | None = None,
) -> RenderableType:
    """The view for ``console``'s size: alerts always, other panels as they fit."""
    width, rows = console.size
    tables = panels(samples, names or {})
    # The alerts keep at least a few rows of the screen, whatever else has to go.
    reserve = 6 + min(len(alerts), 5)
    budget = max(0, rows - reserve - 1)
    two_columns = width >= 100
    kept: list[str] = []
    for name in PRIORITY:
        trial = [*kept, name]
        if _layout_height(console, tables, trial, width, two_columns) <= budget:
            kept = trial
    top = _layout(tables, kept, two_columns)
    used = _layout_height(console, tables, kept, width, two_columns) if kept else 0
    alert_rows = len(alerts)
    while alert_rows > 1 and used + height(console, alerts_table(alerts, alert_rows), width) > rows:
        alert_rows -= 1
    fired = alerts_table(alerts, alert_rows)
    return Group(top, fired) if kept else fired


def _layout(tables: dict[str, Table], kept: list[str], two_columns: bool) -> RenderableType:
    if not two_columns:
        return Group(*(tables[n] for n in PRIORITY if n in kept))
    grid = Table.grid(padding=(0, 2))
    grid.add_column()
    grid.add_column()
    grid.add_row(
        Group(*(tables[n] for n in PRIORITY if n in kept and n in LEFT)),
        Group(*(tables[n] for n in PRIORITY if n in kept and n not in LEFT)),
    )
    return grid


def _layout_height(
    console: Console, tables: dict[str, Table], kept: list[str], width: int, two_columns: bool
) -> int:
    return height(console, _layout(tables, kept, two_columns), width)


async def pool_names() -> dict[str, str]:
    """Pool slug -> name from the pool list the demo attributes with."""
    from convmon.collectors.bitcoin.registry import curated_registry

    try:
        return {p.slug: p.name for p in curated_registry().pools}
    except Exception:  # a view without names is still a view
        return {}


class DemoView:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def run(self) -> None:
        http = self.rt.extras.get("http")
        port = getattr(http, "port", None)
        names = await pool_names()
        with Live(refresh_per_second=2, transient=False, screen=False) as live:
            while True:
                if port is not None:
                    try:
                        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
                        raw = await self.rt.redis.hvals(self.rt.keys.active_alerts)
                        alerts = [json.loads(r) for r in raw]
                        live.update(render(samples, alerts, live.console, names))
                    except (aiohttp.ClientError, ValueError):
                        pass
                else:
                    port = getattr(self.rt.extras.get("http"), "port", None)
                await asyncio.sleep(1.0)
