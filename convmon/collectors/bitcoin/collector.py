"""The bitcoin collector: follows the best chain, attributes blocks, publishes events.

Flow: wake on a push (websocket ``block`` / ZMQ ``hashblock``; also at once when that
channel drops) or every poll interval -> `sync`: compare the checkpoint ``height:hash``
with the source's hash at that height; equal -> fetch the following blocks up to the tip,
checking each ``previousblockhash`` against the block before it, and publish them
(`publish`); different -> hand the reorg to `reorg`, which walks back through the Redis
block record to the fork point and publishes ONE ``bitcoin.reorg`` event (the disconnected
blocks) followed by the new blocks, through the crash-safe `journal`. On first start (no
checkpoint), or when the checkpoint is more than the backfill depth behind the tip, the
last ``backfill_blocks`` blocks are fetched; `backfill` republishes older ones on demand.
Between syncs the pool list is reloaded now and then (`reattribution`).

Crash safety: plain extensions write the record before publishing (a replay republishes
the same ids: no-op); a reorg is journaled first and a restart replays a leftover journal.

Replicas: several collectors may follow the same chain into the same Redis. The bus cannot
compare-and-set the checkpoint, so each replica re-reads it before writing: a batch or a
reorg computed from a checkpoint another replica has since moved is dropped and the replica
resyncs from the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import aiohttp
import msgspec

from convmon.collectors.bitcoin.attribution import UNKNOWN_SLUG, Attributor
from convmon.collectors.bitcoin.backfill import Progress, republish_range
from convmon.collectors.bitcoin.blocks import ChainBlock, block_payload
from convmon.collectors.bitcoin.checkpoint import Checkpoint, read_checkpoint
from convmon.collectors.bitcoin.errors import BitcoinCollectorError
from convmon.collectors.bitcoin.journal import ReorgJournal
from convmon.collectors.bitcoin.jurisdictions import curated_map
from convmon.collectors.bitcoin.publish import BlockPublisher
from convmon.collectors.bitcoin.reattribution import PoolListRefresher, RegistryLoader
from convmon.collectors.bitcoin.record import BlockRecord, RecordedBlock
from convmon.collectors.bitcoin.reorg import ReorgHandler
from convmon.collectors.bitcoin.sources import ChainSource, describe_error
from convmon.collectors.bitcoin.stratum_state import read_state
from convmon.monitor.backoff import Backoff
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import Clock
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)

MAX_SYNC_ROUNDS = 1000


class BitcoinCollector:
    name = "bitcoin"

    def __init__(
        self,
        *,
        source: ChainSource,
        bus: EventBus,
        record: BlockRecord,
        attributor: Attributor,
        health: CollectorHealth,
        clock: Clock,
        backfill_blocks: int = 2016,
        poll_interval_s: float = 30.0,
        publish_batch: int = 50,
        backoff: Backoff | None = None,
        registry_loader: RegistryLoader | None = None,
        registry_refresh_s: float = 6 * 3600.0,
        configured_origin: str | None = None,
    ) -> None:
        self.source = source
        self.bus = bus
        self.record = record
        self.health = health
        self.clock = clock
        self.backfill_blocks = backfill_blocks
        self.poll_interval_s = poll_interval_s
        self.publish_batch = max(1, publish_batch)
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.source_name = f"bitcoin/{source.name}"
        self.pools = PoolListRefresher(
            bus=bus, record=record, clock=clock, source_name=self.source_name,
            attributor=attributor, loader=registry_loader, refresh_s=registry_refresh_s,
            configured_origin=configured_origin,
        )
        self.publisher = BlockPublisher(
            bus=bus, record=record, health=health, clock=clock, source_name=self.source_name
        )
        self.journal = ReorgJournal(bus, record)
        self.reorgs = ReorgHandler(
            source=source, bus=bus, record=record, journal=self.journal, health=health,
            clock=clock, source_name=self.source_name, publish_batch=self.publish_batch,
            to_record=self._to_record,
        )
        self._wake = asyncio.Event()
        self.push_failures = 0
        self.template_providers: dict[str, str] = {}
        """Pool -> template provider, from the stratum collector (`stratum_state`)."""
        self.places = curated_map()
        """Headquarters jurisdictions, stamped on each block at its timestamp."""

    @property
    def attributor(self) -> Attributor:
        """The pool list in use."""
        return self.pools.attributor

    async def checkpoint(self) -> Checkpoint | None:
        return await read_checkpoint(self.bus)

    def _to_record(self, block: ChainBlock) -> RecordedBlock:
        payload = block_payload(block, self.pools.attributor)
        payload = msgspec.structs.replace(payload, jurisdiction=self.places.at(
            payload.pool, payload.entity, float(payload.timestamp)
        ) if payload.pool != UNKNOWN_SLUG else UNKNOWN_SLUG)
        if self.template_providers and payload.pool != UNKNOWN_SLUG:
            provider = self.template_providers.get(payload.pool, payload.pool)
            payload = msgspec.structs.replace(payload, template_provider=provider)
        return RecordedBlock(payload, block.coinbase_hex)

    async def refresh_template_providers(self) -> None:
        """Re-read the stratum collector's pool -> provider mapping (empty without one)."""
        providers = (await read_state(self.bus.redis, self.bus.keys)).get("providers")
        self.template_providers = (
            {str(k): str(v) for k, v in providers.items()} if isinstance(providers, dict)
            else {}
        )

    async def recover(self) -> None:
        """Finish a reorg interrupted by a crash (idempotent)."""
        await self.journal.replay()

    async def sync(self, progress: Progress | None = None, *, depth: int | None = None) -> int:
        """Bring the bus up to the source's tip; returns how many blocks were published.
        ``depth`` (default ``backfill_blocks``) is how far back a first start, or a
        checkpoint too far behind, reaches."""
        depth = self.backfill_blocks if depth is None else depth
        total = 0
        for _ in range(MAX_SYNC_ROUNDS):
            added, done = await self._sync_once(progress, depth)
            total += added
            if done:
                return total
        return total

    async def _sync_once(self, progress: Progress | None, depth: int) -> tuple[int, bool]:
        tip = await self.source.tip_height()
        checkpoint = await self.checkpoint()
        if checkpoint is None:
            start = max(0, tip - depth + 1)
            return await self._extend(start, tip, None, progress, expect=None)
        height, block_hash = checkpoint
        if tip - height > depth:
            # Down for longer than the backfill depth: like a first start, fetch only the
            # last ``depth`` blocks (older ones cannot be in any window by now).
            log.warning("checkpoint far behind the tip; skipping ahead",
                        extra={"checkpoint": height, "tip": tip})
            return await self._extend(tip - depth + 1, tip, None, progress, expect=checkpoint)
        if height <= tip and await self.source.block_hash(height) == block_hash:
            if height == tip:
                return 0, True
            return await self._extend(height + 1, tip, block_hash, progress, expect=checkpoint)
        return await self.reorgs.handle(height, block_hash, tip), False

    async def _extend(
        self, start: int, end: int, prev_hash: str | None, progress: Progress | None,
        *, expect: Checkpoint | None,
    ) -> tuple[int, bool]:
        """Publish ``start..end`` in batches, each block linked to the one before; returns
        (published, reached ``end``). Stops early when the chain changed underneath or
        another replica moved the checkpoint: the caller resyncs."""
        published = 0
        height = start
        while height <= end:
            first, last = height, min(end, height + self.publish_batch - 1)
            fetched = await self.source.blocks(height, last)
            batch: list[RecordedBlock] = []
            for block in fetched:
                if block.height != height or (
                    prev_hash is not None and block.prev_hash != prev_hash
                ):
                    break
                batch.append(self._to_record(block))
                prev_hash = block.hash
                height += 1
            if batch:
                if not await self.publisher.publish(batch, move_tip=True, expect=expect):
                    return published, False
                published += len(batch)
                expect = (batch[-1].block.height, batch[-1].block.hash)
            if len(batch) < last - first + 1:
                # The chain changed (or shrank) while we walked it: resync from here.
                return published, False
            if progress is not None:
                progress(height - start, end - start + 1)
        return published, True

    async def backfill(self, blocks: int, progress: Progress | None = None) -> int:
        """Publish the last ``blocks`` blocks (older ones below the checkpoint as plain
        events; the checkpoint only ever moves forward), then sync to the tip."""
        tip = await self.source.tip_height()
        start = max(0, tip - blocks + 1)
        checkpoint = await self.checkpoint()
        if checkpoint is None:
            return await self.sync(progress, depth=blocks)
        total = tip - start + 1
        done = await republish_range(
            source=self.source, publisher=self.publisher, to_record=self._to_record,
            start=start, end=min(checkpoint[0], tip), publish_batch=self.publish_batch,
            progress=progress, total=total,
        )
        done += await self.sync()
        if progress is not None:
            progress(total, total)
        return done

    async def apply_registry(self, attributor: Attributor) -> int:
        """Switch to a new pool list (see `reattribution`); returns how many recorded
        blocks it re-attributed."""
        return await self.pools.apply(attributor)

    async def store_registry_info(self) -> None:
        """Publish which pool list is in use (read by the gauges and ``/api/v1/status``)."""
        await self.pools.store_info()

    async def _follow_pushes(self) -> None:
        """Keep the push channel open; wake the sync loop on every announced block and at
        once whenever the channel drops (a block may have come while it was down)."""
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await self.source.watch(self._wake)
            except (aiohttp.ClientError, OSError, TimeoutError, BitcoinCollectorError) as exc:
                self.push_failures += 1
                log.info("push channel failed", extra={"error": describe_error(exc)})
            else:
                backoff.reset()
            self._wake.set()
            await asyncio.sleep(backoff.next_delay())

    async def run(self) -> None:
        await self.recover()
        await self.apply_registry(self.attributor)
        await self.store_registry_info()
        watcher = asyncio.create_task(self._follow_pushes(), name="bitcoin-watch")
        try:
            while True:
                if not await self._sync_and_report():
                    await asyncio.sleep(self.backoff.next_delay())
                    continue
                await self.pools.refresh_if_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                self._wake.clear()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.source.close()

    async def _sync_and_report(self) -> bool:
        """One sync, reported to the collector's health; False when it failed."""
        try:
            await self.refresh_template_providers()
            await self.sync()
        except (BitcoinCollectorError, aiohttp.ClientError, TimeoutError) as exc:
            detail = describe_error(exc)
            await self.health.error("sync", detail)
            await self.health.disconnected(detail[:200])
            return False
        self.backoff.reset()
        if not self.health.is_connected:
            await self.health.connected(self.source.name)
        return True
