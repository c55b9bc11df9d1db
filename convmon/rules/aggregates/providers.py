"""Template providers in the aggregates: pool -> provider from ``bitcoin.template_cluster_changed``
events, and the block windows folded by provider.

In: the change events (each names a pool and the provider whose template it now mines
on), and per window the block counts by pool. Out: the mapping, kept in the ``{agg}`` key
space (a hash, pool -> provider; a pool mapped to itself builds its own template), and per
window ``provider_top2_share``, ``provider_hhi``, ``provider_nakamoto`` and ``providers``
(blocks and share per provider), with the definitions of `convmon.monitor.concentration`.

The windows are folded with the mapping as it is now: a pool that joined a provider's
cluster counts as that provider for the whole window. ``unknown`` blocks stay unknown.
Without any change event (no stratum collector) the view says so
(``template_providers_known`` false) and the provider figures equal the pools'.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio import Redis

from convmon.monitor import concentration
from convmon.monitor.events import BitcoinTemplateCluster, Event

UNKNOWN = concentration.UNKNOWN


async def apply_template_changes(
    redis: Redis, key: str, events: Sequence[Event]
) -> dict[int, bool]:
    """Store the mapping changes among ``events``; position -> whether it changed the
    stored mapping (a replayed event changes nothing)."""
    changes = [
        (i, e.payload) for i, e in enumerate(events)
        if isinstance(e.payload, BitcoinTemplateCluster)
    ]
    if not changes:
        return {}
    current = await redis.hmget(key, [p.pool for _, p in changes])
    out: dict[int, bool] = {}
    mapping: dict[Any, Any] = {}
    for (i, payload), stored in zip(changes, current, strict=True):
        before = stored.decode() if isinstance(stored, bytes) else stored
        before = mapping.get(payload.pool, before)
        out[i] = before != payload.provider
        mapping[payload.pool] = payload.provider
    await redis.hset(key, mapping=mapping)
    return out


def decode_mapping(raw: Mapping[Any, Any]) -> dict[str, str]:
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): (
            v.decode() if isinstance(v, bytes) else str(v)
        )
        for k, v in raw.items()
    }


def provider_counts(pools: Mapping[str, int], mapping: Mapping[str, str]) -> Counter[str]:
    out: Counter[str] = Counter()
    for pool, n in pools.items():
        out[pool if pool == UNKNOWN else mapping.get(pool, pool)] += n
    return out


def provider_stats(pools: Mapping[str, int], mapping: Mapping[str, str]) -> dict[str, Any]:
    """The provider figures of one window from its blocks per pool."""
    counts = provider_counts(pools, mapping)
    shares = concentration.shares(counts)
    members: dict[str, list[str]] = {}
    for pool in pools:
        if pool != UNKNOWN:
            members.setdefault(mapping.get(pool, pool), []).append(pool)
    return {
        "provider_top1_share": concentration.top_share(counts, 1),
        "provider_top2_share": concentration.top_share(counts, 2),
        "provider_hhi": concentration.hhi(counts),
        "provider_nakamoto": concentration.nakamoto(counts),
        "providers": {
            p: {"blocks": n, "share": shares.get(p, 0.0), "pools": len(members.get(p, []))}
            for p, n in counts.items()
        },
    }
