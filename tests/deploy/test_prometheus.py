"""The Prometheus config and rules: promtool accepts them, their unit tests pass, every alert
carries the labels Alertmanager routes on, and every alert has a promtool test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.promql_names import (
    allowed_metric_names,
    metric_names,
    recorded_names,
    rule_expressions,
    unknown_names,
)
from tests.shared_data import require_binary

PROM_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULE_FILES = sorted((PROM_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))


def promtool(*args: str, cwd: Path = PROM_DIR) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool", shutil.which("promtool"))
    return subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(RULE_FILES)} rule files found" in result.stdout


def test_check_rules() -> None:
    assert RULE_FILES
    result = promtool("check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass() -> None:
    assert RULE_TESTS
    result = promtool("test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_rules_catches_a_wrong_expectation(tmp_path: Path) -> None:
    """Guards the guard: a rule test expecting the wrong outcome must fail."""
    original = yaml.safe_load((PROM_DIR / "tests" / "operations_test.yml").read_text())
    original["rule_files"] = [str(PROM_DIR / "rules" / "operations.yml")]
    first = original["tests"][0]["alert_rule_test"][1]
    assert first["alertname"] == "ConvmonTargetDown" and first["exp_alerts"]
    first["exp_alerts"] = []
    broken = tmp_path / "broken_test.yml"
    broken.write_text(yaml.safe_dump(original))
    result = promtool("test", "rules", str(broken), cwd=tmp_path)
    assert result.returncode != 0
    assert "ConvmonTargetDown" in result.stdout + result.stderr


def _alerting_rules() -> list[dict[str, object]]:
    rules: list[dict[str, object]] = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def test_alerts_carry_routing_labels_and_annotations() -> None:
    alerts = _alerting_rules()
    assert len(alerts) >= 15
    for rule in alerts:
        labels = rule["labels"]
        assert isinstance(labels, dict)
        assert labels["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert labels["group"] in (
            "concentration", "bitcoin", "depin", "stablecoins", "market", "operations"
        ), rule["alert"]
        annotations = rule["annotations"]
        assert isinstance(annotations, dict)
        assert annotations["summary"] and annotations["description"], rule["alert"]


def test_every_alert_has_a_unit_test() -> None:
    tested = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check["exp_alerts"]:
                    tested.add(check["alertname"])
    untested = {str(rule["alert"]) for rule in _alerting_rules()} - tested
    assert not untested, f"alerts without a firing test: {sorted(untested)}"


@pytest.mark.parametrize(
    "alert",
    [
        "BtcTop2PoolsShareAbove50", "BtcPoolShareAbove33", "BtcPoolShareAbove40",
        "BtcTop3PoolsShareAbove75", "BtcHhiAbove2500", "BtcNakamotoCoefficientAtMost2",
        "BtcNoBlockFor60Minutes", "BtcReorg", "DepinPayoutsAbsent",
        "StablecoinNetIssuanceAbove1B", "StablecoinPegOff", "CollectorDown",
        "BusDeadLettersGrowing", "NotificationDeadLettersGrowing",
    ],
)
def test_default_rule_pack_thresholds_are_mirrored(alert: str) -> None:
    assert alert in {rule["alert"] for rule in _alerting_rules()}


def test_rules_query_only_exported_metrics() -> None:
    allowed = allowed_metric_names()
    recorded = recorded_names()
    for name, expr in rule_expressions():
        assert not unknown_names(expr, allowed, recorded), (name, expr)


def test_metric_name_extraction_flags_unknown_names() -> None:
    allowed = allowed_metric_names()
    expr = (
        'sum by (pool) (rate(convmon_btc_pool_blocks_typo{window="1008",'
        ' stream="convmon:events"}[5m])) / on (pool) group_left () convmon_btc_hhi > 1e9'
    )
    assert metric_names(expr) == {"convmon_btc_pool_blocks_typo", "convmon_btc_hhi"}
    assert unknown_names(expr, allowed, set()) == {"convmon_btc_pool_blocks_typo"}
    assert "convmon_rule_evaluation_seconds_bucket" in allowed
    assert "convmon_rule_evaluation_seconds" not in allowed
