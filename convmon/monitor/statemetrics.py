"""Core gauges computed from Redis at scrape time: collector health, stream backlog,
process heartbeats. Every replica serving ``/metrics`` reports the same values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import as_text
from convmon.monitor.redismemory import redis_memory_metrics
from convmon.monitor.shards import event_stream_labels


async def collector_statuses(redis: Redis, keys: Keys) -> dict[str, dict[str, str]]:
    """Every collector's status hash, plus ``up``: "1" while its liveness key exists (a
    live process holds it connected), "0" otherwise, whatever the hash last said."""
    names = sorted(as_text(n) for n in await redis.smembers(keys.collectors))
    out: dict[str, dict[str, str]] = {}
    if not names:
        return out
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.hgetall(keys.collector_status(name))
            pipe.exists(keys.collector_live(name))
        rows = await pipe.execute()
    for i, name in enumerate(names):
        row, live = rows[2 * i], rows[2 * i + 1]
        out[name] = {as_text(k): as_text(v) for k, v in row.items()}
        out[name]["up"] = "1" if live else "0"
    return out


async def heartbeats(redis: Redis, keys: Keys) -> list[dict[str, str]]:
    found = [k async for k in redis.scan_iter(match=keys.heartbeat_pattern, count=500)]
    if not found:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for k in found:
            pipe.hgetall(k)
        rows = await pipe.execute()
    return [{as_text(k): as_text(v) for k, v in row.items()} for row in rows if row]


async def core_state_metrics(redis: Redis, keys: Keys, shards: int = 1) -> Iterable[Metric]:
    up = GaugeMetricFamily(
        "convmon_collector_up",
        "1 while a live convmon process holds the collector connected to its source "
        "(a heartbeat with a TTL, not a flag).",
        labels=["collector"],
    )
    last = GaugeMetricFamily(
        "convmon_collector_last_event_timestamp_seconds",
        "When the collector last processed an event.",
        labels=["collector"],
    )
    for name, st in (await collector_statuses(redis, keys)).items():
        up.add_metric([name], float(st["up"] == "1"))
        if st.get("last_event_at"):
            last.add_metric([name], float(st["last_event_at"]))

    length = GaugeMetricFamily(
        "convmon_bus_stream_length", "Entries in a stream.", labels=["stream"]
    )
    pending = GaugeMetricFamily(
        "convmon_bus_group_pending",
        "Entries delivered to a consumer group and not yet acknowledged.",
        labels=["stream", "group"],
    )
    lag = GaugeMetricFamily(
        "convmon_bus_group_lag",
        "Entries not yet delivered to a consumer group (Redis >= 7).",
        labels=["stream", "group"],
    )
    watched = [(stream, label) for stream, _dead, label in event_stream_labels(keys, shards)]
    watched += [(keys.alerts, "alerts")]
    watched += [(dead, f"{label}_dead") for _stream, dead, label in
                event_stream_labels(keys, shards)]
    watched += [(keys.alerts_dead, "alerts_dead")]
    for stream, label in watched:
        length.add_metric([label], float(await redis.xlen(stream)))
        try:
            groups = await redis.xinfo_groups(stream)
        except ResponseError:
            continue
        for g in groups:
            name = as_text(g.get("name"))
            pending.add_metric([label, name], float(g.get("pending") or 0))
            if g.get("lag") is not None:
                lag.add_metric([label, name], float(g["lag"]))

    beat = GaugeMetricFamily(
        "convmon_process_heartbeat_timestamp_seconds",
        "Last heartbeat of each live convmon process.",
        labels=["process", "role"],
    )
    for hb in await heartbeats(redis, keys):
        for role in (hb.get("roles") or "").split(","):
            if role:
                beat.add_metric([hb.get("instance", ""), role], float(hb.get("updated_at", 0)))

    active = await redis.hvals(keys.active_alerts)
    counts = {"pending": 0, "firing": 0}
    for raw in active:
        try:
            state = json.loads(raw).get("state")
        except ValueError:
            continue
        if state in counts:
            counts[state] += 1
    alerts = GaugeMetricFamily("convmon_alerts", "Active alert instances by state.",
                               labels=["state"])
    for state, n in counts.items():
        alerts.add_metric([state], float(n))
    return [up, last, length, pending, lag, beat, alerts, *await redis_memory_metrics(redis)]
