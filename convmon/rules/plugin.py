"""The ``rules`` plugin: wires the aggregate store, the rule engine and its components.

Config section ``rules``: rule files and directories (beside the packaged default pack),
per-rule parameter overrides, the timer interval and the aggregates' settings. Contributes
the aggregates' gauges plus ``convmon_alerts{state}``, a status block listing pending and
firing alerts, a ``check`` that loads every rule, and the ``convmon rules`` commands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client.metrics_core import Metric
from pydantic import Field

from convmon.monitor.alerting import decode_transition
from convmon.monitor.config import ConfigSource, Model
from convmon.monitor.plugins import Component, Plugin, Runtime
from convmon.monitor.yamlfile import FileError, FileErrors
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.engine import RuleEngine, RuleMetrics
from convmon.rules.loader import RuleSet, load_rules
from convmon.rules.schema import ParamValue
from convmon.rules.worker import RuleConsumer, RuleTimer, SharedEngine


class RulesConfig(Model):
    enabled: bool = True
    files: list[Path] = Field(default_factory=list)
    """Rule files or directories of ``*.yaml`` (relative to the config file)."""
    include_default_pack: bool = True
    params: dict[str, dict[str, ParamValue]] = Field(default_factory=dict)
    """``<rule>: {<param>: value}``: overrides of the rules' parameter defaults."""
    evaluation_interval_s: float = Field(default=15.0, gt=0)
    aggregates: AggregatesConfig = Field(default_factory=AggregatesConfig)


def resolve_files(cfg: RulesConfig, config_file: str | None) -> list[Path]:
    base = Path(config_file).parent if config_file and Path(config_file).exists() else Path()
    return [p if p.is_absolute() else base / p for p in (f.expanduser() for f in cfg.files)]


def load_configured_rules(cfg: RulesConfig, source: ConfigSource | None = None) -> RuleSet:
    """Load the rules a configuration selects; raises `FileErrors`."""
    return load_rules(
        resolve_files(cfg, source.file if source is not None else None),
        include_pack=cfg.include_default_pack,
        overrides=cfg.params,
        overrides_source=source,
    )


def _config_file(runtime: Runtime) -> str | None:
    value = runtime.extras.get("config_file")
    return str(value) if value else None


def _components(runtime: Runtime, cfg: RulesConfig) -> Sequence[Component]:
    if not cfg.enabled:
        return []
    rules = load_rules(
        resolve_files(cfg, _config_file(runtime)),
        include_pack=cfg.include_default_pack,
        overrides=cfg.params,
    )
    metrics = RuleMetrics(runtime.metrics)

    async def build() -> RuleEngine:
        store = AggregateStore(runtime.redis, runtime.keys, runtime.clock, cfg.aggregates,
                               durable=runtime.bus.durable)
        await store.load()
        return RuleEngine(runtime.redis, runtime.keys, runtime.clock, rules, store, metrics,
                          durable=runtime.bus.durable,
                          outbox_retention_s=runtime.bus.settings.outbox_retention_s)

    shared = SharedEngine(build)
    return [
        RuleConsumer(runtime.bus, runtime.instance, shared),
        RuleTimer(runtime.clock, cfg.evaluation_interval_s, shared),
    ]


async def active_alerts(runtime: Runtime) -> list[dict[str, Any]]:
    raw = await runtime.redis.hvals(runtime.keys.active_alerts)
    out = []
    for value in raw:
        t = decode_transition(value)
        out.append({
            "fingerprint": t.fingerprint, "rule": t.rule, "state": t.state,
            "labels": t.labels, "annotations": t.annotations, "value": t.value,
            "starts_at": t.starts_at,
        })
    return sorted(out, key=lambda a: (a["state"] != "firing", a["rule"], a["fingerprint"]))


async def _state_metrics(runtime: Runtime, cfg: RulesConfig) -> Iterable[Metric]:
    # Alert counts by state come from the core (it owns the active alerts hash).
    store = AggregateStore(runtime.redis, runtime.keys, runtime.clock, cfg.aggregates)
    return list(await store.state_metrics())


def _check(cfg: RulesConfig, source: ConfigSource) -> Sequence[FileError]:
    try:
        load_configured_rules(cfg, source)
    except FileErrors as exc:
        return exc.errors
    except FileError as exc:
        return [exc]
    return []


def _cli(app: Any) -> None:
    from convmon.rules.cli import register

    register(app)


PLUGIN = Plugin(
    name="rules",
    role="rules",
    section=("rules",),
    config_model=RulesConfig,
    components=_components,
    state_metrics=_state_metrics,
    cli=_cli,
    check=_check,
    description="Aggregates in Redis and the rule engine that turns them into alerts.",
)
