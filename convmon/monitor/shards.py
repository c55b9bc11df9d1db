"""Which event stream shard an event goes to.

In: an event's kind and the bus settings. Out: a shard number in ``0..shards-1``.

The shard follows the event's source family (the kind up to its first dot: ``bitcoin``,
``solana``, ``stablecoin``, ``market``, ``ops``...), never the event id alone: one family's
events then stay in publish order on one stream (a reorg after the blocks it replaces),
and an id always lands on the same shard, so its dedupe marker (kept beside the shard, see
`convmon.monitor.keys`) catches every republication. The default is a stable hash of the
family (CRC32, the same in every process and release); ``bus.family_shards`` pins families
to shards when the hash spreads them badly. Changing ``bus.shards`` moves families: do it
with the collectors stopped and the consumers drained.
"""

from __future__ import annotations

import zlib

from convmon.monitor.config import BusSettings
from convmon.monitor.keys import Keys


def family_of(kind: str) -> str:
    """``bitcoin.block`` -> ``bitcoin``."""
    return kind.split(".", 1)[0]


def shard_of(kind: str, settings: BusSettings) -> int:
    """The shard that carries events of ``kind``."""
    if settings.shards == 1:
        return 0
    family = family_of(kind)
    pinned = settings.family_shards.get(family)
    if pinned is not None:
        return pinned
    return zlib.crc32(family.encode("utf-8")) % settings.shards


def event_stream_labels(keys: Keys, shards: int) -> list[tuple[str, str, str]]:
    """(stream, dead-letter stream, label) of every shard, for metrics and the ops sample:
    shard 0 is ``events`` (as before sharding), shard k ``events.k``."""
    return [
        (keys.event_stream(k), keys.event_dead(k), "events" if k == 0 else f"events.{k}")
        for k in range(shards)
    ]
