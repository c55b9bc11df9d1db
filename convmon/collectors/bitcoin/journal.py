"""The reorg journal: a reorg written to Redis before it is applied, replayed after a crash.

A reorg changes the block record (new branch in, disconnected blocks out), publishes the
``bitcoin.reorg`` event with the new branch's blocks and moves the checkpoint. Those are
separate Redis writes, so the whole change is first stored as one journal entry; it is then
applied and cleared. A collector that starts (or meets a reorg) with a journal left over
replays it first. Applying is idempotent: the record writes are puts, the events keep their
ids.

Replicas: the journal names the checkpoint it was computed from (``expect``). A journal
whose ``expect`` is no longer the shared checkpoint (another replica applied it and moved
on) is dropped instead of applied, since publishing it would move the checkpoint back.
"""

from __future__ import annotations

import msgspec

from convmon.collectors.bitcoin.checkpoint import (
    CHECKPOINT_SOURCE,
    checkpoint_value,
    read_checkpoint,
)
from convmon.collectors.bitcoin.record import BlockRecord, RecordedBlock
from convmon.monitor.bus import EventBus
from convmon.monitor.events import Event


class ReorgEntry(msgspec.Struct):
    """One journaled reorg: what to put in and remove from the record, what to publish."""

    put: list[RecordedBlock]
    remove: list[int]
    events: list[Event]
    checkpoint: str
    expect: str = ""
    """The checkpoint the reorg was computed from ("" in journals of older versions)."""


# Delete the journal only if it is still the one we read: another replica may have written
# its own since.
_DELETE_IF_SAME = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ReorgJournal:
    """The journal key in Redis: write, apply, replay and clear reorg entries."""

    def __init__(self, bus: EventBus, record: BlockRecord) -> None:
        self.bus = bus
        self.record = record
        self.key = bus.keys.btc_reorg_journal

    async def pending(self) -> bool:
        """Whether a reorg (ours or another replica's) is journaled but not yet cleared."""
        return bool(await self.bus.redis.exists(self.key))

    async def replay(self) -> None:
        """Finish a reorg interrupted by a crash (idempotent); drop an unreadable entry."""
        raw = await self.bus.redis.get(self.key)
        if raw is None:
            return
        try:
            entry = msgspec.json.decode(raw, type=ReorgEntry)
        except (msgspec.DecodeError, msgspec.ValidationError):
            await self._clear(raw)
            return
        await self._apply(entry, raw)

    async def write_and_apply(self, entry: ReorgEntry) -> bool:
        """Journal ``entry``, apply it, clear it; False when another replica got there first
        (nothing is applied then)."""
        raw = msgspec.json.encode(entry)
        await self.bus.redis.set(self.key, raw)
        return await self._apply(entry, raw)

    async def _apply(self, entry: ReorgEntry, raw: bytes | str) -> bool:
        if entry.expect:
            current = checkpoint_value(await read_checkpoint(self.bus))
            if current not in (entry.expect, entry.checkpoint):
                await self._clear(raw)
                return False
        await self.record.put(entry.put, remove=entry.remove)
        await self.bus.publish(entry.events, checkpoint=(CHECKPOINT_SOURCE, entry.checkpoint))
        await self._clear(raw)
        return True

    async def _clear(self, raw: bytes | str) -> None:
        await self.bus.redis.eval(_DELETE_IF_SAME, 1, self.key, raw)
