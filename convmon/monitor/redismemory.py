"""How much memory Redis holds, per primary, for ``/metrics``.

In: the client (standalone, Sentinel primary or Cluster). Out: ``convmon_redis_memory_bytes``
(``used_memory``) and ``convmon_redis_maxmemory_bytes`` (0 when no limit is set) per node;
on a cluster one series per primary (replicas hold copies). The operations alert
``RedisMemoryNearLimit`` compares the two; so does the default rule pack's alert of the same
name, from the figures the ops sampler (`convmon.monitor.selfwatch`) puts in each
``ops.sample``. What the figures should be is the memory model in deploy/README.md.
"""

from __future__ import annotations

import logging
from typing import Any, cast

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from convmon.monitor.redistarget import is_cluster

log = logging.getLogger(__name__)
_refusal_logged: list[bool] = []
"""Set once a refusal was logged (once per process)."""

STANDALONE_NODE = "primary"
"""The ``node`` label of a standalone or Sentinel-managed server."""


async def redis_memory(redis: Redis) -> dict[str, tuple[int, int]]:
    """node -> (used_memory, maxmemory) of every primary."""
    if is_cluster(redis):
        per_node: Any = await cast(RedisCluster, redis).info(
            "memory", target_nodes=RedisCluster.PRIMARIES
        )
        if "used_memory" in per_node:  # one primary: redis-py returns its reply as is
            per_node = {"cluster": per_node}
        return {str(name): _figures(info) for name, info in per_node.items()}
    return {STANDALONE_NODE: _figures(await redis.info("memory"))}


def _figures(info: Any) -> tuple[int, int]:
    return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))


async def redis_memory_metrics(redis: Redis) -> list[Metric]:
    used = GaugeMetricFamily(
        "convmon_redis_memory_bytes",
        "Memory Redis uses (used_memory), per primary.",
        labels=["node"],
    )
    limit = GaugeMetricFamily(
        "convmon_redis_maxmemory_bytes",
        "The maxmemory limit of each primary (0: none set).",
        labels=["node"],
    )
    try:
        figures = await redis_memory(redis)
    except ResponseError as exc:
        # A managed Redis may refuse INFO: /metrics goes on without these two families
        # (the ops sampler counts the refusals in convmon_ops_redis_memory_refused_total).
        if not _refusal_logged:
            _refusal_logged.append(True)
            log.warning("Redis refused INFO memory: no convmon_redis_memory_bytes",
                        extra={"error": str(exc)[:200]})
        return []
    for node, (used_bytes, max_bytes) in sorted(figures.items()):
        used.add_metric([node], float(used_bytes))
        limit.add_metric([node], float(max_bytes))
    return [used, limit]
