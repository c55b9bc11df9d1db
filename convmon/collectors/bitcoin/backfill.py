"""Backfill: publish recent blocks that lie below the checkpoint.

``convmon backfill bitcoin --blocks N`` asks for the last N blocks. Those above the
checkpoint come through the normal sync; those at or below it are fetched here and
published as plain events (their ids are the same as when first published, so blocks the
bus already holds are no-ops) without moving the checkpoint: it only ever moves forward.
"""

from __future__ import annotations

from collections.abc import Callable

from convmon.collectors.bitcoin.blocks import ChainBlock
from convmon.collectors.bitcoin.publish import BlockPublisher
from convmon.collectors.bitcoin.record import RecordedBlock
from convmon.collectors.bitcoin.sources import ChainSource

Progress = Callable[[int, int], None]
"""Called with (blocks done, blocks in all)."""


async def republish_range(
    *, source: ChainSource, publisher: BlockPublisher,
    to_record: Callable[[ChainBlock], RecordedBlock], start: int, end: int,
    publish_batch: int, progress: Progress | None, total: int,
) -> int:
    """Fetch and publish the blocks ``start..end`` in batches of ``publish_batch``, leaving
    the checkpoint alone; returns how many were published."""
    done = 0
    batch: list[RecordedBlock] = []
    for height in range(start, end + 1):
        block_hash = await source.block_hash(height)
        batch.append(to_record(await source.block(block_hash)))
        if len(batch) >= publish_batch or height == end:
            await publisher.publish(batch, move_tip=False)
            done += len(batch)
            batch = []
            if progress is not None:
                progress(done, total)
    return done
