"""Recording and publishing a run of consecutive blocks.

Blocks in, ``bitcoin.block`` events out: the record is written first, then the events go
out with the new checkpoint in one `EventBus.publish` (atomic), so a crash between the two
only makes a replay republish the same ids (a no-op on the bus).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from convmon.collectors.bitcoin.blocks import block_event
from convmon.collectors.bitcoin.checkpoint import CHECKPOINT_SOURCE, Checkpoint, read_checkpoint
from convmon.collectors.bitcoin.record import BlockRecord, RecordedBlock
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import Clock
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)

TRIM_EVERY_BLOCKS = 100


class BlockPublisher:
    """Writes blocks to the record and the bus; trims the record every 100 new tips."""

    def __init__(
        self, *, bus: EventBus, record: BlockRecord, health: CollectorHealth, clock: Clock,
        source_name: str,
    ) -> None:
        self.bus = bus
        self.record = record
        self.health = health
        self.clock = clock
        self.source_name = source_name
        self._since_trim = 0

    async def publish(
        self, blocks: Sequence[RecordedBlock], *, move_tip: bool,
        expect: Checkpoint | None = None,
    ) -> bool:
        """Record and publish ``blocks``; with ``move_tip`` also move the checkpoint, but
        only if it still is ``expect`` (what this batch was built on). Another replica may
        have moved it meanwhile (past us, or through a reorg): then nothing is written and
        False is returned, and the caller resyncs from the shared checkpoint."""
        if move_tip and await read_checkpoint(self.bus) != expect:
            log.debug("checkpoint moved by another replica; resyncing")
            return False
        now = self.clock.now()
        await self.record.put(blocks)
        events = [block_event(b.block, self.source_name, now) for b in blocks]
        tip = blocks[-1].block
        await self.bus.publish(
            events, checkpoint=(CHECKPOINT_SOURCE, f"{tip.height}:{tip.hash}") if move_tip else None
        )
        if move_tip:
            await self.health.progress(tip.height, float(tip.timestamp))
            self._since_trim += len(blocks)
            if self._since_trim >= TRIM_EVERY_BLOCKS:
                self._since_trim = 0
                await self.record.trim(tip.height)
        return True
