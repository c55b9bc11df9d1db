"""The collector's record of recent blocks in Redis (shared by every replica and the CLI).

One hash ``<prefix>:bitcoin:blocks``: field = height, value = msgspec JSON of a
`RecordedBlock` (the `BitcoinBlock` payload plus the coinbase scriptSig, kept so blocks can
be re-attributed when the pool list changes). It holds the largest analytics window plus a
reorg margin; reorg detection compares a new block's ``previousblockhash`` with the hash
stored at height - 1. ``convmon pools show`` reads it.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec
from redis.asyncio import Redis

from convmon.monitor.events import BitcoinBlock
from convmon.monitor.keys import Keys


class RecordedBlock(msgspec.Struct, frozen=True):
    block: BitcoinBlock
    coinbase_hex: str = ""


_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(RecordedBlock)


class BlockRecord:
    def __init__(self, redis: Redis, keys: Keys, keep: int) -> None:
        if keep < 1:
            raise ValueError("keep must be positive")
        self.redis = redis
        self.key = keys.btc_blocks
        self.keep = keep

    async def get(self, height: int) -> RecordedBlock | None:
        raw = await self.redis.hget(self.key, str(height))
        if raw is None:
            return None
        try:
            return _dec.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None

    async def put(self, blocks: Iterable[RecordedBlock], remove: Iterable[int] = ()) -> None:
        """Store ``blocks`` and drop ``remove`` heights (disconnected blocks) in one step."""
        mapping = {str(b.block.height): _enc.encode(b) for b in blocks}
        drop = [str(h) for h in remove if str(h) not in mapping]
        async with self.redis.pipeline(transaction=True) as pipe:
            if drop:
                pipe.hdel(self.key, *drop)
            if mapping:
                pipe.hset(self.key, mapping=mapping)  # type: ignore[arg-type]
            await pipe.execute()

    async def heights(self) -> list[int]:
        return sorted(int(h) for h in await self.redis.hkeys(self.key))

    async def trim(self, tip_height: int) -> int:
        """Drop blocks older than ``keep`` below the tip; returns how many."""
        old = [h for h in await self.heights() if h <= tip_height - self.keep]
        if old:
            await self.redis.hdel(self.key, *[str(h) for h in old])
        return len(old)

    async def latest(self, count: int) -> list[RecordedBlock]:
        """Up to ``count`` blocks with the highest heights, oldest first."""
        heights = (await self.heights())[-count:] if count > 0 else []
        if not heights:
            return []
        raws = await self.redis.hmget(self.key, [str(h) for h in heights])
        out: list[RecordedBlock] = []
        for raw in raws:
            if raw is None:
                continue
            try:
                out.append(_dec.decode(raw))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
        return out
