"""Alert delivery metrics.

Process counters (this replica's sends, failures, latency, dead letters) live in the
runtime registry; figures that must agree across replicas (queue depth, active silences)
are computed from Redis at scrape time by `state_metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis

from convmon.monitor.keys import Keys

from .silences import SilenceStore


class DeliveryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sent = Counter(
            "convmon_notifications_sent", "Notifications delivered to a receiver.",
            ["receiver"], registry=registry,
        )
        self.failed = Counter(
            "convmon_notifications_failed", "Failed delivery attempts (each retry counts).",
            ["receiver", "reason"], registry=registry,
        )
        self.latency = Histogram(
            "convmon_notification_latency_seconds",
            "From the newest alert transition's evaluation to delivery.",
            ["receiver"], registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600),
        )
        self.group_errors = Counter(
            "convmon_alert_group_errors",
            "Alert group evaluations that failed unexpectedly (retried later).",
            registry=registry,
        )
        self.dead_letters = Counter(
            "convmon_notification_dead_letters",
            "Notifications given up after the retry budget.",
            ["receiver"], registry=registry,
        )

    def start_at_zero(self, receivers: Iterable[str]) -> None:
        """Export the per-receiver counters at 0 from the start: Prometheus's
        ``increase()`` sees nothing of a series whose first sample is already 1, so the
        first dead letter of a receiver would never alert."""
        for receiver in receivers:
            self.sent.labels(receiver)
            self.dead_letters.labels(receiver)


async def alert_state_metrics(
    redis: Redis, keys: Keys, now: float, registry: CollectorRegistry | None = None
) -> Iterable[Metric]:
    depth = int(await redis.zcount(keys.alerts_due, "-inf", now))
    queue = GaugeMetricFamily(
        "convmon_notification_queue_depth",
        "Alert groups due for evaluation or delivery now (including retries).",
        value=depth,
    )
    active = await SilenceStore(redis, keys, registry=registry).active(now)
    silences = GaugeMetricFamily(
        "convmon_silences_active", "Silences in effect now.", value=len(active)
    )
    return [queue, silences]
