"""Moving a Redis written by an older convmon to the hash-tagged key layout, once, at start.

In: a Redis whose keys may follow the layout before hash tags (``convmon:events``,
``convmon:alerts:silences``, ``convmon:rules:inst:<fp>``...). Out: the same data under the
names `convmon.monitor.keys` gives them now, and `Keys.layout` set to `LAYOUT`, so
later starts skip the scan. Without it an upgrade would forget silences, alert state,
notification logs and unconsumed events.

Layout 1 -> 2: each key is renamed (RENAME keeps values, TTLs, stream entries and consumer
groups) unless its new name already holds data, which is kept and logged. Layout 1 only
ever ran on standalone Redis, so a cluster has nothing to rename. Bus dedupe markers are
not moved: they only guard republication, and collectors resume from their checkpoints
(whose names did not change). Layout 2 -> 3: the aggregates leave their single ``{agg}``
slot for their groups, with their applied markers, on every topology
(`convmon.monitor.aggmigration`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from redis.asyncio import Redis

from convmon.monitor.aggmigration import migrate_aggregates
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import as_text
from convmon.monitor.redistarget import is_cluster

log = logging.getLogger(__name__)

LAYOUT = "3"
"""The key layout this release writes (1: before hash tags; 2: every aggregate under one
``{agg}`` tag, moved to their groups by `convmon.monitor.aggmigration`)."""


def _fixed(keys: Keys) -> dict[str, str]:
    """Old name -> new name of the keys that are not per id."""
    p = keys.prefix
    return {
        f"{p}:events": keys.events,
        f"{p}:events:dead": keys.events_dead,
        f"{p}:alerts": keys.alerts,
        f"{p}:alerts:dead": keys.alerts_dead,
        f"{p}:alerts:active": keys.active_alerts,
        f"{p}:alerts:due": keys.alerts_due,
        f"{p}:alerts:firing": keys.alerts_firing,
        f"{p}:alerts:silences": keys.silences,
        f"{p}:alerts:notifications:dead": keys.notifications_dead,
        f"{p}:collectors": keys.collectors,
        f"{p}:bitcoin:blocks": keys.btc_blocks,
        f"{p}:bitcoin:registry": keys.btc_registry,
        f"{p}:bitcoin:reorg_journal": keys.btc_reorg_journal,
        f"{p}:rules:index": keys.rules_index,
    }


def _per_id(keys: Keys, old: str) -> str | None:
    """The new name of a per-id key of the old layout, None when ``old`` is not one."""
    head = f"{keys.prefix}:"
    if not old.startswith(head):
        return None
    rest = old[len(head):]
    simple: list[tuple[str, Callable[[str], str]]] = [
        ("rules:inst:", keys.rule_instance),
        ("rules:live:", keys.rule_live),
        ("alerts:seq:", keys.alert_seq),
        ("alerts:nflog:", keys.nflog),
    ]
    for start, build in simple:
        if rest.startswith(start):
            return build(rest[len(start):])
    if rest.startswith("alerts:group:"):
        group = rest[len("alerts:group:"):]
        if group.endswith(":alerts"):
            return keys.alert_group_alerts(group[: -len(":alerts")])
        return keys.alert_group(group)
    if rest.startswith("collector:"):
        name = rest[len("collector:"):]
        if name.endswith(":live"):
            return keys.collector_live(name[: -len(":live")])
        return keys.collector_status(name)
    if rest.startswith("solana:"):
        return _solana(keys, rest[len("solana:"):])
    return None


def _solana(keys: Keys, rest: str) -> str | None:
    collector, _, tail = rest.partition(":")
    named = {
        "queue": keys.solana_queue, "seq": keys.solana_queue_seq, "done": keys.solana_done,
        "failed": keys.solana_failed, "failed:reason": keys.solana_failed_reason,
    }
    if tail in named:
        return named[tail](collector)
    if tail.startswith("last:"):
        return keys.solana_last_seen(collector, tail[len("last:"):])
    return None


async def migrate_legacy_keys(redis: Redis, keys: Keys) -> int:
    """Move every key of an older layout; returns how many moved. Idempotent."""
    marker = keys.layout
    stored = as_text(await redis.get(marker))
    if stored == LAYOUT:
        return 0
    moved = 0
    if stored in ("", "1") and not is_cluster(redis):
        moved += await _add_hash_tags(redis, keys)
    moved += await migrate_aggregates(redis, keys)
    await redis.set(marker, LAYOUT)
    return moved


async def _add_hash_tags(redis: Redis, keys: Keys) -> int:
    """Layout 1 -> 2: rename the keys that had no hash tag."""
    fixed = _fixed(keys)
    moved = kept = 0
    async for raw in redis.scan_iter(match=f"{keys.prefix}:*", count=1000):
        old = as_text(raw)
        new = fixed.get(old) or _per_id(keys, old)
        if new is None or new == old:
            continue
        if await redis.renamenx(old, new):
            moved += 1
        else:
            kept += 1
            log.warning("key of the old layout left in place: its new name holds data",
                        extra={"old": old, "new": new})
    if moved or kept:
        log.info("moved keys to the hash-tagged layout", extra={"moved": moved, "kept": kept})
    return moved
