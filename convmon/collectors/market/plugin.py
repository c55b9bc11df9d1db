"""The ``market`` plugin: wires `MarketCollector` into the daemon.

Section ``collectors.market`` (`MarketConfig`). State metrics: ``convmon_price_source_up``
and ``convmon_price_source_last_message_timestamp_seconds`` per source, read from Redis so
that every replica reports the same. Per-symbol price and peg gauges come from the rule
engine's aggregates, which consume the ``market.price`` events.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from convmon.collectors.market.collector import MarketCollector, SourceHealthStore
from convmon.collectors.market.config import MarketConfig
from convmon.monitor.plugins import Component, Plugin, Runtime


def _components(runtime: Runtime, cfg: MarketConfig) -> Sequence[Component]:
    if not cfg.enabled:
        return []
    return [
        MarketCollector(
            cfg,
            redis=runtime.redis,
            keys=runtime.keys,
            bus=runtime.bus,
            clock=runtime.clock,
            registry=runtime.metrics,
            instance=runtime.instance,
        )
    ]


def _store(runtime: Runtime, cfg: MarketConfig) -> SourceHealthStore:
    return SourceHealthStore(
        runtime.redis, runtime.keys, runtime.instance, ttl_s=6 * cfg.health_interval_s
    )


async def state_metrics(runtime: Runtime, cfg: MarketConfig) -> Iterable[Metric]:
    up = GaugeMetricFamily(
        "convmon_price_source_up",
        "1 when a price source is connected and delivering (any collector replica).",
        labels=["source"],
    )
    last = GaugeMetricFamily(
        "convmon_price_source_last_message_timestamp_seconds",
        "Time of the newest message from a price source.",
        labels=["source"],
    )
    if not cfg.enabled:
        return [up, last]
    store = _store(runtime, cfg)
    now = runtime.clock.now()
    for source in cfg.enabled_sources():
        is_up, seen = await store.read(source, now)
        up.add_metric([source], 1.0 if is_up else 0.0)
        if seen is not None:
            last.add_metric([source], seen)
    return [up, last]


async def status(runtime: Runtime, cfg: MarketConfig) -> Mapping[str, Any]:
    if not cfg.enabled:
        return {"enabled": False}
    store = _store(runtime, cfg)
    now = runtime.clock.now()
    sources: dict[str, Any] = {}
    for source in cfg.enabled_sources():
        is_up, seen = await store.read(source, now)
        sources[source] = {
            "up": is_up,
            "last_message_age_s": None if seen is None else round(now - seen, 3),
        }
    return {"enabled": True, "sources": sources, "symbols": sorted(cfg.symbols)}


PLUGIN = Plugin(
    name="market",
    role="collectors",
    section=("collectors", "market"),
    config_model=MarketConfig,
    components=_components,
    state_metrics=state_metrics,
    status=status,
    description="USD prices from Coinbase and Kraken websockets with a CoinGecko fallback.",
)
