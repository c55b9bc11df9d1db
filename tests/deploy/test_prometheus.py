"""The Prometheus config and rules: promtool accepts them, their unit tests pass, every alert
carries the labels Alertmanager routes on, and every alert has a promtool test."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from convmon.rules.aggregates.config import DEFAULT_CADENCE_S
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


PACK_DIR = Path(__file__).resolve().parents[2] / "convmon" / "rules" / "pack"

_COMPARISON_AT_END = re.compile(r"(>=|<=|==|!=|>|<)\s*([0-9][0-9.e+]*)\s*$")
_NETWORK_LIMIT = re.compile(r'vector\(([0-9.e+]+)\),\s*"network",\s*"([a-z0-9_]+)"')
_WINDOW = re.compile(r'window="([^"]+)"')


@dataclass(frozen=True)
class Mirror:
    """How a Prometheus alert mirrors the rule pack rule of the same name.

    ``comparison``/``param``: the Prometheus expression ends in ``<comparison> <number>``
    and the number is the pack rule's ``params[param]``. ``for_param``: the Prometheus
    ``for`` is the pack's duration ``params[for_param]`` (seconds). ``same_for``: both sides
    hold the condition for the same ``for``. ``window``: the expression selects the pack's
    ``params.window``.
    """

    comparison: str | None = None
    param: str | None = None
    for_param: str | None = None
    same_for: bool = False
    window: bool = False


MIRRORS: dict[str, Mirror] = {
    "BitcoinTop2PoolsMajority": Mirror(">", "threshold", window=True),
    "BitcoinTop3PoolsShare": Mirror(">", "threshold", window=True),
    "BitcoinPoolShareHigh": Mirror(">", "threshold", window=True),
    "BitcoinPoolShareCritical": Mirror(">", "threshold", window=True),
    "BitcoinPoolHHIHigh": Mirror(">", "threshold", window=True),
    "BitcoinNakamotoCoefficientLow": Mirror("<=", "max", window=True),
    "BitcoinNoBlock": Mirror(">", "max_age_s"),
    "StablecoinNetIssuanceHigh": Mirror(">=", "min_usd"),
    "StablecoinOffPeg": Mirror(">", "max_deviation", same_for=True),
    "CollectorDisconnected": Mirror("==", None, for_param="max_age_s"),
    "ComponentDown": Mirror("==", None, for_param="max_down_s"),
    "ConsumerLagGrowing": Mirror(for_param="min_growing_s"),
    "ConsumerPendingHigh": Mirror(">", "max_pending", same_for=True),
    "PriceSourceStale": Mirror("==", None, same_for=True),
    "RedisMemoryNearLimit": Mirror(">", "max_ratio", same_for=True),
}
"""Prometheus alerts that mirror a pack rule, by the shared name. Not mirrored: the dead
letter alerts (per metric, the pack's DeadLetters is per stream), BitcoinReorgAnyDepth (the
reorg counter carries no depth, the pack's BitcoinReorg needs ``min_depth``),
ConvmonTargetDown (only Prometheus sees the scrape)."""


def _pack_rules() -> dict[str, dict[str, Any]]:
    rules: dict[str, dict[str, Any]] = {}
    for path in sorted(PACK_DIR.glob("*.yaml")):
        for rule in yaml.safe_load(path.read_text())["rules"]:
            rules[rule["name"]] = rule
    return rules


def _seconds(duration: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    return float(duration[:-1]) * units[duration[-1]]


@pytest.mark.parametrize("alert", sorted(MIRRORS))
def test_default_rule_pack_thresholds_are_mirrored(alert: str) -> None:
    mirror = MIRRORS[alert]
    prom = {str(rule["alert"]): rule for rule in _alerting_rules()}[alert]
    pack = _pack_rules()[alert]
    params = pack.get("params", {})
    expr = " ".join(str(prom["expr"]).split())
    if mirror.comparison is not None:
        found = _COMPARISON_AT_END.search(expr)
        assert found, f"{alert}: no trailing comparison in {expr!r}"
        assert found.group(1) == mirror.comparison, (alert, expr)
        expected = 0.0 if mirror.param is None else float(params[mirror.param])
        assert float(found.group(2)) == expected, (alert, expr, params)
    if mirror.for_param is not None:
        assert _seconds(str(prom["for"])) == float(params[mirror.for_param]), (alert, params)
    if mirror.same_for:
        assert prom["for"] == pack["for"], alert
    if mirror.window:
        assert set(_WINDOW.findall(expr)) == {params["window"]}, (alert, expr)


def test_depin_payout_limits_are_the_pack_cadence_times_its_margin() -> None:
    """The Prometheus rule writes each network's limit out; the pack computes it from the
    aggregates' expected cadence and its margin."""
    prom = {str(rule["alert"]): rule for rule in _alerting_rules()}["DepinPayoutsAbsent"]
    params = _pack_rules()["DepinPayoutsAbsent"]["params"]
    limits = {name: float(value) for value, name in _NETWORK_LIMIT.findall(str(prom["expr"]))}
    assert set(limits) == set(params["networks"])
    for network, limit in limits.items():
        expected = DEFAULT_CADENCE_S[network] * float(params["margin"])
        assert limit == pytest.approx(expected), (network, limit, expected)


def test_mirrored_alerts_cover_every_shared_name() -> None:
    """A Prometheus alert named like a pack rule is checked against it."""
    shared = {str(rule["alert"]) for rule in _alerting_rules()} & set(_pack_rules())
    assert shared - {"DepinPayoutsAbsent"} == set(MIRRORS)


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
