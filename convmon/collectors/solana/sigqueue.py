"""A Redis-backed FIFO of transaction signatures still to fetch.

In: signatures from websocket notifications and gap recovery. Out: batches in arrival
order; a signature leaves the queue only when `ack` is called after its events were
published, so a crash or restart re-fetches it (the bus dedupes the events by id).

Keys (named in `convmon.monitor.keys.Keys`, ``solana:<collector>:...``):
``queue`` (zset signature -> arrival sequence), ``seq`` (counter), ``done`` (zset
signature -> unix time when handled; trimmed by age) and ``failed`` (zset of signatures
given up on, with reasons in ``failed:reason``). A signature already queued or done is
not queued again.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from convmon.monitor.keys import Keys

_ENQUEUE_LUA = """
local added = 0
for i, sig in ipairs(ARGV) do
  if redis.call('ZSCORE', KEYS[2], sig) == false
     and redis.call('ZSCORE', KEYS[1], sig) == false then
    local seq = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[1], seq, sig)
    added = added + 1
  end
end
return added
"""


def as_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


DONE_TTL_S = 2 * 86400
"""How long a handled signature is remembered: announcements of it again (the websocket and
gap recovery overlapping, a reconnect) come within minutes, and gap recovery stops at the
newest signature seen before a gap, so two days covers them with margin (the bus dedupes
the events again for ``bus.dedupe_ttl_s``)."""


class SignatureQueue:
    """Deduplicating, persistent, ordered queue of signatures for one collector."""

    def __init__(
        self, redis: Redis, keys: Keys, collector: str, *, done_ttl_s: float = DONE_TTL_S
    ) -> None:
        self.redis = redis
        self.queue_key = keys.solana_queue(collector)
        self.seq_key = keys.solana_queue_seq(collector)
        self.done_key = keys.solana_done(collector)
        self.failed_key = keys.solana_failed(collector)
        self.failed_reason_key = keys.solana_failed_reason(collector)
        self.done_ttl_s = done_ttl_s
        self._enqueue = redis.register_script(_ENQUEUE_LUA)

    async def enqueue(self, signatures: Sequence[str]) -> int:
        """Append signatures (oldest first) not yet queued or done; returns how many."""
        if not signatures:
            return 0
        return int(
            await self._enqueue(
                keys=[self.queue_key, self.done_key, self.seq_key], args=list(signatures)
            )
        )

    async def peek(self, count: int) -> list[str]:
        return [as_text(member) for member in await self.redis.zrange(self.queue_key, 0, count - 1)]

    async def ack(self, signatures: Sequence[str], now: float) -> None:
        if not signatures:
            return
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.queue_key, *signatures)
            pipe.zadd(self.done_key, dict.fromkeys(signatures, now))
            pipe.zremrangebyscore(self.done_key, "-inf", now - self.done_ttl_s)
            await pipe.execute()

    async def fail(self, signature: str, reason: str, now: float) -> None:
        """Give up on a signature (kept in ``failed`` for inspection and `requeue_failed`)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self.queue_key, signature)
            pipe.zadd(self.failed_key, {signature: now})
            pipe.hset(self.failed_reason_key, signature, reason[:300])
            await pipe.execute()

    async def requeue_failed(self) -> int:
        """Put failed signatures back (e.g. after raising the supported tx version)."""
        sigs = [as_text(member) for member in await self.redis.zrange(self.failed_key, 0, -1)]
        await self.redis.delete(self.failed_key, self.failed_reason_key)
        return await self.enqueue(sigs)

    async def depth(self) -> int:
        return int(await self.redis.zcard(self.queue_key))

    async def failed(self) -> int:
        return int(await self.redis.zcard(self.failed_key))
