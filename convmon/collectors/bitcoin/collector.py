"""The bitcoin collector: follows the best chain, attributes blocks, publishes events.

Flow: wake on a push (websocket ``block`` / ZMQ ``hashblock``; also at once when that
channel drops) or every poll interval -> `sync`: compare the checkpoint ``height:hash``
with the source's hash at that height; equal -> fetch the following blocks up to the tip,
checking each ``previousblockhash`` against the block before it; different -> walk back
through the Redis block record to the fork point and publish ONE ``bitcoin.reorg`` event
(the disconnected blocks) followed by the new blocks. Events and the checkpoint go out in
one `EventBus.publish` (atomic), so a restart resumes exactly where the bus is. On first
start (no checkpoint), or when the checkpoint is more than ``backfill_blocks`` behind the
tip, the last ``backfill_blocks`` blocks are fetched.

Crash safety: plain extensions write the record before publishing (a replay republishes
the same ids: no-op). A reorg is first journaled in Redis (record changes + events), then
applied and published, then the journal is cleared; a restart replays a leftover journal.

Replicas: several collectors may follow the same chain into the same Redis. The bus cannot
compare-and-set the checkpoint, so each replica re-reads it before writing: a batch or a
reorg computed from a checkpoint another replica has since moved is dropped and the replica
resyncs from the shared one. A reorg reports only what the shared record still shows off the
chain; when the record already shows the new chain, no reorg event is published.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import aiohttp
import msgspec

from convmon.collectors.bitcoin.attribution import UNKNOWN_SLUG, Attributor
from convmon.collectors.bitcoin.blocks import ChainBlock, block_event, block_payload
from convmon.collectors.bitcoin.errors import BitcoinCollectorError, ReorgTooDeep
from convmon.collectors.bitcoin.record import BlockRecord, RecordedBlock
from convmon.collectors.bitcoin.sources import ChainSource, describe_error, safe_url
from convmon.monitor.backoff import Backoff
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import Clock
from convmon.monitor.events import BitcoinAttribution, BitcoinReorg, BlockRef, Event
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)

CHECKPOINT_SOURCE = "bitcoin"
Progress = Callable[[int, int], None]


class _Journal(msgspec.Struct):
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


def reorg_short_id(reorg_event_id: str) -> str:
    """16 hex digits naming a reorg in the ids of the blocks its new branch connects; the
    same on every replica that computes the same reorg."""
    return hashlib.sha256(reorg_event_id.encode()).hexdigest()[:16]


def _cp_value(cp: tuple[int, str] | None) -> str:
    return f"{cp[0]}:{cp[1]}" if cp is not None else ""


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
        registry_loader: Callable[[], Awaitable[Attributor | None]] | None = None,
        registry_refresh_s: float = 6 * 3600.0,
    ) -> None:
        self.source = source
        self.bus = bus
        self.record = record
        self.attributor = attributor
        self.health = health
        self.clock = clock
        self.backfill_blocks = backfill_blocks
        self.poll_interval_s = poll_interval_s
        self.publish_batch = max(1, publish_batch)
        self.backoff = backoff or Backoff(1.0, 60.0)
        self.registry_loader = registry_loader
        self.registry_refresh_s = registry_refresh_s
        self.source_name = f"bitcoin/{source.name}"
        self._journal_key = bus.keys.btc_reorg_journal
        self._wake = asyncio.Event()
        self.push_failures = 0
        self._since_trim = 0
        self._registry_checked = time.monotonic()
        self._applied_version: str | None = None

    async def checkpoint(self) -> tuple[int, str] | None:
        value = await self.bus.get_checkpoint(CHECKPOINT_SOURCE)
        if not value or ":" not in value:
            return None
        height, _, block_hash = value.partition(":")
        return (int(height), block_hash) if height.isdigit() else None

    def _recorded(self, block: ChainBlock) -> RecordedBlock:
        return RecordedBlock(block_payload(block, self.attributor), block.coinbase_hex)

    async def _publish_blocks(
        self, blocks: Sequence[RecordedBlock], *, move_tip: bool,
        expect: tuple[int, str] | None = None,
    ) -> bool:
        """Record and publish ``blocks``; with ``move_tip`` also move the checkpoint, but
        only if it still is ``expect`` (what this batch was built on). Another replica may
        have moved it meanwhile (past us, or through a reorg): then nothing is written and
        False is returned, and the caller resyncs from the shared checkpoint."""
        if move_tip and await self.checkpoint() != expect:
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
            if self._since_trim >= 100:
                self._since_trim = 0
                await self.record.trim(tip.height)
        return True

    async def recover(self) -> None:
        """Finish a reorg interrupted by a crash (idempotent)."""
        raw = await self.bus.redis.get(self._journal_key)
        if raw is None:
            return
        try:
            journal = msgspec.json.decode(raw, type=_Journal)
        except (msgspec.DecodeError, msgspec.ValidationError):
            await self._drop_journal(raw)
            return
        await self._apply_journal(journal, raw)

    async def _drop_journal(self, raw: bytes | str) -> None:
        await self.bus.redis.eval(_DELETE_IF_SAME, 1, self._journal_key, raw)

    async def _apply_journal(self, journal: _Journal, raw: bytes | str) -> bool:
        """Apply ``journal`` unless the shared checkpoint shows another replica already
        applied it and moved on (publishing it again would move the checkpoint back)."""
        if journal.expect:
            current = _cp_value(await self.checkpoint())
            if current not in (journal.expect, journal.checkpoint):
                await self._drop_journal(raw)
                return False
        await self.record.put(journal.put, remove=journal.remove)
        await self.bus.publish(journal.events, checkpoint=(CHECKPOINT_SOURCE, journal.checkpoint))
        await self._drop_journal(raw)
        return True

    async def sync(self, progress: Progress | None = None) -> int:
        """Bring the bus up to the source's tip; returns how many blocks were published."""
        total = 0
        for _ in range(1000):
            added, done = await self._sync_once(progress)
            total += added
            if done:
                return total
        return total

    async def _sync_once(self, progress: Progress | None) -> tuple[int, bool]:
        tip = await self.source.tip_height()
        cp = await self.checkpoint()
        if cp is None:
            start = max(0, tip - self.backfill_blocks + 1)
            return await self._extend(start, tip, None, progress, expect=None)
        height, block_hash = cp
        if tip - height > self.backfill_blocks:
            # Down for longer than the backfill depth: like a first start, fetch only the
            # last ``backfill_blocks`` (older ones cannot be in any window by now).
            log.warning("checkpoint far behind the tip; skipping ahead",
                        extra={"checkpoint": height, "tip": tip})
            return await self._extend(
                tip - self.backfill_blocks + 1, tip, None, progress, expect=cp
            )
        if height <= tip and await self.source.block_hash(height) == block_hash:
            if height == tip:
                return 0, True
            return await self._extend(height + 1, tip, block_hash, progress, expect=cp)
        return await self._reorg(height, block_hash, tip), False

    async def _extend(
        self, start: int, end: int, prev_hash: str | None, progress: Progress | None,
        *, expect: tuple[int, str] | None,
    ) -> tuple[int, bool]:
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
                batch.append(self._recorded(block))
                prev_hash = block.hash
                height += 1
            if batch:
                if not await self._publish_blocks(batch, move_tip=True, expect=expect):
                    return published, False
                published += len(batch)
                expect = (batch[-1].block.height, batch[-1].block.hash)
            if len(batch) < last - first + 1:
                # The chain changed (or shrank) while we walked it: resync from here.
                return published, False
            if progress is not None:
                progress(height - start, end - start + 1)
        return published, True

    async def _reorg(self, old_height: int, old_hash: str, tip: int) -> int:
        """Handle a checkpoint that is no longer on the source's chain. Another replica may
        be handling (or have handled) the same reorg: a leftover journal is finished first,
        what is disconnected is what the shared record shows off the chain (nothing: no
        reorg event), and the checkpoint is re-read before anything is written."""
        expect = (old_height, old_hash)
        if await self.bus.redis.exists(self._journal_key):
            await self.recover()
            return 0
        fork = min(old_height, tip)
        link: str | None = None
        while fork >= 0:
            stored = await self.record.get(fork)
            if stored is None:
                # Deeper than the record reaches (or the record was lost): take this height
                # as the fork; what was recorded above it is reported as disconnected.
                log.warning("fork point below the recorded blocks", extra={"height": fork})
                break
            if await self.source.block_hash(fork) == stored.block.hash:
                link = stored.block.hash
                break
            fork -= 1
        if fork < 0:
            raise ReorgTooDeep("no common block with the source")
        top = await self.record.get(old_height)
        if top is None and fork >= old_height:
            # The record lacks the checkpoint's block, which is off the chain: it alone is
            # known to be disconnected.
            fork, link = old_height - 1, None
        disconnected: list[BlockRef] = []
        for height in range(fork + 1, old_height + 1):
            old = await self.record.get(height)
            if old is not None:
                disconnected.append(BlockRef(height, old.block.hash, old.block.pool))
        if top is None:
            disconnected.append(BlockRef(old_height, old_hash))
        if not disconnected:
            # The record already shows the source's chain up to the checkpoint's height:
            # another replica handled this reorg. Nothing to report; catch the checkpoint up
            # to the record unless that replica already moved it.
            if top is not None and await self.checkpoint() == expect:
                await self.bus.set_checkpoint(
                    CHECKPOINT_SOURCE, f"{old_height}:{top.block.hash}"
                )
            return 0
        new_blocks: list[RecordedBlock] = []
        last = min(tip, max(old_height, fork + 1) + self.publish_batch)
        for height in range(fork + 1, last + 1):
            block = await self.source.block(await self.source.block_hash(height))
            if link is not None and block.prev_hash != link:
                raise BitcoinCollectorError("chain changed during reorg handling; retrying")
            new_blocks.append(self._recorded(block))
            link = block.hash
        if new_blocks:
            new_tip_height, new_tip_hash = new_blocks[-1].block.height, new_blocks[-1].block.hash
        else:
            new_tip_height, new_tip_hash = fork, link or await self.source.block_hash(fork)
        now = self.clock.now()
        reorg = Event(
            id=f"btc:reorg:{fork}:{disconnected[-1].hash}:{new_tip_hash}",
            chain="bitcoin",
            source=self.source_name,
            observed_at=now,
            occurred_at=now,
            position=fork,
            payload=BitcoinReorg(
                fork_height=fork,
                depth=old_height - fork,
                disconnected=disconnected,
                new_tip_height=new_tip_height,
                new_tip_hash=new_tip_hash,
            ),
        )
        short = reorg_short_id(reorg.id)
        events = [reorg, *(block_event(b.block, self.source_name, now, short) for b in new_blocks)]
        journal = _Journal(
            put=new_blocks,
            remove=[r.height for r in disconnected if r.height > new_tip_height],
            events=events,
            checkpoint=f"{new_tip_height}:{new_tip_hash}",
            expect=_cp_value(expect),
        )
        if await self.checkpoint() != expect:
            return 0  # another replica moved the checkpoint meanwhile: resync from it
        raw = msgspec.json.encode(journal)
        await self.bus.redis.set(self._journal_key, raw)
        if not await self._apply_journal(journal, raw):
            return 0
        log.warning(
            "bitcoin reorg",
            extra={"fork_height": fork, "depth": old_height - fork, "new_tip": new_tip_height},
        )
        await self.health.progress(new_tip_height)
        return len(new_blocks)

    async def backfill(self, blocks: int, progress: Progress | None = None) -> int:
        """Publish the last ``blocks`` blocks (older ones below the checkpoint as plain
        events; the checkpoint only ever moves forward), then sync to the tip."""
        tip = await self.source.tip_height()
        start = max(0, tip - blocks + 1)
        cp = await self.checkpoint()
        if cp is None:
            saved = self.backfill_blocks
            self.backfill_blocks = blocks
            try:
                return await self.sync(progress)
            finally:
                self.backfill_blocks = saved
        done = 0
        end = min(cp[0], tip)
        batch: list[RecordedBlock] = []
        for height in range(start, end + 1):
            block_hash = await self.source.block_hash(height)
            batch.append(self._recorded(await self.source.block(block_hash)))
            if len(batch) >= self.publish_batch or height == end:
                await self._publish_blocks(batch, move_tip=False)
                done += len(batch)
                batch = []
                if progress is not None:
                    progress(done, tip - start + 1)
        done += await self.sync()
        if progress is not None:
            progress(tip - start + 1, tip - start + 1)
        return done

    async def apply_registry(self, attributor: Attributor) -> int:
        """Switch to a new pool list; re-attribute ``unknown`` blocks still in the record
        and publish a ``bitcoin.attribution`` event for each one that now matches.

        The events go out before the record changes: if publishing fails, the record still
        shows the blocks as ``unknown`` and the next call (or a restarted collector, which
        calls this at start) finds them again; the ids carry the list's version, so a replay
        is a no-op on the bus."""
        if attributor.version == self._applied_version:
            self.attributor = attributor
            return 0
        updated: list[RecordedBlock] = []
        events: list[Event] = []
        now = self.clock.now()
        for rb in await self.record.latest(self.record.keep):
            if rb.block.pool != UNKNOWN_SLUG or rb.block.registry_version == attributor.version:
                continue
            attr = attributor.attribute(rb.coinbase_hex, rb.block.payout_addresses)
            if attr.pool == UNKNOWN_SLUG:
                continue
            block = msgspec.structs.replace(
                rb.block, pool=attr.pool, pool_name=attr.pool_name, entity=attr.entity,
                match=attr.match, registry_version=attributor.version,
            )
            updated.append(RecordedBlock(block, rb.coinbase_hex))
            events.append(
                Event(
                    id=f"btc:attr:{block.hash}:{attributor.version}",
                    chain="bitcoin",
                    source=self.source_name,
                    observed_at=now,
                    occurred_at=float(block.timestamp),
                    position=block.height,
                    payload=BitcoinAttribution(
                        height=block.height, hash=block.hash, pool=attr.pool,
                        pool_name=attr.pool_name, entity=attr.entity, match=attr.match,
                        registry_version=attributor.version,
                    ),
                )
            )
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

    async def store_registry_info(self) -> None:
        """Publish which pool list is in use (read by the gauges and ``/api/v1/status``)."""
        await self.bus.redis.hset(
            self.bus.keys.btc_registry,
            mapping={
                "version": self.attributor.version,
                "pools": len(self.attributor.registry.pools),
                "origin": safe_url(self.attributor.registry.origin)
                if "://" in self.attributor.registry.origin
                else self.attributor.registry.origin,
            },
        )

    async def _maybe_refresh_registry(self) -> None:
        if self.registry_loader is None:
            return
        if time.monotonic() - self._registry_checked < self.registry_refresh_s:
            return
        self._registry_checked = time.monotonic()
        try:
            attributor = await self.registry_loader()
        except (OSError, ValueError) as exc:
            error = describe_error(exc) if isinstance(exc, aiohttp.ClientError) else str(exc)
            log.warning("pool list refresh failed", extra={"error": error})
            return
        if attributor is not None:
            await self.apply_registry(attributor)
            await self.store_registry_info()

    async def _watch_loop(self) -> None:
        backoff = Backoff(1.0, 60.0)
        while True:
            try:
                await self.source.watch(self._wake)
            except (aiohttp.ClientError, OSError, TimeoutError, BitcoinCollectorError) as exc:
                self.push_failures += 1
                log.info("push channel failed", extra={"error": describe_error(exc)})
            else:
                backoff.reset()
            self._wake.set()  # poll at once: a block may have come while it was down
            await asyncio.sleep(backoff.next_delay())

    async def run(self) -> None:
        await self.recover()
        await self.apply_registry(self.attributor)
        await self.store_registry_info()
        watcher = asyncio.create_task(self._watch_loop(), name="bitcoin-watch")
        try:
            while True:
                try:
                    await self.sync()
                    self.backoff.reset()
                    if not self.health.is_connected:
                        await self.health.connected(self.source.name)
                except (BitcoinCollectorError, aiohttp.ClientError, TimeoutError) as exc:
                    detail = describe_error(exc)
                    await self.health.error("sync", detail)
                    await self.health.disconnected(detail[:200])
                    await asyncio.sleep(self.backoff.next_delay())
                    continue
                await self._maybe_refresh_registry()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval_s)
                self._wake.clear()
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await self.source.close()
