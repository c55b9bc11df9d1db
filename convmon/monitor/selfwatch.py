"""The monitor watches itself: an `OpsSampler` turns convmon's own state into events.

In: what every process leaves in Redis — heartbeat hashes (they carry a TTL and vanish
when their process dies) with the state of each supervised component, the collectors'
status hashes and liveness keys, the consumer groups of the ``events`` and ``alerts``
streams, the dead-letter streams and the memory of every Redis primary (``INFO memory``).
Out: one ``ops.sample`` event per sampling interval on the bus, and a ``collector.status``
disconnect for each collector whose status still says connected although its liveness key
expired.

Why events: the rule engine only sees the bus, so "a component is down", "a consumer
group falls behind", "entries are being dead-lettered" or "Redis is near its maxmemory"
become rules of the default pack
like any other (``convmon/rules/pack/ops.yaml``), with the same routing, silences and
notification log as every other alert.

Several replicas may run a sampler. Each publishes its sample under the id
``ops:sample:<interval start in ms>``, which the bus dedupes, so the stream carries one
sample per interval between them. A collector whose liveness expired is flipped to
disconnected in its status hash with a compare-and-set on the hash's ``since`` (a collector
that reconnected meanwhile keeps its state); only the replica whose flip succeeded
publishes the event, under an id derived from that ``since``, so it is published once. If
the liveness key comes back (the process was only slow to refresh it), the flip is undone
the same way, so the status never stays wrong.
"""

from __future__ import annotations

import json
import logging
import math
import weakref
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.events import (
    CollectorStatus,
    Event,
    OpsComponent,
    OpsGroup,
    OpsProcess,
    OpsRedisMemory,
    OpsSample,
)
from convmon.monitor.plugins import Runtime
from convmon.monitor.redisconn import as_text
from convmon.monitor.redismemory import redis_memory
from convmon.monitor.shards import event_stream_labels

log = logging.getLogger(__name__)

EXPIRED_DETAIL = "heartbeat expired"
RESUMED_DETAIL = "heartbeat resumed"
ERROR_TEXT_MAX = 200
"""Characters of a component's last error kept in a sample (the full text is in
``/api/v1/status``)."""

# Flip a collector's state only if nobody changed its status since it was read: a
# collector that reconnected or disconnected meanwhile (new ``since``) keeps its state.
_FLIP_LUA = """
-- KEYS[1] collector status hash; ARGV: connected as read, since as read, new connected,
-- now, detail
if (redis.call('HGET', KEYS[1], 'connected') or '') ~= ARGV[1] then return 0 end
if (redis.call('HGET', KEYS[1], 'since') or '') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'connected', ARGV[3], 'since', ARGV[4], 'updated_at', ARGV[4],
           'detail', ARGV[5])
return 1
"""


# One counter per registry (a registry refuses a second metric of the same name, and a
# process may build more than one sampler).
_REFUSED: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def _refused_counter(registry: CollectorRegistry) -> Counter:
    if registry not in _REFUSED:
        _REFUSED[registry] = Counter(
            "convmon_ops_redis_memory_refused",
            "Ops samples taken without Redis memory because Redis refused INFO (some "
            "managed offerings restrict it): RedisMemoryNearLimit cannot fire meanwhile.",
            registry=registry,
        )
    return _REFUSED[registry]


def _float(value: Any) -> float | None:
    try:
        number = float(as_text(value))
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _id_ms(entry_id: str) -> int | None:
    """The millisecond part of a stream entry id (``0-0`` and garbage give None)."""
    head = entry_id.split("-", 1)[0]
    return int(head) if head.isdigit() and int(head) > 0 else None


class OpsSampler:
    """Samples convmon's own state every ``interval_s`` and publishes it as ``ops.sample``.

    Belongs with the rule engine (any role may run it; replicas share the work through the
    bus's dedupe). ``run`` loops until cancelled and raises on any failure.
    """

    name = "ops-sampler"

    def __init__(self, runtime: Runtime, interval_s: float = 15.0) -> None:
        if not math.isfinite(interval_s) or interval_s < 1.0:
            raise ValueError(f"interval_s must be a finite number >= 1, not {interval_s!r}")
        self.rt = runtime
        self.interval_s = float(interval_s)
        self._flip = runtime.redis.register_script(_FLIP_LUA)
        self._memory_refused = _refused_counter(runtime.metrics)
        self._memory_refusal_logged = False

    async def run(self) -> None:
        clock = self.rt.clock
        while True:
            await self.sample()
            honour_cancellation()
            now = clock.now()
            next_start = (math.floor(now / self.interval_s) + 1) * self.interval_s
            await clock.sleep(next_start - now)

    async def sample(self) -> Event:
        """Take one sample: expire collectors whose liveness key is gone, then publish the
        ``ops.sample`` of the current interval. Returns the sample (published, or dropped
        by the bus because another replica sampled this interval first)."""
        now = self.rt.clock.now()
        redis_ms = await self._redis_ms()
        await self.expire_collectors(now)
        processes, components = await self._processes()
        groups = await self._groups(redis_ms)
        dead = await self._dead_letters()
        memory = await self._redis_memory()
        start_ms = round(math.floor(now / self.interval_s) * self.interval_s * 1000)
        event = Event(
            id=f"ops:sample:{start_ms}",
            chain="convmon",
            source=f"ops/{self.rt.instance}",
            observed_at=now,
            occurred_at=now,
            position=int(now * 1000),
            payload=OpsSample(
                interval_s=self.interval_s,
                processes=processes,
                components=components,
                groups=groups,
                dead_letters=dead,
                redis=memory,
            ),
        )
        await self.rt.bus.publish([event])
        return event

    async def _redis_ms(self) -> int:
        """The Redis server's clock: stream entry ids are stamped with it."""
        sec, usec = await self.rt.redis.time()
        return int(sec) * 1000 + int(usec) // 1000

    async def _redis_memory(self) -> list[OpsRedisMemory]:
        """used_memory and maxmemory of every primary; none when Redis refuses ``INFO``
        (counted on every sample, logged once per sampler)."""
        try:
            figures = await redis_memory(self.rt.redis)
        except ResponseError as exc:
            self._memory_refused.inc()
            if not self._memory_refusal_logged:
                self._memory_refusal_logged = True
                log.warning(
                    "Redis refuses INFO: ops samples carry no Redis memory, so the "
                    "RedisMemoryNearLimit rule cannot fire (counted in "
                    "convmon_ops_redis_memory_refused_total)",
                    extra={"error": str(exc)[:ERROR_TEXT_MAX]},
                )
            return []
        return [OpsRedisMemory(node=node, used_memory=used, maxmemory=limit)
                for node, (used, limit) in sorted(figures.items())]

    async def _processes(self) -> tuple[list[OpsProcess], list[OpsComponent]]:
        redis, keys = self.rt.redis, self.rt.keys
        found = sorted([as_text(k) async for k in redis.scan_iter(match=keys.heartbeat_pattern,
                                                               count=500)])
        if not found:
            return [], []
        async with redis.pipeline(transaction=False) as pipe:
            for key in found:
                pipe.hgetall(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        processes: list[OpsProcess] = []
        components: list[OpsComponent] = []
        prefix = keys.heartbeat("")
        for key, raw, pttl in zip(found, replies[::2], replies[1::2], strict=True):
            if not raw:
                continue  # expired between SCAN and HGETALL
            hb = {as_text(k): as_text(v) for k, v in raw.items()}
            instance = hb.get("instance") or key[len(prefix):]
            ttl_ms = int(pttl)
            processes.append(OpsProcess(
                instance=instance,
                roles=sorted(r for r in hb.get("roles", "").split(",") if r),
                updated_at=_float(hb.get("updated_at")),
                ttl_s=ttl_ms / 1000 if ttl_ms >= 0 else None,
                stopping=hb.get("stopping") in ("1", "true"),
            ))
            components.extend(self._components(instance, hb.get("components", "")))
        return processes, components

    @staticmethod
    def _components(instance: str, text: str) -> list[OpsComponent]:
        try:
            items = json.loads(text) if text else []
        except ValueError:
            log.warning("unreadable component list in a heartbeat",
                        extra={"instance": instance})
            return []
        out: list[OpsComponent] = []
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict) or not item.get("name"):
                continue
            state = str(item.get("state", ""))
            up = item.get("up")
            restarts = item.get("restarts")
            out.append(OpsComponent(
                instance=instance,
                name=str(item["name"]),
                role=str(item.get("role") or ""),
                state=state,
                up=up if isinstance(up, bool) else state == "running",
                restarts=restarts if isinstance(restarts, int) else 0,
                last_error=str(item.get("last_error") or "")[:ERROR_TEXT_MAX],
                since=_float(item.get("since")),
            ))
        return out

    async def expire_collectors(self, now: float) -> list[str]:
        """Make each collector's status agree with its liveness key: connected without the
        key (its process died or its task stopped) becomes disconnected, and a collector
        this sampler had so expired becomes connected again when the key is back. Publishes
        the ``collector.status`` event of each change; returns the collectors this call
        changed."""
        redis, keys = self.rt.redis, self.rt.keys
        names = sorted(as_text(n) for n in await redis.smembers(keys.collectors))
        if not names:
            return []
        async with redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hmget(keys.collector_status(name), "connected", "since", "detail")
                pipe.exists(keys.collector_live(name))
            replies = await pipe.execute()
        changed: list[str] = []
        for name, status, live in zip(names, replies[::2], replies[1::2], strict=True):
            connected, since, detail = (as_text(v) for v in status)
            if connected == "1" and not live:
                up, why = False, EXPIRED_DETAIL
            elif connected == "0" and live and detail == EXPIRED_DETAIL:
                up, why = True, RESUMED_DETAIL
            else:
                continue
            if not await self._flip(keys=[keys.collector_status(name)],
                                    args=[connected, since, int(up), repr(now), why]):
                continue
            changed.append(name)
            await self._publish_status(name, up, why, since, now)
            log.warning("collector liveness expired" if not up else "collector liveness resumed",
                        extra={"collector": name, "since": since})
        return changed

    async def _publish_status(
        self, name: str, up: bool, detail: str, since: str, now: float
    ) -> None:
        await self.rt.bus.publish([
            Event(
                id=f"collector:{name}:{'resumed' if up else 'expired'}:{since or 'unknown'}",
                chain="convmon",
                source=f"ops/{self.rt.instance}",
                observed_at=now,
                occurred_at=now,
                position=int(now * 1000),
                payload=CollectorStatus(collector=name, connected=up, detail=detail),
            )
        ])

    async def _groups(self, redis_ms: int) -> list[OpsGroup]:
        keys = self.rt.keys
        out: list[OpsGroup] = []
        shards = event_stream_labels(keys, self.rt.settings.bus.shards)
        for stream, label in [(s, label) for s, _d, label in shards] + [(keys.alerts, "alerts")]:
            out.extend(await _stream_groups(self.rt.redis, stream, label, redis_ms))
        return out

    async def _dead_letters(self) -> dict[str, int]:
        """Dead-letter lengths: ``events`` sums every shard's, ``alerts`` the outbox's."""
        keys = self.rt.keys
        dead = keys.event_dead_streams(self.rt.settings.bus.shards)
        async with self.rt.redis.pipeline(transaction=False) as pipe:
            for stream in dead:
                pipe.xlen(stream)
            pipe.xlen(keys.alerts_dead)
            *events, alerts = await pipe.execute()
        return {"events": sum(int(n) for n in events), "alerts": int(alerts)}


async def _stream_groups(redis: Redis, stream: str, label: str, redis_ms: int) -> list[OpsGroup]:
    """The consumer groups of one stream; none when the stream does not exist yet."""
    try:
        groups: Any = await redis.xinfo_groups(stream)
        info: Any = await redis.xinfo_stream(stream)
    except ResponseError:
        return []
    newest = _id_ms(as_text(info.get("last-generated-id")))
    first = info.get("first-entry")
    oldest_entry = _id_ms(as_text(first[0])) if first else None
    out: list[OpsGroup] = []
    for g in groups:
        name = as_text(g.get("name"))
        pending = int(g.get("pending") or 0)
        raw_lag = g.get("lag")
        delivered = _id_ms(as_text(g.get("last-delivered-id")))
        # A group that never delivered anything is behind by everything in the stream.
        since = delivered if delivered is not None else oldest_entry
        behind_ms = max(0, newest - since) if newest is not None and since is not None else 0
        oldest: float | None = None
        if pending:
            summary: Any = await redis.xpending(stream, name)
            first_pending = _id_ms(as_text(summary.get("min")))
            if first_pending is not None:
                oldest = max(0.0, (redis_ms - first_pending) / 1000)
        out.append(OpsGroup(
            stream=label,
            group=name,
            consumers=int(g.get("consumers") or 0),
            pending=pending,
            lag=int(raw_lag) if raw_lag is not None else None,
            behind_s=behind_ms / 1000,
            oldest_pending_s=oldest,
        ))
    return out
