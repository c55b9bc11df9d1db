"""deploy/alertmanager/alertmanager.yml and the Prometheus alerting rules, run for real: a
real Alertmanager with our config (only the secret-file directory and timings changed) delivers
to a local server speaking Slack's webhook protocol; a real Prometheus evaluating our rules
against a local exporter fires and resolves through it; inhibition mutes the warning."""

from __future__ import annotations

import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge

from tests.deploy.am_harness import AlertmanagerHarness, SlackWebhook
from tests.deploy.prom_harness import PrometheusHarness
from tests.shared_data import require_binary
from tests.waiting import eventually

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SECRETS_DIR = "/etc/alertmanager/secrets"


def deploy_config(secrets: Path, slack_url: str, smtp_port: int) -> dict[str, Any]:
    """Our alertmanager.yml with secrets in `secrets/` and delivery timings shortened."""
    text = (DEPLOY / "alertmanager" / "alertmanager.yml").read_text()
    assert SECRETS_DIR in text
    config: dict[str, Any] = yaml.safe_load(text.replace(SECRETS_DIR, str(secrets)))
    (secrets / "slack_webhook_url").write_text(slack_url)
    (secrets / "smtp_password").write_text("not-used")
    # no SMTP server here: point email at a port that refuses connections so it fails fast
    config["global"]["smtp_smarthost"] = f"127.0.0.1:{smtp_port}"
    config["route"]["group_wait"] = "1s"
    config["route"]["group_interval"] = "1s"
    return config


@pytest.fixture
async def slack() -> AsyncIterator[SlackWebhook]:
    async with SlackWebhook.serve() as hook:
        yield hook


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port bound but not listening for the whole test: connections to it are
    refused, and nothing else can take it meanwhile."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
async def alertmanager(
    tmp_path: Path, slack: SlackWebhook, refusing_port: int
) -> AsyncIterator[AlertmanagerHarness]:
    binary = require_binary(
        "alertmanager",
        shutil.which("prometheus-alertmanager") or shutil.which("alertmanager"),
    )
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    async with AlertmanagerHarness.start(
        deploy_config(secrets, slack.url, refusing_port), binary=binary
    ) as am:
        yield am


def concentration_alert(name: str, pool: str, severity: str, summary: str) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": name, "pool": pool, "window": "1008",
            "group": "concentration", "severity": severity, "job": "convmon",
        },
        "annotations": {"summary": summary, "description": summary},
    }


async def test_critical_concentration_inhibits_the_warning_on_the_same_pool(
    alertmanager: AlertmanagerHarness, slack: SlackWebhook
) -> None:
    await alertmanager.post_alerts([
        concentration_alert(
            "BitcoinPoolShareCritical", "foundry-usa", "critical", "foundry at 41%"
        ),
        concentration_alert("BitcoinPoolShareHigh", "foundry-usa", "warning", "foundry at 41%!"),
        concentration_alert("BitcoinPoolShareHigh", "antpool", "warning", "antpool at 35%"),
    ])

    async def delivered() -> bool:
        texts = "\n".join(slack.texts())
        return "FIRING: foundry at 41%\n" in texts + "\n" and "antpool at 35%" in texts

    await eventually(delivered, "delivered to Slack")
    states = {
        (a["labels"]["alertname"], a["labels"]["pool"]): a["status"]
        for a in await alertmanager.alerts()
    }
    assert states[("BitcoinPoolShareHigh", "foundry-usa")]["state"] == "suppressed"
    assert states[("BitcoinPoolShareHigh", "foundry-usa")]["inhibitedBy"]
    assert states[("BitcoinPoolShareHigh", "antpool")]["state"] == "active"
    assert states[("BitcoinPoolShareCritical", "foundry-usa")]["state"] == "active"
    assert not any("foundry at 41%!" in text for text in slack.texts())
    channels = {message["channel"] for message in slack.messages}
    assert channels == {"#convmon-alerts"}


async def test_prometheus_rules_fire_and_resolve_through_alertmanager(
    registry: CollectorRegistry,
    exporter: str,
    alertmanager: AlertmanagerHarness,
    slack: SlackWebhook,
) -> None:
    binary = require_binary("prometheus", shutil.which("prometheus"))
    net = Gauge(
        "convmon_stablecoin_net_issuance_tokens", "net", ["token", "chain", "window"],
        registry=registry,
    )
    net.labels(token="USDT", chain="ethereum", window="24h").set(7e8)
    net.labels(token="USDT", chain="solana", window="24h").set(5e8)
    net.labels(token="USDC", chain="ethereum", window="24h").set(2e8)

    async with PrometheusHarness.start(
        exporter,
        binary=binary,
        rule_files=[DEPLOY / "prometheus" / "rules" / "flows.yml"],
        alertmanager_url=alertmanager.url,
    ) as prom:
        await prom.wait_target_up()

        async def fired() -> bool:
            return any("FIRING: USDT net issuance 1.2G in 24 h" in t for t in slack.texts())

        await eventually(fired, "a firing notification", limit_s=90)
        assert not any("USDC" in text for text in slack.texts())

        net.labels(token="USDT", chain="solana", window="24h").set(-5e8)

        async def resolved() -> bool:
            return any(t.startswith("RESOLVED: USDT") for t in slack.texts())

        await eventually(resolved, "a resolved notification", limit_s=90)
        active = await prom.query('ALERTS{alertname="StablecoinNetIssuanceHigh"}')
        assert active == []
