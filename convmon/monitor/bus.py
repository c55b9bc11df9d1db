"""The event bus: Redis Streams with at-least-once delivery and idempotent publishing.

In: events from collectors (`EventBus.publish`). Out: batches of decoded entries to a
handler in a consumer group (`StreamConsumer`).

The stream is partitioned into ``bus.shards`` streams, one per hash tag (see
`convmon.monitor.keys`), each event going to its source family's shard
(`convmon.monitor.shards`). Publishing runs one Lua script per shard of a batch that,
atomically: drops events whose id was seen within the dedupe TTL (so two collector
replicas, a restart or a backfill never publish a fact twice), appends the rest with
``XADD MAXLEN ~`` and trims the shard by time (``XTRIM MINID ~``, ``bus.retention_s``).
Every key the script touches is declared and shares the shard's tag, so it runs on Redis
Cluster. The collector's checkpoint is written after every shard took its events: a crash
in between leaves the checkpoint behind its events, never ahead, and the replay from the
older checkpoint is dropped by the dedupe markers. With ``bus.replica_acks``, each shard's
write is confirmed by that many replicas (``WAIT``) before the checkpoint moves on, so a
failover cannot lose a batch the collector believes published.

Consuming reads a consumer group on every shard in batches and acks only after the handler
returned. If the handler fails on a batch, each entry is retried alone so that one poison
entry does not hold back the others. Entries left pending by a consumer that died are reclaimed with
XAUTOCLAIM (following its cursor) once idle for ``claim_idle_ms``; an entry delivered more
than ``max_deliveries`` times, or that cannot be decoded, is moved to the dead-letter stream
and counted. Handlers must be idempotent: an entry can be delivered twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec
from prometheus_client import CollectorRegistry, Counter, Histogram
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.config import BusSettings
from convmon.monitor.durable import DurableScripts, durable_scripts
from convmon.monitor.events import Event, decode_event, encode_event
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import as_text
from convmon.monitor.shards import family_of, shard_of

log = logging.getLogger(__name__)

T = TypeVar("T")

TRIM_BY_TIME_LUA = """
-- Trim a stream by time (XTRIM MINID ~): entries older than retention_ms before the
-- server's clock go (in whole stream nodes).
local function trim_by_time(stream, retention_ms)
  local now = redis.call('TIME')
  local minid = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
                - tonumber(retention_ms)
  if minid > 0 then
    redis.call('XTRIM', stream, 'MINID', '~', string.format('%d', minid))
  end
end
"""
"""A Lua helper the scripts that append to a stream start with."""

_PUBLISH_LUA = TRIM_BY_TIME_LUA + """
-- KEYS[1] stream shard, KEYS[2..] the dedupe marker of each event (same hash tag)
-- ARGV: maxlen, retention ms, then (id, kind, data, dedupe ttl)* in KEYS order
local added = 0
for i = 3, #ARGV, 4 do
  if redis.call('SET', KEYS[2 + (i - 3) / 4], '1', 'NX', 'EX', ARGV[i + 3]) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',
               'id', ARGV[i], 'kind', ARGV[i + 1], 'data', ARGV[i + 2])
    added = added + 1
  end
end
if added > 0 then trim_by_time(KEYS[1], ARGV[2]) end
return added
"""


PRUNE_IDLE_MS = 24 * 3600 * 1000
DEAD_LETTER_MAXLEN = 100_000
"""Dead-letter streams are capped in length as well as trimmed by time
(``bus.dead_letter_retention_s``)."""


def retention_minid(retention_s: float, now: float | None = None) -> str:
    """The stream id below which entries are older than ``retention_s`` (for ``XTRIM
    MINID``; stream ids start with the Redis server's time in ms, close to ours)."""
    ms = int(((time.time() if now is None else now) - retention_s) * 1000)
    return f"{max(ms, 0)}-0"
NO_WAIT = -1
"""``block_ms`` for `StreamConsumer.step`: read what is there, do not wait for more."""
DEAD_LETTER_REASONS = ("max_deliveries", "undecodable")


class BusMetrics:
    """Process counters of the bus (per process; cluster-wide figures come from XINFO)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.published = Counter(
            "convmon_bus_published_events",
            "Events appended to the stream by this process.",
            registry=registry,
        )
        self.duplicates = Counter(
            "convmon_bus_duplicate_events",
            "Events dropped at publish because their id was already seen.",
            registry=registry,
        )
        self.consumed = Counter(
            "convmon_bus_consumed_entries",
            "Stream entries handled and acknowledged.",
            ["stream", "group"],
            registry=registry,
        )
        self.handler_errors = Counter(
            "convmon_bus_handler_errors",
            "Entries whose handler raised (they stay pending and are retried).",
            ["stream", "group"],
            registry=registry,
        )
        self.reclaimed = Counter(
            "convmon_bus_reclaimed_entries",
            "Entries reclaimed from idle consumers with XAUTOCLAIM.",
            ["stream", "group"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "convmon_bus_dead_letters",
            "Entries moved to a dead-letter stream (poison or undecodable).",
            ["stream", "group", "reason"],
            registry=registry,
        )
        self.trimmed = Counter(
            "convmon_bus_trimmed_unprocessed_entries",
            "Pending entries that were trimmed from the stream before being handled.",
            ["stream", "group"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "convmon_bus_batch_seconds",
            "Time to handle and acknowledge one batch.",
            ["stream", "group"],
            registry=registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )


class EventBus:
    """Publishes events to the event stream shards with dedupe, then the checkpoint."""

    def __init__(
        self, redis: Redis, keys: Keys, settings: BusSettings, metrics: BusMetrics
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.settings = settings
        self.metrics = metrics
        self._publish = redis.register_script(_PUBLISH_LUA)
        self._durable = durable_scripts(redis, settings)

    @property
    def durable(self) -> DurableScripts | None:
        """How state writers confirm their writes on replicas (``bus.replica_acks``), or
        None: the rule engine's aggregates and alert state go through it, so an event is
        acknowledged only after what it changed is on a replica."""
        return self._durable

    async def publish(
        self, events: Sequence[Event], *, checkpoint: tuple[str, str] | None = None
    ) -> int:
        """Publish ``events``, then store ``checkpoint = (source, value)``.

        Returns how many were new. Safe to call again with the same events (and that is
        what happens after a crash between the events and the checkpoint).
        """
        if not events and checkpoint is None:
            return 0
        by_shard: dict[int, list[Event]] = {}
        for ev in events:
            by_shard.setdefault(shard_of(ev.kind, self.settings), []).append(ev)
        added = 0
        for shard, batch in by_shard.items():
            added += await self._publish_shard(shard, batch)
        if checkpoint is not None:
            await self.redis.set(self.keys.checkpoint(checkpoint[0]), checkpoint[1])
        self.metrics.published.inc(added)
        self.metrics.duplicates.inc(len(events) - added)
        return added

    async def _publish_shard(self, shard: int, events: Sequence[Event]) -> int:
        keys = [self.keys.event_stream(shard)]
        args: list[Any] = [self.settings.maxlen, self.settings.retention_s * 1000]
        ttls = self.settings.family_dedupe_ttl_s
        for ev in events:
            keys.append(self.keys.dedupe(ev.id, shard))
            ttl = ttls.get(family_of(ev.kind), self.settings.dedupe_ttl_s)
            args.extend((ev.id, ev.kind, encode_event(ev), ttl))
        if self._durable is not None:
            return int(await self._durable.call(self._publish, keys, args))
        return int(await self._publish(keys=keys, args=args))

    async def get_checkpoint(self, source: str) -> str | None:
        value = await self.redis.get(self.keys.checkpoint(source))
        if value is None:
            return None
        return value.decode() if isinstance(value, bytes) else str(value)

    async def set_checkpoint(self, source: str, value: str) -> None:
        await self.publish((), checkpoint=(source, value))

    def consumer(
        self,
        group: str,
        name: str,
        handler: Callable[[Sequence[Delivery[Event]]], Awaitable[None]],
    ) -> ShardedConsumer:
        """A consumer of every event stream shard in ``group``."""
        return ShardedConsumer([
            StreamConsumer(
                self.redis,
                stream=self.keys.event_stream(shard),
                group=group,
                name=name,
                handler=handler,
                decode=decode_event,
                dead_stream=self.keys.event_dead(shard),
                settings=self.settings,
                metrics=self.metrics,
            )
            for shard in range(self.settings.shards)
        ])


@dataclass(frozen=True, slots=True)
class Delivery(Generic[T]):
    """One stream entry handed to a handler."""

    entry_id: str
    value: T
    deliveries: int
    """How many times this entry has been delivered (1 on first delivery)."""


class StreamConsumer(Generic[T]):
    """Reads one stream in a consumer group, at least once, with reclaim and dead letters.

    Any stream whose entries carry a ``data`` field can be consumed: events with
    `decode_event`, alert transitions with their decoder.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        stream: str,
        group: str,
        name: str,
        handler: Callable[[Sequence[Delivery[T]]], Awaitable[None]],
        decode: Callable[[bytes], T],
        settings: BusSettings,
        metrics: BusMetrics,
        batch: int | None = None,
        dead_stream: str,
        start_id: str = "0",
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.dead_stream = dead_stream
        self.group = group
        self.name = name
        self.handler = handler
        self.decode = decode
        self.settings = settings
        self.metrics = metrics
        self.batch = batch or settings.batch
        self.start_id = start_id
        self._claim_cursor = "0-0"
        self._own_cursor: str | None = "0"
        self._labels = (stream, group)
        # Series alerting rules increase() must exist from the start, at 0.
        for reason in DEAD_LETTER_REASONS:
            metrics.dead_letters.labels(stream, group, reason).inc(0)
        metrics.handler_errors.labels(*self._labels).inc(0)

    async def ensure_group(self) -> None:
        """Create the consumer group (and the stream) if missing, and forget consumers
        that are long gone (no pending entries, idle for ``PRUNE_IDLE_MS``)."""
        try:
            await self.redis.xgroup_create(self.stream, self.group, id=self.start_id, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await self.prune_consumers()

    async def prune_consumers(self, idle_ms: int = PRUNE_IDLE_MS) -> list[str]:
        """Delete consumers with nothing pending that have been idle longer than
        ``idle_ms`` (processes that were replaced, e.g. pods with new names). Entries a dead
        consumer still holds are first reclaimed by XAUTOCLAIM, then it is pruned."""
        consumers: Any = await self.redis.xinfo_consumers(self.stream, self.group)
        gone = []
        for c in consumers:
            name = as_text(c["name"])
            if name != self.name and int(c["pending"]) == 0 and int(c["idle"]) > idle_ms:
                await self.redis.xgroup_delconsumer(self.stream, self.group, name)
                gone.append(name)
        return gone

    async def run(self) -> None:
        """Consume until cancelled. Cancellation lets the in-flight batch finish and ack."""
        await self.ensure_group()
        while True:
            handled = await self.step()
            honour_cancellation()
            if handled == 0:
                await asyncio.sleep(0)

    async def step(self, block_ms: int | None = None) -> int:
        """One round: own pending entries (after a restart), reclaimed entries, then new
        ones (waiting up to ``block_ms`` for them; `NO_WAIT` does not wait). Returns how
        many entries were handled."""
        entries = await self._next_entries(self.settings.block_ms if block_ms is None else block_ms)
        if not entries:
            return 0
        task = asyncio.ensure_future(self._process(entries))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await task
            raise

    async def _next_entries(self, block_ms: int) -> list[tuple[str, dict[bytes, bytes], int]]:
        if self._own_cursor is not None:
            # One pass over entries left pending for this consumer name by a previous run.
            own = await self._read(self._own_cursor, block_ms=None)
            if own:
                self._own_cursor = own[-1][0]
                counts = await self._delivery_counts([e[0] for e in own])
                return [(eid, f, counts.get(eid, 2)) for eid, f in own]
            self._own_cursor = None
        claimed = await self._autoclaim()
        if claimed:
            return claimed
        fresh = await self._read(">", block_ms=block_ms if block_ms >= 0 else None)
        return [(eid, f, 1) for eid, f in fresh]

    async def _read(
        self, start: str, block_ms: int | None
    ) -> list[tuple[str, dict[bytes, bytes]]]:
        resp: Any = await self.redis.xreadgroup(
            self.group, self.name, {self.stream: start}, count=self.batch, block=block_ms
        )
        out: list[tuple[str, dict[bytes, bytes]]] = []
        for _stream, items in resp or ():
            for eid, fields in items:
                if not fields:  # trimmed while pending for us (nil on 6.2, {} on 7)
                    await self._ack([as_text(eid)])
                    self.metrics.trimmed.labels(*self._labels).inc()
                    continue
                out.append((as_text(eid), fields))
        return out

    async def _autoclaim(self) -> list[tuple[str, dict[bytes, bytes], int]]:
        resp = await self.redis.xautoclaim(
            self.stream,
            self.group,
            self.name,
            min_idle_time=self.settings.claim_idle_ms,
            start_id=self._claim_cursor,
            count=self.batch,
        )
        cursor, items = as_text(resp[0]), resp[1]
        deleted = resp[2] if len(resp) > 2 else []
        self._claim_cursor = cursor
        if deleted:
            await self._ack([as_text(d) for d in deleted])
            self.metrics.trimmed.labels(*self._labels).inc(len(deleted))
        entries = [(as_text(eid), fields) for eid, fields in items if eid is not None and fields]
        if len(entries) < len(items):
            # Redis 6.2 returns nil for claimed entries that were trimmed meanwhile (7.x
            # lists them in `deleted` and drops them itself): acknowledge them by looking
            # for our pending ids that no longer exist.
            await self._ack_vanished()
        if not entries:
            return []
        self.metrics.reclaimed.labels(*self._labels).inc(len(entries))
        counts = await self._delivery_counts([e[0] for e in entries])
        return [(eid, f, counts.get(eid, 2)) for eid, f in entries]

    async def _ack_vanished(self) -> None:
        rows: Any = await self.redis.xpending_range(
            self.stream, self.group, min="-", max="+", count=self.batch * 4,
            consumername=self.name,
        )
        ids = [as_text(r["message_id"]) for r in rows]
        if not ids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for eid in ids:
                pipe.xrange(self.stream, min=eid, max=eid, count=1)
            found = await pipe.execute()
        gone = [eid for eid, hit in zip(ids, found, strict=True) if not hit]
        if gone:
            await self._ack(gone)
            self.metrics.trimmed.labels(*self._labels).inc(len(gone))

    async def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        rows: Any = await self.redis.xpending_range(
            self.stream, self.group, min=ids[0], max=ids[-1], count=len(ids) + 1000,
            consumername=self.name,
        )
        return {as_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def _process(self, entries: list[tuple[str, dict[bytes, bytes], int]]) -> int:
        started = time.perf_counter()
        good: list[Delivery[T]] = []
        for eid, fields, count in entries:
            if count > self.settings.max_deliveries:
                await self._dead_letter(eid, fields, "max_deliveries", count)
                continue
            data = fields.get(b"data")
            try:
                if data is None:
                    raise ValueError("entry has no data field")
                value = self.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
                log.warning(
                    "undecodable stream entry",
                    extra={"stream": self.stream, "entry": eid, "error": str(exc)},
                )
                await self._dead_letter(eid, fields, "undecodable", count)
                continue
            good.append(Delivery(eid, value, count))
        if good:
            try:
                await self.handler(good)
                await self._ack([d.entry_id for d in good])
            except Exception:
                log.exception(
                    "batch handler failed; retrying entries one by one",
                    extra={"stream": self.stream, "group": self.group, "size": len(good)},
                )
                for d in good:
                    try:
                        await self.handler([d])
                    except Exception as exc:
                        self.metrics.handler_errors.labels(*self._labels).inc()
                        log.warning(
                            "handler failed; entry stays pending",
                            extra={"entry": d.entry_id, "deliveries": d.deliveries,
                                   "error": repr(exc)},
                        )
                        continue
                    await self._ack([d.entry_id])
        self.metrics.batch_seconds.labels(*self._labels).observe(time.perf_counter() - started)
        self.metrics.consumed.labels(*self._labels).inc(len(good))
        return len(entries)

    async def _ack(self, ids: list[str]) -> None:
        if ids:
            await self.redis.xack(self.stream, self.group, *ids)

    async def _dead_letter(
        self, eid: str, fields: dict[bytes, bytes], reason: str, deliveries: int
    ) -> None:
        record: dict[Any, Any] = dict(fields)
        record.update(
            {b"entry_id": eid, b"group": self.group, b"reason": reason,
             b"deliveries": str(deliveries)}
        )
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(self.dead_stream, record, maxlen=DEAD_LETTER_MAXLEN, approximate=True)
            pipe.xtrim(self.dead_stream, minid=retention_minid(
                self.settings.dead_letter_retention_s), approximate=True)
            pipe.xack(self.stream, self.group, eid)
            await pipe.execute()
        self.metrics.dead_letters.labels(self.stream, self.group, reason).inc()
        log.error(
            "entry moved to dead-letter stream",
            extra={"stream": self.stream, "group": self.group, "entry": eid, "reason": reason,
                   "deliveries": deliveries},
        )



class ShardedConsumer:
    """One consumer group member on every event stream shard: each shard keeps its own
    pending list, reclaim cursor and dead letters (a `StreamConsumer` per shard). Shards
    are read concurrently, but one process handles one batch at a time (as with a single
    stream): concurrency between batches is the business of several processes, which the
    handlers' compare-and-set state is built for, not of one process's shared objects."""

    def __init__(self, parts: list[StreamConsumer[Event]]) -> None:
        if not parts:
            raise ValueError("a sharded consumer needs at least one shard")
        self.parts = parts
        self._turn = asyncio.Lock()
        self._handler = parts[0].handler
        self.handler = parts[0].handler

    @property
    def handler(self) -> Callable[[Sequence[Delivery[Event]]], Awaitable[None]]:
        return self._handler

    @handler.setter
    def handler(self, value: Callable[[Sequence[Delivery[Event]]], Awaitable[None]]) -> None:
        self._handler = value
        if len(self.parts) == 1:
            self.parts[0].handler = value
            return

        async def one_at_a_time(batch: Sequence[Delivery[Event]]) -> None:
            async with self._turn:
                await value(batch)

        for part in self.parts:
            part.handler = one_at_a_time

    async def ensure_group(self) -> None:
        for part in self.parts:
            await part.ensure_group()

    async def prune_consumers(self, idle_ms: int = PRUNE_IDLE_MS) -> list[str]:
        gone: list[str] = []
        for part in self.parts:
            gone.extend(name for name in await part.prune_consumers(idle_ms)
                        if name not in gone)
        return gone

    async def run(self) -> None:
        """Consume every shard until cancelled (each with `StreamConsumer.run`). The first
        shard to fail stops the others and its error is raised as it is."""
        if len(self.parts) == 1:
            await self.parts[0].run()
            return
        try:
            async with asyncio.TaskGroup() as group:
                for part in self.parts:
                    group.create_task(part.run())
        except ExceptionGroup as failed:
            first: BaseException = failed
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from failed

    async def step(self, block_ms: int | None = None) -> int:
        """One round on every shard; returns how many entries were handled."""
        if len(self.parts) == 1:
            return await self.parts[0].step(block_ms)
        counts = await asyncio.gather(*(part.step(block_ms) for part in self.parts))
        return sum(counts)
