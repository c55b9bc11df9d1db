"""Moving the aggregates of an older convmon from one hash tag to the groups, once.

In: a Redis (standalone, Sentinel or Cluster) whose aggregates sit under the single
``{agg}`` tag (`Keys.aggregates_legacy`), bitcoin candidates as one hash per height. Out:
the same data under the groups of `convmon.rules.aggregates.layout` (each key under its
group's base, the candidates folded into the ``btc:cand`` hash, ``ts:meta`` split between
the ``stable`` and ``depin`` groups), and the old keys gone.

Every key moves with DUMP/RESTORE (value and TTL; it works between cluster nodes, where
RENAME cannot) and is deleted after: a move interrupted midway is finished by the next
start, and a key whose new name already holds data keeps the new data. Applied markers go
to the group of their event, told by the id (``btc:`` blocks, ``market:`` prices...); a
marker whose id names no group is copied to every group, so a redelivered event is
recognised wherever it applies.
"""

from __future__ import annotations

import json
import logging

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from convmon.monitor.keys import AGGREGATE_GROUPS, SERIES_GROUPS, Keys
from convmon.monitor.redisconn import as_text

log = logging.getLogger(__name__)

_PREFIX_GROUP: tuple[tuple[str, str], ...] = (
    ("btc:", "btc"), ("rewindow:", "btc"),
    ("market:", "market"), ("sol:depin:", "market"),
    ("sol:payout:", "depin"),
    ("x402:", "x402"),
    ("ops:", "ops"), ("collector:", "ops"),
)
"""Event id prefix -> the group whose script applies such events (stablecoin flows and
supplies, ``<chain>:mint|burn|supply:...`` on every chain, are told by their second part)."""
_STABLE_KINDS = frozenset({"mint", "burn", "supply"})

_KEY_GROUP: tuple[tuple[str, str], ...] = (
    ("btc:", "btc"), ("miner:", "btc"),
    ("supply:", "stable"), ("stable:", "stable"), ("ts:bucket_s", "stable"),
    ("hll:", "depin"), ("depin:last", "depin"),
    ("depin:", "market"), ("prices", "market"), ("price_sources", "market"),
    ("collectors", "ops"), ("ops:", "ops"),
    ("x402:", "x402"),
)
"""Old key (after the base) prefix -> its group, first match wins."""


def marker_groups(event_id: str) -> tuple[str, ...]:
    """The groups an applied marker of ``event_id`` moves to."""
    for start, group in _PREFIX_GROUP:
        if event_id.startswith(start):
            return (group,)
    parts = event_id.split(":", 2)
    if len(parts) == 3 and parts[1] in _STABLE_KINDS:
        return ("stable",)
    return AGGREGATE_GROUPS


def key_groups(rest: str) -> tuple[str, ...]:
    """The groups an old aggregate key (its name after the old base) moves to; empty when
    it is not an aggregate key this release knows."""
    if rest.startswith("done:"):
        return marker_groups(rest[len("done:"):])
    if rest.startswith(("ts:b:", "ts:w:")):
        family = rest[len("ts:b:"):].split(":", 1)[0]
        group = SERIES_GROUPS.get(family)
        return (group,) if group else ()
    for start, group in _KEY_GROUP:
        if rest.startswith(start):
            return (group,)
    return ()


async def _restore(redis: Redis, old: str, targets: list[str]) -> bool:
    """Copy ``old`` (value and TTL) to each name in ``targets`` that is free, then delete
    it. False when it vanished meanwhile."""
    dump = await redis.dump(old)
    ttl = int(await redis.pttl(old))
    if dump is None or ttl == -2:
        return False
    for new in targets:
        try:
            await redis.restore(new, max(ttl, 0), dump)
        except ResponseError as e:
            if "BUSYKEY" not in str(e):
                raise
            log.warning("aggregate key left as found: its new name holds data",
                        extra={"old": old, "new": new})
    await redis.delete(old)
    return True


async def _fold_candidates(redis: Redis, old: str, height: str, keys: Keys) -> None:
    """``btc:cand:<height>`` (fields ``r:``/``s:``/``a:`` + hash) into the field
    ``<height>`` of ``btc:cand``, as the apply script keeps it now."""
    raw = {as_text(f): as_text(v) for f, v in (await redis.hgetall(old)).items()}
    cand: dict[str, dict[str, str | int]] = {"r": {}, "s": {}, "a": {}}
    for field, value in raw.items():
        kind, _, block_hash = field.partition(":")
        if kind in cand:
            cand[kind][block_hash] = int(value) if kind == "s" else value
    if raw:
        await redis.hsetnx(f"{keys.aggregate_base('btc')}:btc:cand", height,
                           json.dumps(cand, separators=(",", ":")))
    await redis.delete(old)


async def _split_meta(redis: Redis, old: str, keys: Keys) -> None:
    """The one ``ts:meta`` into the ``stable`` and ``depin`` groups' (by series family)."""
    for field, value in (await redis.hgetall(old)).items():
        name = as_text(field)
        group = SERIES_GROUPS.get(name.split(":", 1)[0])
        if group is not None:
            await redis.hsetnx(f"{keys.aggregate_base(group)}:ts:meta", name, value)
    await redis.delete(old)


async def migrate_aggregates(redis: Redis, keys: Keys) -> int:
    """Move every aggregate key of the one-tag layout to its group; returns how many
    moved. Idempotent, and a no-op once nothing is left under the old base."""
    base = keys.aggregates_legacy
    moved = unknown = 0
    async for raw in redis.scan_iter(match=f"{base}:*", count=1000):
        old = as_text(raw)
        rest = old[len(base) + 1:]
        if rest.startswith("btc:cand:"):
            await _fold_candidates(redis, old, rest[len("btc:cand:"):], keys)
            moved += 1
            continue
        if rest == "ts:meta":
            await _split_meta(redis, old, keys)
            moved += 1
            continue
        groups = key_groups(rest)
        if not groups:
            unknown += 1
            log.warning("aggregate key of the old layout not moved: unknown to this release",
                        extra={"key": old})
            continue
        if await _restore(redis, old, [f"{keys.aggregate_base(g)}:{rest}" for g in groups]):
            moved += 1
    if moved or unknown:
        log.info("moved the aggregates to their groups", extra={"moved": moved,
                                                                "left": unknown})
    return moved
