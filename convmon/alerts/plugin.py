"""The ``alerts`` plugin: the dispatcher component, its metrics, CLI and HTTP routes."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from pydantic import ValidationError

from convmon.monitor.config import ConfigSource, SupervisorSettings
from convmon.monitor.plugins import Component, Plugin, Runtime
from convmon.monitor.secrets import Secret, SecretError
from convmon.monitor.yamlfile import FileError

from .api import http_routes
from .cli import register_cli
from .config import AlertsConfig
from .dispatcher import Dispatcher
from .metrics import DeliveryMetrics, alert_state_metrics

_metrics: weakref.WeakKeyDictionary[CollectorRegistry, DeliveryMetrics] = (
    weakref.WeakKeyDictionary()
)


def delivery_metrics(registry: CollectorRegistry) -> DeliveryMetrics:
    """One set of counters per registry (components may be built more than once)."""
    found = _metrics.get(registry)
    if found is None:
        found = _metrics[registry] = DeliveryMetrics(registry)
    return found


def components(runtime: Runtime, cfg: AlertsConfig) -> Sequence[Component]:
    if not cfg.enabled:
        return []
    return [Dispatcher(
        runtime.redis, runtime.keys, cfg, runtime.clock, delivery_metrics(runtime.metrics),
        bus_settings=runtime.settings.bus, bus_metrics=runtime.bus.metrics,
        instance=runtime.instance, registry=runtime.metrics,
    )]


async def state_metrics(runtime: Runtime, cfg: AlertsConfig) -> Iterable[Metric]:
    return await alert_state_metrics(
        runtime.redis, runtime.keys, runtime.clock.now(), registry=runtime.metrics
    )


async def status(runtime: Runtime, cfg: AlertsConfig) -> Mapping[str, Any]:
    keys = runtime.keys
    return {
        "receivers": [r.name for r in cfg.receivers],
        "groups_due": int(await runtime.redis.zcount(keys.alerts_due, "-inf",
                                                    runtime.clock.now())),
        "dead_letters": int(await runtime.redis.xlen(keys.notifications_dead)),
    }


def _shutdown_timeout_s(source: ConfigSource) -> float:
    raw = source.data.get("supervisor") if isinstance(source.data, dict) else None
    try:
        return SupervisorSettings.model_validate(raw or {}).shutdown_timeout_s
    except ValidationError:  # the core's own validation reports it
        return SupervisorSettings().shutdown_timeout_s


def check(cfg: AlertsConfig, source: ConfigSource) -> Sequence[FileError]:
    """``convmon check``: every secret a receiver needs must be resolvable now, and every
    receiver timeout must end a send within the shutdown budget (a send cut off at
    shutdown after the receiver accepted it would be sent again after a restart)."""
    errors: list[FileError] = []
    budget = _shutdown_timeout_s(source)
    for i, receiver in enumerate(cfg.receivers):
        timeout = getattr(receiver, "timeout_s", None)
        if isinstance(timeout, float) and timeout >= budget:
            errors.append(source.error(
                ["alerts", "receivers", i, "timeout_s"],
                f"timeout_s ({timeout:g} s) must be shorter than supervisor."
                f"shutdown_timeout_s ({budget:g} s): a notification still being sent at "
                "shutdown would be cut off and sent again after a restart",
            ))
        for name, value in receiver:
            secrets = value if isinstance(value, list) else [value]
            for j, secret in enumerate(secrets):
                if not isinstance(secret, Secret):
                    continue
                try:
                    secret.reveal()
                except SecretError as exc:
                    path: list[str | int] = ["alerts", "receivers", i, name]
                    if isinstance(value, list):
                        path.append(j)
                    errors.append(source.error(path, str(exc)))
    return errors


PLUGIN = Plugin(
    name="alerts",
    role="alerts",
    section=("alerts",),
    config_model=AlertsConfig,
    components=components,
    state_metrics=state_metrics,
    status=status,
    cli=register_cli,
    http_routes=http_routes,
    check=check,
    description="Routes, groups, silences and delivers alert notifications "
    "(Slack, email, webhook, Alertmanager, heartbeat, console).",
)
