"""Which event stream shard an event goes to.

In: an event's kind and the bus settings. Out: a shard number in ``0..shards-1``.

The shard follows the event's source family (the kind up to its first dot: ``bitcoin``,
``solana``, ``stablecoin``, ``market``, ``ops``...), never the event id alone: one family's
events then stay in publish order on one stream (a reorg after the blocks it replaces),
and an id always lands on the same shard, so its dedupe marker (kept beside the shard, see
`convmon.monitor.keys`) catches every republication. The default is a stable hash of the
family (CRC32, the same in every process and release); ``bus.family_shards`` pins families
to shards when the hash spreads them badly.

Changing ``bus.shards`` or ``bus.family_shards`` moves families to other streams, away from
their unconsumed entries and their dedupe markers. The layout the bus was written with is
recorded in Redis (`convmon.monitor.buslayout`), a daemon configured otherwise refuses to
start, and ``convmon bus reshard`` (`convmon.monitor.reshard`) makes the change: it waits
until the consumer groups have drained the old shards, copies the dedupe markers of every
family that moves to its new shard, creates the consumer groups on the new shards and
records the new layout.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping

from convmon.monitor.config import BusSettings
from convmon.monitor.events import EVENT_KINDS
from convmon.monitor.keys import Keys


def family_of(kind: str) -> str:
    """``bitcoin.block`` -> ``bitcoin``."""
    return kind.split(".", 1)[0]


FAMILIES: frozenset[str] = frozenset(family_of(kind) for kind in EVENT_KINDS)
"""Every source family an event can have (the payload union is closed)."""


def family_shard(family: str, shards: int, family_shards: Mapping[str, int]) -> int:
    """The shard that carries the events of ``family`` with ``shards`` shards and the pins
    ``family_shards``."""
    if shards == 1:
        return 0
    pinned = family_shards.get(family)
    if pinned is not None:
        return pinned
    return zlib.crc32(family.encode("utf-8")) % shards


def shard_of(kind: str, settings: BusSettings) -> int:
    """The shard that carries events of ``kind``."""
    return family_shard(family_of(kind), settings.shards, settings.family_shards)


def event_stream_labels(keys: Keys, shards: int) -> list[tuple[str, str, str]]:
    """(stream, dead-letter stream, label) of every shard, for metrics and the ops sample:
    shard 0 is ``events`` (as before sharding), shard k ``events.k``."""
    return [
        (keys.event_stream(k), keys.event_dead(k), "events" if k == 0 else f"events.{k}")
        for k in range(shards)
    ]
