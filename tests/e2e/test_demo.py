"""The whole product, offline: `convmon demo` with every local server, a real Prometheus
scraping its /metrics, and the Grafana dashboards' queries run against what it scraped.

Proves: the expected alerts fire and resolve during the run; every dashboard panel's query
returns at least one series; every metric the deploy stack relies on is exported.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from convmon.monitor.plugins import Runtime
from convmon.sim.demo import run_demo
from tests.deploy.prom_harness import PrometheusHarness, empty_panel_queries
from tests.shared_data import require_binary

REPO = Path(__file__).resolve().parents[2]


def deploy_metric_names() -> set[str]:
    names = set()
    for line in (REPO / "deploy" / "metrics.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(line.split()[0])
    return names


async def exported_names(url: str) -> set[str]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        text = await r.text()
    # A labelled counter that has counted nothing yet is declared (HELP/TYPE) without
    # samples: it is exported all the same.
    names = set()
    for fam in text_string_to_metric_families(text):
        names.add(fam.name)
        if fam.type == "counter":
            names.add(f"{fam.name}_total")
        names.update(smp.name for smp in fam.samples)
    return names


async def test_demo_fires_and_resolves_and_fills_every_dashboard_panel() -> None:
    binary = require_binary("prometheus", shutil.which("prometheus"))
    seen: dict[str, Any] = {}

    async def observer(rt: Runtime, ending: asyncio.Event) -> None:
        http = rt.extras["http"]
        for _ in range(200):
            if http.port:
                break
            await asyncio.sleep(0.05)
        url = f"http://127.0.0.1:{http.port}/metrics"
        async with PrometheusHarness.start(url, binary=binary, scrape_interval="1s") as prom:
            await prom.wait_target_up()
            await ending.wait()
            await asyncio.sleep(3)  # a few more scrapes so rate() windows have two points
            # Every panel shows data over the demo's last 30 wall-clock seconds (a loaded
            # machine may time out a single scrape, which blanks the instant vector).
            seen["empty"] = await empty_panel_queries(prom, over_s=30)
        seen["exported"] = await exported_names(url)

    result = await run_demo(None, speed=1200, duration=100, port=0, live=False,
                            observer=observer)
    summary = result.summary()["alerts"]

    empty = [f"{q.dashboard} / {q.panel_title}: {q.expr}" for q in seen["empty"]]
    assert empty == [], "panels without data:\n" + "\n".join(empty)
    missing = {n for n in deploy_metric_names() if n not in seen["exported"]}
    assert missing == set(), f"deploy/metrics.txt names not exported: {sorted(missing)}"

    def fired(name: str) -> int:
        return int(summary.get(name, {}).get("firing", 0))

    def resolved(name: str) -> int:
        return int(summary.get(name, {}).get("resolved", 0))

    assert set(result.sources) >= {"bitcoin", "solana", "market"}, result.sources
    assert fired("BitcoinTop2PoolsMajority") >= 1, summary
    assert fired("BitcoinReorg") >= 1 and resolved("BitcoinReorg") >= 1, summary
    assert fired("StablecoinLargeMint") >= 1 and resolved("StablecoinLargeMint") >= 1, summary
    assert fired("StablecoinOffPeg") >= 1 and resolved("StablecoinOffPeg") >= 1, summary
    assert fired("DepinPayoutsAbsent") >= 1, summary
    assert fired("DepinNetworkDeflationary") >= 1, summary  # Helium burns past its emission
    assert fired("DepinSupplyDrift") == 0, summary  # supplies follow the flows exactly
