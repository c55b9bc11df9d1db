"""Reorg handling: the checkpoint's block is no longer on the source's best chain.

Flow: walk back through the block record to the fork point (the highest recorded block the
source still has), list what the record shows disconnected above it, fetch the new branch
(up to ``publish_batch`` blocks past the old height; the normal sync follows the rest),
and journal then apply ONE ``bitcoin.reorg`` event followed by the new blocks (see
`journal`).

Replicas: another replica may be handling, or have handled, the same reorg. A leftover
journal is finished first; what is disconnected is what the shared record still shows off
the chain (nothing: no reorg event, only the checkpoint catches up); the checkpoint is
re-read before anything is written.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from convmon.collectors.bitcoin.blocks import ChainBlock, block_event
from convmon.collectors.bitcoin.checkpoint import (
    CHECKPOINT_SOURCE,
    Checkpoint,
    checkpoint_value,
    read_checkpoint,
)
from convmon.collectors.bitcoin.errors import BitcoinCollectorError, ReorgTooDeep
from convmon.collectors.bitcoin.journal import ReorgEntry, ReorgJournal
from convmon.collectors.bitcoin.record import BlockRecord, RecordedBlock
from convmon.collectors.bitcoin.sources import ChainSource
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import Clock
from convmon.monitor.events import BitcoinReorg, BlockRef, Event
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)


def reorg_short_id(reorg_event_id: str) -> str:
    """16 hex digits naming a reorg in the ids of the blocks its new branch connects; the
    same on every replica that computes the same reorg."""
    return hashlib.sha256(reorg_event_id.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ForkPoint:
    height: int
    link: str | None
    """Hash of the block at ``height`` when known to be on the source's chain: the new
    branch must build on it."""


class ReorgHandler:
    """Turns a checkpoint that left the best chain into one journaled reorg."""

    def __init__(
        self, *, source: ChainSource, bus: EventBus, record: BlockRecord,
        journal: ReorgJournal, health: CollectorHealth, clock: Clock, source_name: str,
        publish_batch: int, to_record: Callable[[ChainBlock], RecordedBlock],
    ) -> None:
        self.source = source
        self.bus = bus
        self.record = record
        self.journal = journal
        self.health = health
        self.clock = clock
        self.source_name = source_name
        self.publish_batch = publish_batch
        self.to_record = to_record

    async def handle(self, old_height: int, old_hash: str, tip: int) -> int:
        """Handle a checkpoint ``old_height:old_hash`` that is off the source's chain, whose
        tip is ``tip``; returns how many new-branch blocks were published."""
        expect = (old_height, old_hash)
        if await self.journal.pending():
            await self.journal.replay()
            return 0
        fork = await self._find_fork(old_height, tip)
        top = await self.record.get(old_height)
        if top is None and fork.height >= old_height:
            # The record lacks the checkpoint's block, which is off the chain: it alone is
            # known to be disconnected.
            fork = ForkPoint(old_height - 1, None)
        disconnected = await self._disconnected(fork.height, old_height)
        if top is None:
            disconnected.append(BlockRef(old_height, old_hash))
        if not disconnected:
            # The record already shows the source's chain up to the checkpoint's height:
            # another replica handled this reorg. Nothing to report; catch the checkpoint up
            # to the record unless that replica already moved it.
            if top is not None and await read_checkpoint(self.bus) == expect:
                await self.bus.set_checkpoint(
                    CHECKPOINT_SOURCE, f"{old_height}:{top.block.hash}"
                )
            return 0
        # up to ``publish_batch`` blocks past the old tip: the next sync follows the rest
        last = min(tip, max(old_height, fork.height + 1) + self.publish_batch)
        new_blocks = await self._new_branch(fork, last)
        if new_blocks:
            new_tip = (new_blocks[-1].block.height, new_blocks[-1].block.hash)
        else:
            new_tip = (fork.height, fork.link or await self.source.block_hash(fork.height))
        entry = self._entry(fork.height, old_height, expect, disconnected, new_blocks, new_tip)
        if await read_checkpoint(self.bus) != expect:
            return 0  # another replica moved the checkpoint meanwhile: resync from it
        if not await self.journal.write_and_apply(entry):
            return 0
        log.warning(
            "bitcoin reorg",
            extra={"fork_height": fork.height, "depth": old_height - fork.height,
                   "new_tip": new_tip[0]},
        )
        await self.health.progress(new_tip[0])
        return len(new_blocks)

    async def _find_fork(self, old_height: int, tip: int) -> ForkPoint:
        """The highest recorded height whose block the source still has at that height. A
        height the record does not reach (or a lost record) is taken as the fork: what was
        recorded above it is reported as disconnected."""
        height = min(old_height, tip)
        while height >= 0:
            stored = await self.record.get(height)
            if stored is None:
                log.warning("fork point below the recorded blocks", extra={"height": height})
                return ForkPoint(height, None)
            if await self.source.block_hash(height) == stored.block.hash:
                return ForkPoint(height, stored.block.hash)
            height -= 1
        raise ReorgTooDeep("no common block with the source")

    async def _disconnected(self, fork_height: int, old_height: int) -> list[BlockRef]:
        """The recorded blocks above the fork, up to the old checkpoint."""
        disconnected: list[BlockRef] = []
        for height in range(fork_height + 1, old_height + 1):
            old = await self.record.get(height)
            if old is not None:
                disconnected.append(BlockRef(height, old.block.hash, old.block.pool))
        return disconnected

    async def _new_branch(self, fork: ForkPoint, last: int) -> list[RecordedBlock]:
        """The source's blocks ``fork.height + 1 .. last``, each linked to the one before."""
        link = fork.link
        branch: list[RecordedBlock] = []
        for height in range(fork.height + 1, last + 1):
            block = await self.source.block(await self.source.block_hash(height))
            if link is not None and block.prev_hash != link:
                raise BitcoinCollectorError("chain changed during reorg handling; retrying")
            branch.append(self.to_record(block))
            link = block.hash
        return branch

    def _entry(
        self, fork_height: int, old_height: int, expect: Checkpoint,
        disconnected: list[BlockRef], new_blocks: list[RecordedBlock], new_tip: Checkpoint,
    ) -> ReorgEntry:
        now = self.clock.now()
        new_tip_height, new_tip_hash = new_tip
        reorg = Event(
            id=f"btc:reorg:{fork_height}:{disconnected[-1].hash}:{new_tip_hash}",
            chain="bitcoin",
            source=self.source_name,
            observed_at=now,
            occurred_at=now,
            position=fork_height,
            payload=BitcoinReorg(
                fork_height=fork_height,
                depth=old_height - fork_height,
                disconnected=disconnected,
                new_tip_height=new_tip_height,
                new_tip_hash=new_tip_hash,
            ),
        )
        short_id = reorg_short_id(reorg.id)
        events = [reorg, *(block_event(b.block, self.source_name, now, short_id)
                           for b in new_blocks)]
        return ReorgEntry(
            put=new_blocks,
            remove=[ref.height for ref in disconnected if ref.height > new_tip_height],
            events=events,
            checkpoint=f"{new_tip_height}:{new_tip_hash}",
            expect=checkpoint_value(expect),
        )
