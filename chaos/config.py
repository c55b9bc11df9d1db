"""The daemon's configuration for a chaos run, and the alert rule the notifications test.

In: the ports of the suite's Redis, the daemon's HTTP server and the webhook receiver, and
the collectors section of the `World`. Out: ``convmon.yaml`` and ``chaos-rules.yaml`` in
the run's directory, and `webhook_groups`, which tells the ledger which group keys an
alert joins on the webhook route (computed with convmon's own route tree).

Alerting is shaped so that "exactly once" is well defined: the rule ``ChaosBlock`` fires
once per Bitcoin block and resolves 20 s later; only its alerts (``group="chaos"``) go to
the webhook, each alert in a group of its own (``group_by: ["..."]``), with a repeat
interval longer than the run, so every firing and every resolved transition should be
notified exactly once. Everything else (the default pack) goes to the console. Retries
are capped at 5 s so the backlog of an outage drains within the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from chaos.ledger import GroupsFor
from convmon.alerts.config import AlertsConfig
from convmon.alerts.routing import Route

WEBHOOK = "chaos-webhook"
INSTANCE = "chaos"
RESOLVE_AFTER_S = 20
EVALUATION_INTERVAL_S = 2.0

RULES = {
    "rules": [
        {
            "name": "ChaosBlock",
            "kind": "event",
            "events": ["bitcoin.block"],
            "condition": "true",
            "resolve_after": f"{RESOLVE_AFTER_S}s",
            "severity": "info",
            "labels": {"group": "chaos"},
            "annotations": {"summary": "a block was connected (chaos suite)"},
        }
    ]
}


def alerts_section(webhook_url: str) -> dict[str, Any]:
    return {
        "receivers": [
            {"name": "console", "type": "console"},
            {"name": WEBHOOK, "type": "webhook", "url": webhook_url, "timeout_s": 5.0},
        ],
        "route": {
            "receiver": "console",
            "group_by": ["alertname"],
            "group_wait_s": 1,
            "group_interval_s": 5,
            "repeat_interval_s": 86400,
            "routes": [
                {"matchers": ['group="chaos"'], "receiver": WEBHOOK, "group_by": ["..."],
                 "group_wait_s": 0, "group_interval_s": 1, "repeat_interval_s": 86400},
            ],
        },
        "retry": {"initial_backoff_s": 0.5, "max_backoff_s": 5.0},
        "tick_s": 0.5,
    }


def daemon_config(
    *, workdir: Path, redis_url: str, http_port: int, webhook_url: str,
    collectors: dict[str, Any],
) -> dict[str, Any]:
    return {
        "instance": INSTANCE,
        "data_dir": str(workdir / "data"),
        "redis": {"url": redis_url, "socket_timeout_s": 5.0},
        "http": {"host": "127.0.0.1", "port": http_port},
        "log": {"level": "INFO", "format": "json"},
        "supervisor": {"restart_backoff_initial_s": 0.5, "restart_backoff_max_s": 5.0,
                       "heartbeat_ttl_s": 6},
        "collectors": collectors,
        "rules": {"files": [str(workdir / "chaos-rules.yaml")],
                  "evaluation_interval_s": EVALUATION_INTERVAL_S},
        "alerts": alerts_section(webhook_url),
    }


def write_config(workdir: Path, config: dict[str, Any]) -> Path:
    (workdir / "chaos-rules.yaml").write_text(yaml.safe_dump(RULES, sort_keys=False))
    path = workdir / "convmon.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def webhook_groups(alerts: dict[str, Any]) -> GroupsFor:
    """Labels -> the group keys the alert joins on routes that deliver to the webhook."""
    route = Route.build(AlertsConfig.model_validate(alerts).route)

    def groups(labels: dict[str, str]) -> list[str]:
        return [r.group_key(labels) for r in route.match(labels) if r.receiver == WEBHOOK]

    return groups
