"""The layout of the event bus a Redis holds, and the check every daemon makes at start.

In: the ``bus`` settings (``shards``, ``family_shards``) and `Keys.bus_layout`. Out: the
recorded layout, written by the first daemon on an empty Redis, and `LayoutMismatch` when
a daemon is configured with another one.

Why: an event's stream shard and its dedupe marker follow its source family
(`convmon.monitor.shards`). A daemon started with another shard count or other pins would
publish families to other streams while their unconsumed entries sit in the old ones, and
a collector replaying after the change would find no dedupe marker on the new shard and
publish its events again. So a mismatch stops the daemon (the CLI exits 2) until
``convmon bus reshard`` (`convmon.monitor.reshard`) has moved what must move and recorded
the new layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from convmon.monitor.config import BusSettings, ConfigSource
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import as_text
from convmon.monitor.shards import FAMILIES, family_shard


@dataclass(frozen=True)
class BusLayout:
    """A shard count and the families pinned to shards (none with one shard: pins are
    ignored there)."""

    shards: int
    family_shards: dict[str, int] = field(default_factory=dict)

    @classmethod
    def of(cls, settings: BusSettings) -> BusLayout:
        pins = dict(sorted(settings.family_shards.items())) if settings.shards > 1 else {}
        return cls(settings.shards, pins)

    @classmethod
    def decode(cls, text: str) -> BusLayout:
        doc: Any = json.loads(text)
        shards = int(doc["shards"])
        pins = {str(k): int(v) for k, v in sorted((doc.get("family_shards") or {}).items())}
        return cls(shards, pins if shards > 1 else {})

    def encode(self) -> str:
        return json.dumps({"shards": self.shards, "family_shards": self.family_shards},
                          sort_keys=True, separators=(",", ":"))

    def shard_of_family(self, family: str) -> int:
        return family_shard(family, self.shards, self.family_shards)

    def families(self) -> list[str]:
        """Every family this layout places: the known ones and any pinned."""
        return sorted(FAMILIES | set(self.family_shards))

    def describe(self) -> str:
        """``bus.shards: 4, bus.family_shards: {market: 1}`` (what the config file says)."""
        pins = ", ".join(f"{k}: {v}" for k, v in self.family_shards.items())
        return f"bus.shards: {self.shards}, bus.family_shards: {{{pins}}}"

    def moves(self, new: BusLayout) -> dict[int, list[int]]:
        """Old shard -> the other new shards that receive a family from it."""
        out: dict[int, set[int]] = {}
        for family in sorted(set(self.families()) | set(new.families())):
            old_k, new_k = self.shard_of_family(family), new.shard_of_family(family)
            if old_k != new_k:
                out.setdefault(old_k, set()).add(new_k)
        return {k: sorted(v) for k, v in sorted(out.items())}


class LayoutMismatch(RuntimeError):
    """The configured bus layout is not the one this Redis holds."""


async def recorded_layout(redis: Redis, keys: Keys) -> BusLayout | None:
    raw = await redis.get(keys.bus_layout)
    return BusLayout.decode(as_text(raw)) if raw is not None else None


async def record_layout(redis: Redis, keys: Keys, layout: BusLayout) -> None:
    await redis.set(keys.bus_layout, layout.encode())


def reshard_command(source: ConfigSource) -> str:
    """The command that moves this configuration's Redis to its layout."""
    if source.file.startswith("<"):  # built-in defaults and environment only
        return "convmon bus reshard"
    return f"convmon bus reshard --config {source.file}"


async def ensure_layout(redis: Redis, keys: Keys, settings: BusSettings,
                        source: ConfigSource) -> BusLayout:
    """Record the configured layout on a Redis that has none (a first start); raise
    `LayoutMismatch` when the recorded one differs. Returns the layout in force."""
    configured = BusLayout.of(settings)
    # NX: of two daemons starting at once with different settings, one records its own
    # and the other compares with it.
    if await redis.set(keys.bus_layout, configured.encode(), nx=True):
        return configured
    recorded = await recorded_layout(redis, keys)
    if recorded is None or recorded == configured:
        return configured
    raise LayoutMismatch(mismatch_message(recorded, configured, source, keys.prefix))


def mismatch_message(recorded: BusLayout, configured: BusLayout, source: ConfigSource,
                     prefix: str) -> str:
    """``file:line: bus.shards: ...`` naming both layouts and what to do."""
    if recorded.shards != configured.shards:
        path: tuple[str, ...] = ("bus", "shards")
        shown = str(configured.shards)
        back = f"set bus.shards back to {recorded.shards}"
    else:
        path = ("bus", "family_shards")
        shown = configured.describe().split("bus.family_shards: ", 1)[1]
        back = "restore the previous bus.family_shards"
    return str(source.error(path, (
        f"is {shown}, but the event bus in this Redis (key prefix {prefix}) was laid out "
        f"with {recorded.describe()} (configured: {configured.describe()}). Starting would "
        "move source families to other streams, away from their unconsumed events and "
        "their dedupe markers. Stop the collectors and rules workers and run "
        f"`{reshard_command(source)}` to move them, or {back}"
    )))
