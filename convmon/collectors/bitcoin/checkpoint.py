"""The bitcoin checkpoint: ``height:hash`` of the last block the bus holds.

It is written together with the events (one `EventBus.publish`), read before every batch
and every reorg so that a replica never builds on a checkpoint another replica has since
moved.
"""

from __future__ import annotations

from convmon.monitor.bus import EventBus

CHECKPOINT_SOURCE = "bitcoin"

Checkpoint = tuple[int, str]
"""``(height, hash)`` of the block the checkpoint names."""


async def read_checkpoint(bus: EventBus) -> Checkpoint | None:
    """The shared checkpoint, or None before the first block (or if it is unreadable)."""
    value = await bus.get_checkpoint(CHECKPOINT_SOURCE)
    if not value or ":" not in value:
        return None
    height, _, block_hash = value.partition(":")
    return (int(height), block_hash) if height.isdigit() else None


def checkpoint_value(checkpoint: Checkpoint | None) -> str:
    """The stored form of ``checkpoint`` (``""`` for none)."""
    return f"{checkpoint[0]}:{checkpoint[1]}" if checkpoint is not None else ""
