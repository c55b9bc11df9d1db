"""The stratum collector's state in Redis: the clustering evidence and the current view.

Out (written by the collector): ``Keys.btc_template_rounds`` (prev_hash -> one round of
matched jobs, so a restart keeps its evidence) and ``Keys.btc_templates`` (the current
clusters with their evidence, the pool -> provider mapping, and counters). In: the same,
read back by the collector at start, by ``convmon pools templates`` and by the gauges.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from convmon.collectors.bitcoin.errors import MalformedJob
from convmon.collectors.bitcoin.stratum import StratumJob
from convmon.collectors.bitcoin.templates import Cluster, TemplateClusterer
from convmon.monitor.keys import Keys


async def save_rounds(
    redis: Redis, keys: Keys, clusterer: TemplateClusterer, touched: Iterable[str]
) -> None:
    """Store the rounds ``touched`` and drop stored rounds the clusterer no longer holds."""
    held = set(clusterer.round_keys())
    mapping: dict[Any, Any] = {}
    for prev_hash in touched:
        doc = clusterer.round_doc(prev_hash)
        if doc is not None:
            mapping[prev_hash] = json.dumps(doc, separators=(",", ":"))
    stored = [_text(k) for k in await redis.hkeys(keys.btc_template_rounds)]
    stale = [k for k in stored if k not in held and k not in mapping]
    async with redis.pipeline(transaction=True) as pipe:
        if mapping:
            pipe.hset(keys.btc_template_rounds, mapping=mapping)
        if stale:
            pipe.hdel(keys.btc_template_rounds, *stale)
        await pipe.execute()


async def load_rounds(redis: Redis, keys: Keys, clusterer: TemplateClusterer) -> int:
    """Restore the stored rounds into ``clusterer``; returns how many."""
    raw = await redis.hgetall(keys.btc_template_rounds)
    docs: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            docs[_text(k)] = json.loads(v)
        except ValueError:
            continue
    return clusterer.load_rounds(docs)


async def write_state(redis: Redis, keys: Keys, doc: dict[str, Any]) -> None:
    await redis.set(keys.btc_templates, json.dumps(doc, separators=(",", ":")))


async def read_state(redis: Redis, keys: Keys) -> dict[str, Any]:
    """The collector's current view, ``{}`` when it has stored none."""
    raw = await redis.get(keys.btc_templates)
    if raw is None:
        return {}
    try:
        doc = json.loads(raw)
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def coinbase_evidence(job: StratumJob | None) -> dict[str, Any] | None:
    """What a job's coinbase says (shown beside the merkle match, never instead of it)."""
    if job is None:
        return None
    try:
        found = job.coinbase()
    except MalformedJob as exc:
        return {"error": str(exc)}
    return {
        "tag": found.tag,
        "payout_addresses": found.payout_addresses,
        "markers": found.markers,
        "witness_commitment": found.witness_commitment,
        "sv2": None if found.sv2 is None else {
            "kind": found.sv2.kind, "pool_tag": found.sv2.pool_tag,
            "miner_tag": found.sv2.miner_tag,
        },
        "ocean_datum": found.ocean_datum,
        "reward_sats": found.reward_sats,
    }


def cluster_doc(cluster: Cluster, clusterer: TemplateClusterer) -> dict[str, Any]:
    return {
        "provider": cluster.provider,
        "pools": cluster.pools,
        "last_seen": cluster.last_seen,
        "members": [
            {
                "pool": m.pool, "confidence": round(m.confidence, 4),
                "matched_heights": m.matched_heights, "observed_heights": m.observed_heights,
                "last_seen": m.last_seen, "fingerprint": m.last_fingerprint,
                "coinbase": coinbase_evidence(clusterer.latest.get(m.pool)),
            }
            for m in cluster.members
        ],
    }


def clusterer_doc(clusterer: TemplateClusterer, malformed: int) -> dict[str, Any]:
    return {
        "jobs": clusterer.jobs,
        "empty_jobs": clusterer.empty_jobs,
        "malformed": malformed,
        "rounds": clusterer.rounds,
        "settings": {
            "window_s": clusterer.settings.window_s,
            "min_confidence": clusterer.settings.min_confidence,
            "min_heights": clusterer.settings.min_heights,
        },
        "clusters": [cluster_doc(c, clusterer) for c in clusterer.clusters()],
        "shared_fingerprints": [
            {"height": m.height, "prev_hash": m.prev_hash, "fingerprint": m.fingerprint,
             "pools": list(m.pools)}
            for m in clusterer.shared_fingerprints()
        ],
        "providers": clusterer.mapping(),
    }


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
