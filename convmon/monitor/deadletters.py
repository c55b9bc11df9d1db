"""Dead letters: list them, and put them back on their stream once the cause is fixed.

A stream entry that could not be handled ``bus.max_deliveries`` times (a handler bug, a
dependency down for minutes) is moved to ``<stream>:dead`` so it stops blocking others.
``convmon deadletters redrive`` appends it to its stream again; that is safe because
every consumer is idempotent (entries carry their event or transition id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import as_text

_META = (b"entry_id", b"group", b"reason", b"deliveries")


@dataclass(frozen=True)
class DeadLetter:
    dead_id: str
    entry_id: str
    group: str
    reason: str
    deliveries: int
    kind: str
    item_id: str


def streams(keys: Keys, shards: int = 1) -> dict[str, list[tuple[str, str]]]:
    """Name → every (stream, its dead-letter stream) pair: ``events`` has one per shard."""
    return {
        "events": [(keys.event_stream(k), keys.event_dead(k)) for k in range(shards)],
        "alerts": [(keys.alerts, keys.alerts_dead)],
    }


async def list_dead(
    redis: Redis, keys: Keys, name: str, count: int = 100, shards: int = 1
) -> list[DeadLetter]:
    rows: Any = []
    for _stream, dead in streams(keys, shards)[name]:
        rows.extend(await redis.xrange(dead, count=count - len(rows)))
        if len(rows) >= count:
            break
    return [
        DeadLetter(
            dead_id=as_text(did),
            entry_id=as_text(f.get(b"entry_id", b"")),
            group=as_text(f.get(b"group", b"")),
            reason=as_text(f.get(b"reason", b"")),
            deliveries=int(f.get(b"deliveries", b"0") or 0),
            kind=as_text(f.get(b"kind", b"")),
            item_id=as_text(f.get(b"id", f.get(b"fp", b""))),
        )
        for did, f in rows
    ]


async def redrive(
    redis: Redis, keys: Keys, name: str, dead_ids: list[str] | None = None, shards: int = 1
) -> int:
    """Append dead entries (all, or ``dead_ids``) to their stream again and remove them
    from the dead-letter stream, one entry per transaction (a stream and its dead letters
    share a hash tag). Returns how many moved."""
    moved = 0
    for stream, dead in streams(keys, shards)[name]:
        if dead_ids:
            rows: Any = []
            for did in dead_ids:
                rows.extend(await redis.xrange(dead, min=did, max=did))
        else:
            rows = await redis.xrange(dead)
        for did, fields in rows:
            original = {k: v for k, v in fields.items() if k not in _META}
            async with redis.pipeline(transaction=True) as pipe:
                pipe.xadd(stream, original)
                pipe.xdel(dead, did)
                await pipe.execute()
            moved += 1
    return moved
