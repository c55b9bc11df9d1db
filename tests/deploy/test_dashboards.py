"""The generated Grafana dashboards: valid JSON that matches generate.py, unique uids and panel
ids, every panel and target on the provisioned datasource, and only exported metric names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.prom_harness import DASHBOARDS_DIR, dashboard_queries, iter_panels
from tests.deploy.promql_names import allowed_metric_names, metric_names, unknown_names

GRAFANA_DIR = DASHBOARDS_DIR.parent
GENERATE = GRAFANA_DIR / "generate.py"
EXPECTED = {
    "convmon-mining-concentration",
    "convmon-depin-payouts",
    "convmon-depin-revenue",
    "convmon-stablecoin-flows",
    "convmon-market-economics",
    "convmon-operations",
    "convmon-machine-payments",
    "convmon-block-builders",
}


def provisioned_datasource_uid() -> str:
    provisioning = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "datasources" / "convmon.yml").read_text()
    )
    (datasource,) = provisioning["datasources"]
    assert datasource["type"] == "prometheus"
    uid: str = datasource["uid"]
    return uid


def load_dashboards() -> dict[str, dict[str, Any]]:
    files = sorted(DASHBOARDS_DIR.glob("*.json"))
    assert files, "no dashboards generated"
    return {path.name: json.loads(path.read_text(encoding="utf-8")) for path in files}


def run_generate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(GENERATE), *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def test_committed_json_matches_generator() -> None:
    result = run_generate("--check")
    assert result.returncode == 0, result.stderr


def test_check_fails_on_hand_edited_or_stale_json(tmp_path: Path) -> None:
    assert run_generate("--out", str(tmp_path)).returncode == 0
    assert run_generate("--check", "--out", str(tmp_path)).returncode == 0
    edited = tmp_path / "operations.json"
    edited.write_text(edited.read_text().replace("Operations", "Ops"))
    result = run_generate("--check", "--out", str(tmp_path))
    assert result.returncode == 1 and "operations.json" in result.stderr
    run_generate("--out", str(tmp_path))
    (tmp_path / "leftover.json").write_text("{}")
    result = run_generate("--check", "--out", str(tmp_path))
    assert result.returncode == 1 and "leftover.json" in result.stderr


def test_expected_dashboards_with_unique_uids() -> None:
    uids = [board["uid"] for board in load_dashboards().values()]
    assert len(uids) == len(set(uids))
    assert set(uids) == EXPECTED


@pytest.mark.parametrize("name", sorted(p.name for p in DASHBOARDS_DIR.glob("*.json")))
def test_panels_have_unique_ids_and_the_provisioned_datasource(name: str) -> None:
    uid = provisioned_datasource_uid()
    board = load_dashboards()[name]
    panels = list(iter_panels(board["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    data_panels = [panel for panel in panels if panel["type"] != "row"]
    assert len(data_panels) >= 6
    for panel in data_panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
            assert target["expr"].strip(), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def test_dashboards_query_only_exported_metrics() -> None:
    allowed = allowed_metric_names()
    queries = dashboard_queries()
    assert len(queries) >= 50
    referenced = set()
    for query in queries:
        names = metric_names(query.expr)
        assert names, (query.dashboard, query.panel_title, query.expr)
        assert not unknown_names(query.expr, allowed, set()), (query.panel_title, query.expr)
        referenced |= names
    assert "$" not in "".join(query.expr for query in queries)
    # The dashboards cover the contract broadly, not a token subset of it.
    assert len(referenced) >= 50


def test_provider_points_at_the_mounted_dashboards() -> None:
    provider = yaml.safe_load(
        (GRAFANA_DIR / "provisioning" / "dashboards" / "convmon.yml").read_text()
    )
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    compose = yaml.safe_load((GRAFANA_DIR.parent / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.endswith(":" + entry["options"]["path"] + ":ro") for m in mounts), mounts
