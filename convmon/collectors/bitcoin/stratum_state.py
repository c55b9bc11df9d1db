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

from convmon.collectors.bitcoin.templates import TemplateClusterer
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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
