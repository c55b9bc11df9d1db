"""Per-source health of the market collector, shared through Redis.

In: each process's view of its sources (up, since when, newest message). Out: one hash per
source (`Keys.market_source`) with one field per process, so replicas do not overwrite each
other, expiring when no process writes any more; `read` merges them for the plugin's
gauges and the ``status`` command (up if any process saw it up recently).
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from convmon.monitor.keys import Keys


class SourceHealthStore:
    """`Keys.market_source`: hash instance → JSON
    ``{up, since, last_message_at, at}``, expiring after ``ttl_s`` without a write."""

    def __init__(self, redis: Redis, keys: Keys, instance: str, ttl_s: float) -> None:
        self.redis = redis
        self.keys = keys
        self.instance = instance
        self.ttl_s = ttl_s

    def key(self, source: str) -> str:
        return self.keys.market_source(source)

    async def write(self, states: dict[str, dict[str, Any]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for source, state in states.items():
                pipe.hset(self.key(source), self.instance, json.dumps(state))
                pipe.expire(self.key(source), max(1, int(self.ttl_s)))
            await pipe.execute()

    async def read(self, source: str, now: float) -> tuple[bool, float | None]:
        """(any process reports it up recently, newest message time)."""
        raw: dict[bytes | str, bytes | str] = await self.redis.hgetall(self.key(source))
        up = False
        last: float | None = None
        for value in raw.values():
            try:
                state = json.loads(value)
                fresh = now - float(state["at"]) <= self.ttl_s
                if fresh and state.get("up"):
                    up = True
                if state.get("last_message_at") is not None:
                    seen = float(state["last_message_at"])
                    last = seen if last is None else max(last, seen)
            except (ValueError, KeyError, TypeError):
                continue
        return up, last
