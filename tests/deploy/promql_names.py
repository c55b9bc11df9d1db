"""Metric names referenced by PromQL expressions, and the allow-list they must come from.

In: PromQL text from Prometheus rule files and Grafana dashboards; `deploy/metrics.txt`.
Out: the metric names an expression selects (not functions, label names, label values,
keywords or durations), and the set of names convmon exports, so a test can prove that the
deploy stack queries nothing the daemon does not export.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
METRICS_FILE = REPO / "deploy" / "metrics.txt"
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"

# Series Prometheus itself attaches to every target.
PROMETHEUS_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_LABEL_LIST = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
_IDENT = re.compile(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring",
     "group_left", "group_right", "inf", "nan", "atan2"}
)
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def metric_names(expr: str) -> set[str]:
    """Names of the series `expr` selects."""
    text = _STRING.sub(" ", expr)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    names: set[str] = set()
    for match in _IDENT.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def allowed_metric_names(path: Path = METRICS_FILE) -> set[str]:
    """Exposed names from metrics.txt (`<name> <type>`); histograms expand to their series."""
    allowed: set[str] = set()
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ("counter", "gauge", "histogram"):
            raise ValueError(f"{path}:{number}: expected '<name> counter|gauge|histogram'")
        name, kind = parts
        if not name.startswith("convmon_"):
            raise ValueError(f"{path}:{number}: {name} lacks the convmon_ prefix")
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"{path}:{number}: counter {name} must end in _total")
        if kind == "histogram":
            allowed.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        else:
            allowed.add(name)
    return allowed


def rule_expressions(rules_dir: Path = RULES_DIR) -> list[tuple[str, str]]:
    """(rule name, expr) for every recording and alerting rule."""
    found = []
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                found.append((rule.get("record") or rule["alert"], rule["expr"]))
    return found


def recorded_names(rules_dir: Path = RULES_DIR) -> set[str]:
    names: set[str] = set()
    for path in sorted(rules_dir.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


def unknown_names(expr: str, allowed: set[str], recorded: set[str]) -> set[str]:
    """Names in `expr` that are neither exported by convmon, recorded, nor Prometheus's own."""
    return {
        name
        for name in metric_names(expr)
        if name not in allowed and name not in recorded and name not in PROMETHEUS_SERIES
    }
