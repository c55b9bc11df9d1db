"""Plugin ``stablecoins_tron``: wires the Tron stablecoin collector into the daemon.

Section ``collectors.stablecoins.tron`` (`TronStablecoinsConfig`). Role ``collectors``.
Scrape-time gauge ``convmon_tron_checkpoint_timestamp_seconds{token,event}``: how far each
stream has been read (the same from every replica, since checkpoints live in Redis).
Status: the API (redacted), the tokens and their tracks, each stream's checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from convmon.collectors.stablecoins.tron.collector import (
    COLLECTOR,
    TronStablecoinCollector,
    streams,
)
from convmon.collectors.stablecoins.tron.config import TronStablecoinsConfig
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component, Plugin, Runtime


def build_components(runtime: Runtime, cfg: TronStablecoinsConfig) -> Sequence[Component]:
    if not cfg.enabled or not cfg.active_tokens():
        return []
    health = CollectorHealth.for_runtime(runtime, COLLECTOR, cfg.source)
    return [
        TronStablecoinCollector(
            cfg, bus=runtime.bus, clock=runtime.clock, health=health, registry=runtime.metrics,
        )
    ]


async def _checkpoints(runtime: Runtime, cfg: TronStablecoinsConfig) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for stream in streams(cfg):
        raw = await runtime.bus.get_checkpoint(stream.checkpoint)
        out[f"{stream.symbol}:{stream.event_name}"] = (
            int(raw) if raw is not None and raw.isdigit() else None)
    return out


async def state_metrics(runtime: Runtime, cfg: TronStablecoinsConfig) -> Iterable[Metric]:
    gauge = GaugeMetricFamily(
        "convmon_tron_checkpoint_timestamp_seconds",
        "Block time up to which each Tron token event stream has been read.",
        labels=["token", "event"],
    )
    if cfg.enabled:
        for name, ms in (await _checkpoints(runtime, cfg)).items():
            if ms is not None:
                symbol, event = name.split(":", 1)
                gauge.add_metric([symbol, event], ms / 1000.0)
    return [gauge]


async def status(runtime: Runtime, cfg: TronStablecoinsConfig) -> Mapping[str, Any]:
    return {
        "enabled": cfg.enabled,
        "api_url": cfg.api_url.redacted(),
        "api_key": cfg.api_key is not None,
        "tokens": {s: t.track for s, t in cfg.active_tokens().items()},
        "checkpoints_ms": await _checkpoints(runtime, cfg) if cfg.enabled else {},
    }


PLUGIN = Plugin(
    name=COLLECTOR,
    role="collectors",
    section=("collectors", "stablecoins", "tron"),
    config_model=TronStablecoinsConfig,
    components=build_components,
    state_metrics=state_metrics,
    status=status,
    description="Confirmed mints and burns of Tron stablecoins (USDT TRC-20) through a "
    "TronGrid-compatible events API.",
)
