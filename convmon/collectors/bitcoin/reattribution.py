"""Switching the pool list while running: reload it periodically, re-attribute the recorded
``unknown`` blocks it now matches, publish a ``bitcoin.attribution`` event for each.

The events go out before the record changes: if publishing fails, the record still shows
the blocks as ``unknown`` and the next switch (or a restarted collector, which applies its
list at start) finds them again; the ids carry the list's version, so a replay is a no-op
on the bus.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
import msgspec

from convmon.collectors.bitcoin.attribution import UNKNOWN_SLUG, Attributor
from convmon.collectors.bitcoin.jurisdictions import curated_map
from convmon.collectors.bitcoin.record import BlockRecord, RecordedBlock
from convmon.collectors.bitcoin.sources import describe_error, safe_url
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import Clock
from convmon.monitor.events import BitcoinAttribution, Event

log = logging.getLogger(__name__)

RegistryLoader = Callable[[], Awaitable[Attributor | None]]
"""Loads the configured pool list again; None keeps the one in use."""


class PoolListRefresher:
    """Holds the `Attributor` in use and replaces it when the pool list changes."""

    def __init__(
        self, *, bus: EventBus, record: BlockRecord, clock: Clock, source_name: str,
        attributor: Attributor, loader: RegistryLoader | None, refresh_s: float,
        configured_origin: str | None = None,
    ) -> None:
        self.bus = bus
        self.record = record
        self.clock = clock
        self.source_name = source_name
        self.attributor = attributor
        self.loader = loader
        self.refresh_s = refresh_s
        self.configured_origin = configured_origin
        """Origin of the configured list (`registry.configured_origin`); a list in use from
        elsewhere is a fallback. None: not known, never reported as a fallback."""
        self._last_checked = clock.now()
        self._applied_version: str | None = None

    async def apply(self, attributor: Attributor) -> int:
        """Switch to ``attributor``; returns how many recorded blocks it re-attributed."""
        if attributor.version == self._applied_version:
            self.attributor = attributor
            return 0
        updated: list[RecordedBlock] = []
        events: list[Event] = []
        now = self.clock.now()
        for recorded in await self.record.latest(self.record.keep):
            reattributed = self._reattribute(recorded, attributor)
            if reattributed is not None:
                updated.append(reattributed)
                events.append(self._attribution_event(reattributed, attributor.version, now))
        if updated:
            await self.bus.publish(events)
            await self.record.put(updated)
        self.attributor = attributor
        self._applied_version = attributor.version
        log.info(
            "pool list changed",
            extra={"version": attributor.version, "reattributed": len(updated)},
        )
        return len(updated)

    @property
    def fallback(self) -> bool:
        """True when the list in use is not the configured one (the cache or the curated
        list stands in for it)."""
        origin = self.attributor.registry.origin
        return self.configured_origin is not None and origin != self.configured_origin

    async def store_info(self) -> None:
        """Publish which pool list is in use (read by the gauges and ``/api/v1/status``):
        version, size, origin, the configured origin and, while a fallback list stands in,
        since when (kept across restarts, so a day of fallback is a day whatever restarts)."""
        origin = _printable_origin(self.attributor.registry.origin)
        key = self.bus.keys.btc_registry
        previous = await self.bus.redis.hgetall(key)
        was_fallback = previous.get(b"fallback") == b"1"
        mapping: dict[str, str] = {
            "version": self.attributor.version,
            "pools": str(len(self.attributor.registry.pools)),
            "origin": origin,
            "configured": _printable_origin(self.configured_origin or origin),
            "fallback": "1" if self.fallback else "0",
        }
        if self.fallback:
            since = previous.get(b"fallback_since") if was_fallback else None
            kept = since.decode() if isinstance(since, bytes) else since
            mapping["fallback_since"] = kept or repr(self.clock.now())
        async with self.bus.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={k: v for k, v in mapping.items()})
            if not self.fallback:
                pipe.hdel(key, "fallback_since")
            await pipe.execute()
        if was_fallback and not self.fallback:
            log.warning(
                "configured pool list in use again: %s (%d pools)",
                origin, len(self.attributor.registry.pools),
                extra={"origin": origin, "pools": len(self.attributor.registry.pools)},
            )

    async def refresh_if_due(self) -> None:
        """Reload the pool list once ``refresh_s`` (on the injected clock) has passed since
        the last check; a failed reload keeps the list in use."""
        if self.loader is None or self.clock.now() - self._last_checked < self.refresh_s:
            return
        self._last_checked = self.clock.now()
        try:
            attributor = await self.loader()
        except (OSError, ValueError) as exc:
            error = describe_error(exc) if isinstance(exc, aiohttp.ClientError) else str(exc)
            log.warning("pool list refresh failed", extra={"error": error})
            return
        if attributor is not None:
            await self.apply(attributor)
            await self.store_info()

    @staticmethod
    def _reattribute(recorded: RecordedBlock, attributor: Attributor) -> RecordedBlock | None:
        """``recorded`` attributed by ``attributor`` if it was unknown and now matches."""
        block = recorded.block
        if block.pool != UNKNOWN_SLUG or block.registry_version == attributor.version:
            return None
        attribution = attributor.attribute(
            recorded.coinbase_hex, block.payout_addresses, float(block.timestamp)
        )
        if attribution.pool == UNKNOWN_SLUG:
            return None
        block = msgspec.structs.replace(
            block, pool=attribution.pool, pool_name=attribution.pool_name,
            entity=attribution.entity, match=attribution.match,
            registry_version=attributor.version,
            jurisdiction=curated_map().at(
                attribution.pool, attribution.entity, float(block.timestamp)
            ),
        )
        return RecordedBlock(block, recorded.coinbase_hex)

    def _attribution_event(self, recorded: RecordedBlock, version: str, now: float) -> Event:
        block = recorded.block
        return Event(
            id=f"btc:attr:{block.hash}:{version}",
            chain="bitcoin",
            source=self.source_name,
            observed_at=now,
            occurred_at=float(block.timestamp),
            position=block.height,
            payload=BitcoinAttribution(
                height=block.height, hash=block.hash, pool=block.pool,
                pool_name=block.pool_name, entity=block.entity, match=block.match,
                registry_version=version, jurisdiction=block.jurisdiction,
            ),
        )


def _printable_origin(origin: str) -> str:
    return safe_url(origin) if "://" in origin else origin
