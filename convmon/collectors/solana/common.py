"""Wiring shared by the two Solana plugins: health, the collector component, state gauges."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from convmon.collectors.solana.collector import Extract, SolanaTxCollector
from convmon.collectors.solana.rpc import RpcSettings
from convmon.collectors.solana.sigqueue import SignatureQueue
from convmon.collectors.solana.ws import WantedLogs
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Runtime


def health_for(runtime: Runtime, name: str, source: str) -> CollectorHealth:
    return CollectorHealth.for_runtime(runtime, name, source)


def tx_collector(
    runtime: Runtime,
    name: str,
    source: str,
    settings: RpcSettings,
    addresses: Sequence[str],
    extract: Extract,
    wanted_logs: WantedLogs | None = None,
) -> SolanaTxCollector:
    return SolanaTxCollector(
        name,
        settings,
        addresses,
        extract,
        redis=runtime.redis,
        keys=runtime.keys,
        bus=runtime.bus,
        clock=runtime.clock,
        health=health_for(runtime, name, source),
        wanted_logs=wanted_logs,
    )


async def queue_metrics(runtime: Runtime, collector: str) -> Iterable[Metric]:
    """Queue depth and given-up signatures, read from Redis (the same from every replica)."""
    queue = SignatureQueue(runtime.redis, runtime.keys, collector)
    depth = GaugeMetricFamily(
        "convmon_solana_signature_queue_depth",
        "Transaction signatures waiting to be fetched.",
        labels=["collector"],
    )
    depth.add_metric([collector], await queue.depth())
    failed = GaugeMetricFamily(
        "convmon_solana_failed_signatures",
        "Signatures given up on (not found, or refused with -32015); see the failed queue.",
        labels=["collector"],
    )
    failed.add_metric([collector], await queue.failed())
    return [depth, failed]
