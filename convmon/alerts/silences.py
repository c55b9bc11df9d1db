"""Silences: mute alerts matching a set of matchers between two times, with an author and
a comment, as in Alertmanager.

Stored in Redis (hash ``alerts:silences``: id → JSON) so the CLI, the HTTP API and every
dispatcher replica see the same set. Expiring a silence sets its end to now (it stays
listed as expired until pruned after a retention period).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence

import msgspec
from redis.asyncio import Redis

from convmon.monitor.keys import Keys

from .matchers import Matcher, match_all, parse_matchers

RETENTION_S = 5 * 86400


@functools.lru_cache(maxsize=1024)
def _compiled(matchers: tuple[str, ...]) -> tuple[Matcher, ...]:
    return parse_matchers(matchers)


class Silence(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    matchers: list[str]
    starts_at: float
    ends_at: float
    author: str
    comment: str
    created_at: float

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def compiled(self) -> tuple[Matcher, ...]:
        return _compiled(tuple(self.matchers))

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        return self.state(now) == "active" and match_all(self.compiled(), labels)


class SilenceStore:
    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.key = keys.ns("alerts", "silences")

    async def add(
        self, matchers: Sequence[str], starts_at: float, ends_at: float, author: str,
        comment: str, now: float,
    ) -> Silence:
        """Validate and store a silence; raises `ValueError` on bad input."""
        if not matchers:
            raise ValueError("a silence needs at least one matcher")
        compiled = parse_matchers(matchers)
        if all(m.matches({}) for m in compiled):
            raise ValueError("a silence must not match every alert (all matchers match empty)")
        if ends_at <= starts_at:
            raise ValueError("a silence must end after it starts")
        if not author.strip():
            raise ValueError("a silence needs an author")
        silence = Silence(
            id=str(uuid.uuid4()), matchers=list(matchers), starts_at=starts_at,
            ends_at=ends_at, author=author, comment=comment, created_at=now,
        )
        await self.redis.hset(self.key, silence.id, msgspec.json.encode(silence))
        return silence

    async def all(self, now: float) -> list[Silence]:
        raw = await self.redis.hgetall(self.key)
        found = [msgspec.json.decode(v, type=Silence) for v in raw.values()]
        stale = [s.id for s in found if s.ends_at + RETENTION_S < now]
        if stale:
            await self.redis.hdel(self.key, *stale)
        return sorted((s for s in found if s.id not in stale), key=lambda s: s.starts_at)

    async def active(self, now: float) -> list[Silence]:
        return [s for s in await self.all(now) if s.state(now) == "active"]

    async def expire(self, silence_id: str, now: float) -> bool:
        raw = await self.redis.hget(self.key, silence_id)
        if raw is None:
            return False
        s = msgspec.json.decode(raw, type=Silence)
        if s.ends_at > now:
            s = msgspec.structs.replace(s, ends_at=max(now, s.starts_at))
            await self.redis.hset(self.key, s.id, msgspec.json.encode(s))
        return True
