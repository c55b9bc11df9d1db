"""The Alertmanager config: amtool accepts it, routes go where the README says, secrets are
read from files, and critical concentration alerts inhibit the warning ones."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.shared_data import require_binary

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "alertmanager" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("amtool", shutil.which("amtool"))
    return subprocess.run(
        [binary, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_check_config() -> None:
    result = amtool("check-config", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_check_config_rejects_a_broken_route(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["route"]["routes"][0]["receiver"] = "no-such-receiver"
    broken = tmp_path / "alertmanager.yml"
    broken.write_text(yaml.safe_dump(config))
    assert amtool("check-config", str(broken)).returncode != 0


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["group=concentration", "severity=critical"], "concentration-critical"),
        (["group=concentration", "severity=warning"], "slack-markets"),
        (["group=depin", "severity=warning"], "slack-markets"),
        (["group=stablecoins", "severity=warning"], "slack-markets"),
        (["group=operations", "severity=critical"], "ops-critical"),
        (["group=operations", "severity=warning"], "slack-ops"),
        (["alertname=Unrouted"], "slack-ops"),
    ],
)
def test_routes(labels: list[str], receiver: str) -> None:
    result = amtool("config", "routes", "test", f"--config.file={CONFIG}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receiver


def test_secrets_come_from_files() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert "smtp_auth_password" not in config["global"]
    assert config["global"]["smtp_auth_password_file"].startswith("/etc/alertmanager/secrets/")
    slack = email = 0
    for receiver in config["receivers"]:
        for slack_config in receiver.get("slack_configs", []):
            assert "api_url" not in slack_config
            assert slack_config["api_url_file"].startswith("/etc/alertmanager/secrets/")
            slack += 1
        for email_config in receiver.get("email_configs", []):
            assert "auth_password" not in email_config
            assert email_config["auth_password_file"].startswith("/etc/alertmanager/secrets/")
            email += 1
    assert slack and email


def test_critical_concentration_inhibits_warning() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    rules = config["inhibit_rules"]
    assert any(
        'severity="critical"' in rule["source_matchers"]
        and 'severity="warning"' in rule["target_matchers"]
        and 'group="concentration"' in rule["source_matchers"]
        and {"window", "pool"} <= set(rule["equal"])
        for rule in rules
    )
