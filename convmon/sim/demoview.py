"""The demo's live terminal view: pool shares, payouts, flows, prices and firing alerts,
read from the daemon's own ``/metrics`` (what Prometheus and Grafana see) and the active
alerts in Redis.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Group
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


def render(samples: Samples, alerts: list[dict[str, Any]]) -> Group:
    pools = _table("Pool shares (last 1008 blocks)", "pool", "share")
    shares = sorted(
        ((lab.get("pool", "?"), v) for lab, v in samples.get("convmon_btc_pool_share_ratio", [])
         if lab.get("window") == "1008"),
        key=lambda x: -x[1],
    )
    for pool, v in shares[:8]:
        pools.add_row(escape(pool), f"{v:.1%}")
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
    fired = _table("Active alerts", "state", "severity", "alert", "summary")
    for a in sorted(alerts, key=lambda a: (a.get("state") != "firing", a.get("starts_at", 0))):
        labels = a.get("labels", {})
        colour = "red" if a.get("state") == "firing" else "yellow"
        fired.add_row(
            f"[{colour}]{a.get('state')}[/{colour}]", labels.get("severity", ""),
            escape(labels.get("alertname", "")),
            escape(a.get("annotations", {}).get("summary", ""))[:90],
        )
    return Group(pools, conc, depin, flows, prices, fired)


class DemoView:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def run(self) -> None:
        http = self.rt.extras.get("http")
        port = getattr(http, "port", None)
        with Live(refresh_per_second=2, transient=False) as live:
            while True:
                if port is not None:
                    try:
                        samples = await scrape(f"http://127.0.0.1:{port}/metrics")
                        raw = await self.rt.redis.hvals(self.rt.keys.active_alerts)
                        alerts = [json.loads(r) for r in raw]
                        live.update(render(samples, alerts))
                    except (aiohttp.ClientError, ValueError):
                        pass
                else:
                    port = getattr(self.rt.extras.get("http"), "port", None)
                await asyncio.sleep(1.0)
