"""``convmon bus reshard``: move the event bus to the ``bus`` settings of the configuration.

In: a Redis whose recorded bus layout (`convmon.monitor.buslayout`) is not the configured
one. Out: the same Redis laid out as configured, every step safe to repeat:

1. Refuse (`ReshardRefused`, exit 2) while a live process with the ``collectors`` or
   ``rules`` role has a heartbeat: collectors would publish to the old streams, workers
   would read only those. ``force`` skips this (e.g. to let rules workers still running
   on the old settings drain the old shards while this waits; the collectors must be
   stopped).
2. Wait until every consumer group on every old shard has nothing pending and nothing
   left to deliver; on timeout report what is left (`NotDrained`, exit 1). An event still
   in an old stream when its family moves would be read after the events published to the
   new stream, or not at all once that stream is no longer read.
3. Copy the dedupe markers. A marker does not record its event's family, so every marker
   of an old shard ``k`` is copied to each new shard that receives a family from ``k``,
   with its remaining TTL (``SET NX``: a marker already there is kept). The markers are
   found by SCAN on every node (every primary of a cluster): a collector replaying after
   the change then still finds them and publishes nothing twice.
4. Create the consumer groups found on the old shards on every new shard stream: a new
   stream's groups start at its beginning, so nothing published before a worker first
   starts is skipped (an existing stream's, from an older layout, at its end: those
   entries are older than this change).
5. Record the new layout: only now do daemons configured with it start.

Interrupted anywhere, running it again redoes the steps (copies and group creations are
no-ops when done) and finishes; run on a Redis already laid out as configured it changes
nothing.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, cast

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from convmon.monitor.buslayout import BusLayout, record_layout, recorded_layout
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import as_text
from convmon.monitor.redistarget import is_cluster
from convmon.monitor.statemetrics import heartbeats

log = logging.getLogger(__name__)

ACTIVE_ROLES = ("collectors", "rules")
"""Roles whose processes publish events or read the event streams."""
MAX_SHARDS = 64
"""The most shards ``bus.shards`` allows: where streams of any layout may be."""
SCAN_COUNT = 1000
BATCH = 500
UNDELIVERED_SHOWN = 1000
"""Entries left to deliver are counted up to this (the report says "at least")."""


class ReshardRefused(RuntimeError):
    """Resharding now would lose or double events (the CLI exits 2)."""


@dataclass(frozen=True)
class GroupBacklog:
    """What a consumer group still has to do on an old shard."""

    stream: str
    group: str
    pending: int
    """Delivered and not acknowledged."""
    undelivered: int
    """Entries after the group's last delivered one (counted up to `UNDELIVERED_SHOWN`)."""

    def describe(self) -> str:
        more = "+" if self.undelivered >= UNDELIVERED_SHOWN else ""
        return (f"{self.stream}, group {self.group}: {self.pending} pending, "
                f"{self.undelivered}{more} not yet delivered")


class NotDrained(RuntimeError):
    """The consumer groups of the old shards still had work when the wait ended."""

    def __init__(self, left: list[GroupBacklog], timeout_s: float) -> None:
        self.left = left
        super().__init__(
            f"the consumer groups of the old shards did not drain within {timeout_s:g} s: "
            + "; ".join(b.describe() for b in left)
        )


@dataclass
class ReshardReport:
    old: BusLayout | None
    new: BusLayout
    changed: bool = False
    """False when the Redis already held the configured layout (or held no events)."""
    moves: dict[int, list[int]] = field(default_factory=dict)
    markers_found: int = 0
    markers_copied: int = 0
    groups_created: list[tuple[str, str]] = field(default_factory=list)
    """(stream, group) created on the new shards."""
    stranded_dead_letters: dict[str, int] = field(default_factory=dict)
    """Dead-letter streams of shards the new layout no longer has, with their length: no
    ``convmon deadletters`` command reads them any more."""
    other_processes: list[str] = field(default_factory=list)
    """Live processes of other roles (their ops samplers still publish with the old
    settings until they restart)."""


async def reshard(
    redis: Redis, keys: Keys, new: BusLayout, *, force: bool = False,
    timeout_s: float = 60.0, poll_s: float = 0.5,
    progress: Callable[[str], None] | None = None,
) -> ReshardReport:
    """Move the bus of ``keys.prefix`` to ``new`` (see the module docstring). Raises
    `ReshardRefused` or `NotDrained`; returns what was done."""
    say = progress or (lambda _text: None)
    old = await recorded_layout(redis, keys)
    report = ReshardReport(old=old, new=new)
    if old == new:
        say(f"the bus is already laid out with {new.describe()}: nothing to do")
        return report
    if old is None:
        written = await _existing_streams(redis, keys)
        if written:
            raise ReshardRefused(
                "no bus layout is recorded in this Redis (key prefix "
                f"{keys.prefix}), yet it holds event streams of shards "
                f"{', '.join(map(str, written))}: the settings they were written with are "
                "unknown. Start convmon once with those settings (it records them), stop "
                "it, then change bus.shards and run this again"
            )
        await record_layout(redis, keys, new)
        report.changed = True
        say(f"no events yet: recorded {new.describe()}")
        return report

    deadline = time.monotonic() + max(0.0, timeout_s)
    if not force:
        await _refuse_while_running(redis, keys, deadline, poll_s, say)
    live = await live_processes(redis, keys)
    report.other_processes = [p.instance for p in live if not p.active]

    say(f"waiting until the consumer groups of {old.shards} old shard(s) have drained")
    left = await wait_drained(redis, keys, old.shards, deadline - time.monotonic(), poll_s)
    if left:
        raise NotDrained(left, timeout_s)

    report.moves = old.moves(new)
    for source, targets in report.moves.items():
        found, copied = await copy_markers(redis, keys, source, targets)
        report.markers_found += found
        report.markers_copied += copied
        say(f"shard {source}: copied its {found} dedupe markers to shard(s) "
            f"{', '.join(map(str, targets))} ({copied} written, the others were there "
            "or expired)")

    groups = await group_names(redis, keys, old.shards)
    report.groups_created = await create_groups(redis, keys, groups, new.shards)
    for stream, group in report.groups_created:
        say(f"created consumer group {group} on {stream}")

    for k in range(new.shards, old.shards):
        length = int(await redis.xlen(keys.event_dead(k)))
        if length:
            report.stranded_dead_letters[keys.event_dead(k)] = length

    await record_layout(redis, keys, new)
    report.changed = True
    say(f"recorded {new.describe()}")
    log.info("event bus resharded", extra={
        "from": old.describe(), "to": new.describe(), "markers_copied": report.markers_copied,
        "groups_created": len(report.groups_created)})
    return report


# --- who is running ---------------------------------------------------------------------

@dataclass(frozen=True)
class LiveProcess:
    instance: str
    roles: tuple[str, ...]
    host: str = ""
    stopping: bool = False

    @property
    def active(self) -> bool:
        """It publishes events or reads the event streams."""
        return bool(set(self.roles) & set(ACTIVE_ROLES))

    def describe(self) -> str:
        where = f" on {self.host}" if self.host else ""
        state = ", stopping" if self.stopping else ""
        return f"{self.instance}{where} (roles {','.join(self.roles) or 'none'}{state})"


async def live_processes(redis: Redis, keys: Keys) -> list[LiveProcess]:
    """Every process whose heartbeat has not expired (one that is stopping included: it
    may still be handling its last batch)."""
    out = []
    for beat in await heartbeats(redis, keys):
        roles = tuple(sorted(r for r in beat.get("roles", "").split(",") if r))
        out.append(LiveProcess(beat.get("instance", "?"), roles, beat.get("host", ""),
                               beat.get("stopping") == "1"))
    return sorted(out, key=lambda p: p.instance)


async def _refuse_while_running(redis: Redis, keys: Keys, deadline: float, poll_s: float,
                                say: Callable[[str], None]) -> None:
    """Raise `ReshardRefused` while an active process runs. Processes that said they are
    stopping (a clean stop leaves the heartbeat to expire) are waited for until
    ``deadline``."""
    announced = False
    while True:
        active = [p for p in await live_processes(redis, keys) if p.active]
        running = [p for p in active if not p.stopping]
        if not active:
            return
        if running or time.monotonic() >= deadline:
            raise ReshardRefused(
                "convmon processes that publish or read events are running: "
                + ", ".join(p.describe() for p in active)
                + ". Stop them first (a stopped process's heartbeat expires within "
                "supervisor.heartbeat_ttl_s), or pass --force if they are rules workers "
                "left to drain the old shards while the collectors are stopped"
            )
        if not announced:
            say("waiting for stopping processes to go: "
                + ", ".join(p.describe() for p in active))
            announced = True
        await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


# --- draining ---------------------------------------------------------------------------

async def _stream_groups(redis: Redis, stream: str) -> list[dict[str, Any]]:
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except ResponseError:  # no such stream
        return []
    return [{as_text(k): v for k, v in g.items()} for g in groups]


async def backlog(redis: Redis, keys: Keys, shards: int) -> list[GroupBacklog]:
    """The consumer groups of shards ``0..shards-1`` that have entries pending or not yet
    delivered. Entries after the last delivered id are looked up (``XRANGE``), not taken
    from the group's ``lag``: Redis 6.2 has none, and it cannot tell after a trim."""
    out = []
    for k in range(shards):
        stream = keys.event_stream(k)
        for g in await _stream_groups(redis, stream):
            last = as_text(g.get("last-delivered-id")) or "0-0"
            after: Any = await redis.xrange(stream, min=f"({last}", max="+",
                                            count=UNDELIVERED_SHOWN)
            pending = int(g.get("pending") or 0)
            if pending or after:
                out.append(GroupBacklog(stream, as_text(g.get("name")), pending, len(after)))
    return out


async def wait_drained(redis: Redis, keys: Keys, shards: int, timeout_s: float,
                       poll_s: float = 0.5) -> list[GroupBacklog]:
    """Wait until no group of shards ``0..shards-1`` has work left; returns what is left
    when ``timeout_s`` ran out (nothing when drained)."""
    deadline = time.monotonic() + max(0.0, timeout_s)
    while True:
        left = await backlog(redis, keys, shards)
        if not left or time.monotonic() >= deadline:
            return left
        await asyncio.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))


async def group_names(redis: Redis, keys: Keys, shards: int) -> list[str]:
    names: set[str] = set()
    for k in range(shards):
        names.update(as_text(g.get("name")) for g in await _stream_groups(
            redis, keys.event_stream(k)))
    return sorted(names)


async def create_groups(redis: Redis, keys: Keys, groups: list[str],
                        shards: int) -> list[tuple[str, str]]:
    """Create each group on every shard stream that lacks it; returns those created."""
    created = []
    for k in range(shards):
        stream = keys.event_stream(k)
        # A stream created here starts empty: its groups read it from the start. One left
        # from an older layout holds only entries older than this change: skip them.
        start = "$" if await redis.exists(stream) else "0"
        for group in groups:
            try:
                await redis.xgroup_create(stream, group, id=start, mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
                continue
            created.append((stream, group))
    return created


async def _existing_streams(redis: Redis, keys: Keys) -> list[int]:
    async with redis.pipeline(transaction=False) as pipe:
        for k in range(MAX_SHARDS):
            pipe.exists(keys.event_stream(k))
        found = await pipe.execute()
    return [k for k, n in enumerate(found) if n]


# --- dedupe markers ---------------------------------------------------------------------

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _glob_literal(text: str) -> str:
    return _GLOB_SPECIAL.sub(r"\\\1", text)


async def scan_keys(redis: Redis, pattern: str) -> AsyncIterator[str]:
    """Keys matching ``pattern``, by SCAN on every node: the server itself, or each primary
    of a cluster (a key lives on one primary; replicas hold copies)."""
    if not is_cluster(redis):
        async for key in redis.scan_iter(match=pattern, count=SCAN_COUNT):
            yield as_text(key)
        return
    cluster = cast(RedisCluster, redis)
    for node in cluster.get_primaries():
        cursor = 0
        while True:
            # One target node: redis-py answers ({node name: cursor}, keys).
            reply: Any = await cluster.scan(cursor, match=pattern, count=SCAN_COUNT,
                                            target_nodes=node)
            cursors, found = reply
            for key in found:
                yield as_text(key)
            cursor = int(cursors[node.name])
            if cursor == 0:
                break


async def copy_markers(redis: Redis, keys: Keys, source: int,
                       targets: list[int]) -> tuple[int, int]:
    """Copy every dedupe marker of shard ``source`` to each shard of ``targets`` with its
    remaining TTL, keeping markers already there. Returns (markers found, copies made)."""
    head = keys.dedupe("", source)
    found = copied = 0
    batch: list[str] = []

    async def flush() -> int:
        async with redis.pipeline(transaction=False) as pipe:
            for key in batch:
                pipe.get(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        async with redis.pipeline(transaction=False) as pipe:
            writes = 0
            for key, value, ttl_ms in zip(batch, replies[::2], replies[1::2], strict=True):
                if value is None or (int(ttl_ms) <= 0 and int(ttl_ms) != -1):
                    continue  # expired since SCAN saw it
                event_id = key[len(head):]
                px = int(ttl_ms) if int(ttl_ms) > 0 else None  # -1: it has no TTL
                for target in targets:
                    pipe.set(keys.dedupe(event_id, target), value, nx=True, px=px)
                    writes += 1
            results = await pipe.execute() if writes else []
        batch.clear()
        return sum(1 for r in results if r)

    async for key in scan_keys(redis, _glob_literal(head) + "*"):
        found += 1
        batch.append(key)
        if len(batch) >= BATCH:
            copied += await flush()
    if batch:
        copied += await flush()
    return found, copied
