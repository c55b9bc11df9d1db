"""Template providers and jurisdictions in the aggregates.

In: ``bitcoin.template_cluster_changed`` events (each names a pool and the provider whose
template it now mines on) and, per block window, the counts the apply script keeps by
template provider (``t:<provider>``, ``q:<provider>|<pool>``) and by jurisdiction
(``j:<code>``). Out: the mapping, kept in the ``btc`` aggregate group (a hash, pool ->
provider; a pool mapped to itself builds its own template), and per window
``provider_top2_share``, ``provider_hhi``, ``provider_nakamoto`` and ``providers`` (blocks,
share and pools per provider), with the definitions of `convmon.monitor.concentration`,
and ``jurisdictions`` with the largest known one's share.

Each block counts under the template provider it carried when it arrived
(`BitcoinBlock.template_provider`): a pool that joins a provider's cluster counts as that
provider from its next block on, its earlier blocks keep their provider until they leave
the window. A block without a provider (no stratum collector, or a pool that builds its
own template) counts under its own pool, so without a stratum collector the provider
figures equal the pools'; ``unknown`` blocks stay unknown. Reorgs and re-attribution move
these counts exactly as they move the pools'. The mapping says only whether any stratum
collector reported (``template_providers_known``) and what the pools map to now.

Jurisdictions come with the blocks too (`BitcoinBlock.jurisdiction`, from the curated
table at the block's timestamp); a block without one, or of an ``unknown`` pool, counts as
``unknown``, which is never a jurisdiction's share.
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


def _counts(window: Mapping[str, float], prefix: str) -> dict[str, int]:
    n = len(prefix)
    return {k[n:]: int(v) for k, v in window.items() if k.startswith(prefix) and v > 0}


def provider_stats(window: Mapping[str, float]) -> dict[str, Any]:
    """The provider figures of one window from its raw counts (``t:``/``q:`` fields)."""
    counts = _counts(window, "t:")
    members: Counter[str] = Counter(pair.partition("|")[0] for pair in _counts(window, "q:"))
    shares = concentration.shares(counts)
    return {
        "provider_top1_share": concentration.top_share(counts, 1),
        "provider_top2_share": concentration.top_share(counts, 2),
        "provider_hhi": concentration.hhi(counts),
        "provider_nakamoto": concentration.nakamoto(counts),
        "providers": {
            p: {"blocks": n, "share": shares.get(p, 0.0),
                "pools": 0 if p == UNKNOWN else members.get(p, 0)}
            for p, n in counts.items()
        },
    }


def jurisdiction_stats(window: Mapping[str, float]) -> dict[str, Any]:
    """The jurisdiction figures of one window from its raw counts (``j:`` fields): share
    per jurisdiction (``unknown`` included, as a share of all blocks) and the largest
    known jurisdiction with its share (None and 0 when no block has a known one)."""
    counts = _counts(window, "j:")
    total = sum(counts.values())
    known = sorted(((n, code) for code, n in counts.items() if code != UNKNOWN),
                   key=lambda item: (-item[0], item[1]))
    return {
        "jurisdictions": {
            code: {"blocks": n, "share": n / total} for code, n in counts.items()
        },
        "jurisdiction_top1": known[0][1] if known else None,
        "jurisdiction_top1_share": known[0][0] / total if known else 0.0,
    }
