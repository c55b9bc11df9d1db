"""The stratum collector: jobs from its sources -> template clusters -> events and state.

Flow: every source (`stratum_sources`) hands parsed jobs to `accept`, which names the
pool (`PoolNamer`), feeds the `TemplateClusterer` and publishes a sampled
``bitcoin.stratum_job``. Every ``flush_interval_s`` the rounds touched since the last
flush go to Redis (so a restart keeps the evidence), the clusters are recomputed, each
pool whose provider changed gets a ``bitcoin.template_cluster_changed`` event, and the
current view is stored for ``convmon pools templates``, the gauges and the block
collector's ``template_provider``.

Events are idempotent: a job event's id is ``btc:stratum:<pool>:<prev_hash>:<fingerprint>``
(one per pool, block and template, however often the pool resends it), a change's id is
``btc:template:<pool>:<provider>:<height>``; replicas and restarts publish the same ids.
Sampling: a pool's first job on a new block always goes out, later templates on the same
block at most once per ``sample_interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Protocol

import msgspec

from convmon.collectors.bitcoin.errors import MalformedJob
from convmon.collectors.bitcoin.stratum import StratumJob
from convmon.collectors.bitcoin.stratum_sources import JobSink
from convmon.collectors.bitcoin.stratum_state import (
    clusterer_doc,
    load_rounds,
    read_state,
    save_rounds,
    write_state,
)
from convmon.collectors.bitcoin.templates import (
    Cluster,
    PoolNamer,
    TemplateClusterer,
    TemplateSettings,
    fingerprint,
)
from convmon.monitor.bus import EventBus
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.events import BitcoinStratumJob, BitcoinTemplateCluster, Event
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)

SHUTDOWN_WAIT_S = 5.0


class StratumSource(Protocol):
    name: str

    async def run(self, sink: JobSink) -> None: ...


class StratumCollector:
    name = "bitcoin_stratum"

    def __init__(
        self, *, bus: EventBus, health: CollectorHealth, clock: Clock, namer: PoolNamer,
        sources: Sequence[StratumSource], settings: TemplateSettings | None = None,
        sample_interval_s: float = 60.0, flush_interval_s: float = 5.0,
        source_name: str = "bitcoin/stratum",
    ) -> None:
        self.bus = bus
        self.redis = bus.redis
        self.keys = bus.keys
        self.health = health
        self.clock = clock
        self.namer = namer
        self.sources = list(sources)
        self.clusterer = TemplateClusterer(settings)
        self.sample_interval_s = sample_interval_s
        self.flush_interval_s = flush_interval_s
        self.source_name = source_name
        self.malformed_count = 0
        self.published_jobs = 0
        self._touched: set[str] = set()
        self._sampled: dict[str, tuple[str, float, set[str]]] = {}
        """pool -> (prev_hash, last published, fingerprints published on it)."""
        self._providers: dict[str, str] = {}
        self._up: set[str] = set()
        self._newest_height = 0

    # JobSink
    async def accept(self, job: StratumJob, via: str) -> None:
        job = msgspec.structs.replace(job, pool=self.namer.name(job))
        self.clusterer.add(job, via)
        self._touched.add(job.prev_hash)
        if job.height is not None and job.height > self._newest_height:
            self._newest_height = job.height
        fp = fingerprint(job.merkle_branches)
        if self._sample(job.pool, job.prev_hash, fp or "empty", job.received):
            await self._publish_job(job, fp, via)

    def malformed(self, what: str, detail: str) -> None:
        self.malformed_count += 1
        self.health.malformed(what, detail)

    async def up(self, source: str) -> None:
        self._up.add(source)
        await self.health.connected(", ".join(sorted(self._up)))

    async def down(self, source: str, detail: str) -> None:
        self._up.discard(source)
        await self.health.error("stratum", detail)
        if not self._up:
            await self.health.disconnected(detail[:200])

    # Sampling and events
    def _sample(self, pool: str, prev_hash: str, fp: str, t: float) -> bool:
        last = self._sampled.get(pool)
        if last is None or last[0] != prev_hash:
            self._sampled[pool] = (prev_hash, t, {fp})
            return True
        _, when, seen = last
        if fp in seen or t - when < self.sample_interval_s:
            return False
        seen.add(fp)
        self._sampled[pool] = (prev_hash, t, seen)
        return True

    async def _publish_job(self, job: StratumJob, fp: str | None, via: str) -> None:
        try:
            evidence = job.coinbase()
        except MalformedJob:
            evidence = None
        payload = BitcoinStratumJob(
            pool=job.pool, height=job.height, prev_hash=job.prev_hash, fingerprint=fp,
            branches=len(job.merkle_branches), clean_jobs=job.clean_jobs,
            received=job.received, via=via, provider=self._providers.get(job.pool),
            coinbase_tag=evidence.tag if evidence else "",
            payout_addresses=evidence.payout_addresses if evidence else [],
            markers=evidence.markers if evidence else [],
            sv2=evidence.sv2.kind if evidence and evidence.sv2 else None,
            ocean_datum=evidence.ocean_datum if evidence else False,
        )
        event = Event(
            id=f"btc:stratum:{job.pool}:{job.prev_hash}:{fp or 'empty'}", chain="bitcoin",
            source=self.source_name, observed_at=self.clock.now(), occurred_at=job.received,
            position=job.height or 0, payload=payload,
        )
        self.published_jobs += await self.bus.publish([event])
        await self.health.progress(job.height or 0, job.received)

    async def flush(self) -> int:
        """Store the touched rounds and the current view; publish provider changes.
        Returns how many change events were new."""
        touched, self._touched = self._touched, set()
        if touched:
            await save_rounds(self.redis, self.keys, self.clusterer, touched)
        clusters = self.clusterer.clusters()
        mapping = self.clusterer.mapping()
        events = self._changes(clusters, mapping)
        added = await self.bus.publish(events) if events else 0
        self._providers = mapping
        doc = clusterer_doc(self.clusterer, self.malformed_count)
        doc["updated_at"] = self.clock.now()
        doc["height"] = self._newest_height
        await write_state(self.redis, self.keys, doc)
        return added

    def _changes(self, clusters: list[Cluster], mapping: dict[str, str]) -> list[Event]:
        by_provider = {c.provider: c for c in clusters}
        now = self.clock.now()
        out: list[Event] = []
        for pool, provider in sorted(mapping.items()):
            previous = self._providers.get(pool)
            if previous == provider or (previous is None and provider == pool):
                continue
            cluster = by_provider.get(provider)
            member = next((m for m in cluster.members if m.pool == pool), None) \
                if cluster else None
            payload = BitcoinTemplateCluster(
                pool=pool, provider=provider, previous=previous,
                confidence=member.confidence if member else 1.0,
                matched_heights=member.matched_heights if member else 0,
                observed_heights=member.observed_heights if member else 0,
                members=cluster.pools if cluster else [pool], height=self._newest_height,
            )
            out.append(Event(
                id=f"btc:template:{pool}:{provider}:{self._newest_height}", chain="bitcoin",
                source=self.source_name, observed_at=now, occurred_at=now,
                position=self._newest_height, payload=payload,
            ))
        return out

    async def restore(self) -> None:
        """Reload the evidence and the last published mapping (so a restart neither
        forgets clusters nor re-announces them)."""
        await load_rounds(self.redis, self.keys, self.clusterer)
        state = await read_state(self.redis, self.keys)
        providers = state.get("providers")
        if isinstance(providers, dict):
            self._providers = {str(k): str(v) for k, v in providers.items()}
        height = state.get("height")
        if isinstance(height, int):
            self._newest_height = height

    async def run(self) -> None:
        await self.restore()
        tasks = [
            asyncio.create_task(source.run(self), name=f"stratum-{source.name}")
            for source in self.sources
        ]
        try:
            while True:
                # redis-py (flush) may have swallowed our cancellation: without this the
                # loop would run on and a stop would wait for ever.
                honour_cancellation()
                done = [t for t in tasks if t.done()]
                if done:
                    # A source returned or failed: let the supervisor restart us.
                    done[0].result()
                    raise RuntimeError(f"stratum source {done[0].get_name()} stopped")
                await asyncio.sleep(self.flush_interval_s)
                await self.flush()
        finally:
            for task in tasks:
                task.cancel()
            # Bounded: a source stuck in a close handshake must not hold the shutdown.
            _, stuck = await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT_S) if tasks else ((), ())
            if stuck:
                log.warning("stratum sources still closing at shutdown",
                            extra={"sources": sorted(t.get_name() for t in stuck)})
            if self._touched:
                await asyncio.shield(self._final_flush())

    async def _final_flush(self) -> None:
        try:
            await save_rounds(self.redis, self.keys, self.clusterer, self._touched)
        except Exception:  # shutting down: the next start loses at most these rounds
            log.warning("stratum rounds not saved at shutdown", exc_info=True)
