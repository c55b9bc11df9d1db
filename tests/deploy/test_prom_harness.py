"""End to end test of the Prometheus harness: a real Prometheus scrapes a local aiohttp
`/metrics` serving prometheus_client output; queries and the empty-panel finder see it."""

from __future__ import annotations

import shutil

from prometheus_client import CollectorRegistry, Gauge

from tests.deploy.prom_harness import (
    PrometheusHarness,
    dashboard_queries,
    empty_panel_queries,
)
from tests.shared_data import require_binary
from tests.waiting import eventually


async def test_harness_scrapes_queries_and_finds_empty_panels(
    registry: CollectorRegistry, exporter: str
) -> None:
    binary = require_binary("prometheus", shutil.which("prometheus"))
    hhi = Gauge("convmon_btc_hhi", "HHI", ["window"], registry=registry)
    share = Gauge(
        "convmon_btc_top_pools_share_ratio", "top share", ["n", "window"], registry=registry
    )
    hhi.labels(window="1008").set(2650)
    share.labels(n="2", window="1008").set(0.52)

    async with PrometheusHarness.start(exporter, binary=binary) as prom:
        await prom.wait_target_up()
        (series,) = await prom.query('convmon_btc_hhi{window="1008"}')
        assert series["metric"]["job"] == "convmon"
        assert float(series["value"][1]) == 2650

        # a new value is scraped within a few intervals
        hhi.labels(window="1008").set(2700)

        async def updated() -> bool:
            result = await prom.query('convmon_btc_hhi{window="1008"}')
            return float(result[0]["value"][1]) == 2700

        await eventually(updated, "the new value scraped")

        empty = await empty_panel_queries(prom)
        all_queries = dashboard_queries()
        empty_exprs = {q.expr for q in empty}
        served = [q for q in all_queries if q.expr not in empty_exprs]
        assert {q.panel_title for q in served} >= {"HHI", "Top-2 pool share"}
        # only n="2" is exported: the top-3 panel has no series
        assert "Top-3 pool share" in {q.panel_title for q in empty}
        # the dashboards' default window (1008) was substituted into the queries
        assert 'max(convmon_btc_hhi{window="1008"})' in {q.expr for q in served}
        assert any(q.dashboard == "convmon-depin-payouts" for q in empty)
        assert len(empty) < len(all_queries)
        process = prom.process
    assert process.returncode is not None
