"""The Tron stablecoin collector: one component that follows every (token, event) stream.

In: pages of the events API (`TronGridClient`), oldest first, confirmed events only. Out:
``stablecoin.mint`` / ``stablecoin.burn`` events (`decode`), and one checkpoint per stream
(source ``stablecoins/tron:<symbol>:<event name>``): the ``block_timestamp`` (ms) of the
newest event published, stored atomically with each page's events.

Why a timestamp and the first page again on restart: fingerprints are cursors of one
query and expire, while ``min_block_timestamp`` is inclusive, so resuming from the last
published timestamp re-reads at most that block's events, whose ids the bus already holds.
A stream is drained page by page through ``meta.fingerprint``, then rests for
``poll_interval_s``. Nothing advances a checkpoint but a page that parsed and said
``success: true``; an event still flagged ``_unconfirmed`` ends the round before it.
Failures (HTTP errors, ``success: false``, 429, dropped connections, unreadable pages) are
reported through `CollectorHealth` and retried with backoff (429: the server's
``Retry-After``, capped by ``backoff_max_s``).
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from convmon.collectors.errors import MalformedPayload, SourceUnavailable
from convmon.collectors.stablecoins.tron.client import EventsPage, TronGridClient
from convmon.collectors.stablecoins.tron.config import TronStablecoinsConfig, TronToken
from convmon.collectors.stablecoins.tron.decode import flow_event
from convmon.collectors.stablecoins.tron.errors import MalformedEvent, RateLimited, TronApiError
from convmon.monitor.backoff import Backoff
from convmon.monitor.bus import EventBus
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.events import Event
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)

COLLECTOR = "stablecoins_tron"


@dataclass(frozen=True, slots=True)
class Stream:
    symbol: str
    token: TronToken
    event_name: str
    source: str

    @property
    def checkpoint(self) -> str:
        return f"{self.source}:{self.symbol}:{self.event_name}"


def streams(cfg: TronStablecoinsConfig) -> list[Stream]:
    return [
        Stream(symbol, token, name, cfg.source)
        for symbol, token in sorted(cfg.active_tokens().items())
        for name in token.event_names
    ]


# One counter per registry (a registry refuses a second metric of the same name).
_PAGES: weakref.WeakKeyDictionary[CollectorRegistry, Counter] = weakref.WeakKeyDictionary()


def _pages_counter(registry: CollectorRegistry) -> Counter:
    if registry not in _PAGES:
        _PAGES[registry] = Counter(
            "convmon_tron_api_pages",
            "Event pages requested from the Tron events API, by outcome (ok, rate_limited, "
            "api_error, unavailable, malformed).",
            ["outcome"],
            registry=registry,
        )
    return _PAGES[registry]


class TronStablecoinCollector:
    """One `Component`: drains each stream, rests, repeats."""

    name = COLLECTOR

    def __init__(
        self,
        cfg: TronStablecoinsConfig,
        *,
        bus: EventBus,
        clock: Clock,
        health: CollectorHealth,
        registry: CollectorRegistry,
        client: TronGridClient | None = None,
    ) -> None:
        self.cfg = cfg
        self.bus = bus
        self.clock = clock
        self.health = health
        self.collector_health = health
        self.client = client or TronGridClient(
            cfg.api_url, cfg.api_key, timeout_s=cfg.request_timeout_s)
        self.streams = streams(cfg)
        self._pages = _pages_counter(registry)

    async def run(self) -> None:
        backoff = Backoff(self.cfg.backoff_initial_s, self.cfg.backoff_max_s)
        try:
            while True:
                honour_cancellation()
                try:
                    for stream in self.streams:
                        await self.drain(stream)
                except (SourceUnavailable, MalformedPayload) as exc:
                    await asyncio.sleep(await self._failed(exc, backoff))
                    continue
                backoff.reset()
                await self.clock.sleep(self.cfg.poll_interval_s)
        finally:
            await self.client.close()

    async def _failed(self, exc: Exception, backoff: Backoff) -> float:
        """Report a failed request; returns how long to wait before the next one."""
        delay = backoff.next_delay()
        if isinstance(exc, RateLimited):
            self._pages.labels("rate_limited").inc()
            await self.health.error("rate_limited", str(exc))
            if exc.retry_after is not None:
                delay = min(exc.retry_after, self.cfg.backoff_max_s)
            return delay
        if isinstance(exc, MalformedPayload):
            self._pages.labels("malformed").inc()
            self.health.malformed("page", str(exc))
            return delay
        outcome = "api_error" if isinstance(exc, TronApiError) else "unavailable"
        self._pages.labels(outcome).inc()
        await self.health.error(outcome, str(exc))
        await self.health.disconnected(str(exc))
        return delay

    async def start_timestamp(self, stream: Stream) -> int:
        """The stream's checkpoint (ms), set to now minus the lookback when it has none."""
        stored = await self.bus.get_checkpoint(stream.checkpoint)
        if stored is not None:
            try:
                return int(stored)
            except ValueError:
                log.warning("unreadable Tron checkpoint replaced",
                            extra={"collector": COLLECTOR, "stream": stream.checkpoint})
        start = int((self.clock.now() - self.cfg.initial_lookback_s) * 1000)
        await self.bus.set_checkpoint(stream.checkpoint, str(start))
        return start

    async def drain(self, stream: Stream) -> int:
        """Publish every confirmed event of ``stream`` since its checkpoint; returns how
        many events were new on the bus."""
        since = await self.start_timestamp(stream)
        query_since = since  # a fingerprint continues one query: its parameters stay put
        fingerprint: str | None = None
        published = 0
        while True:
            honour_cancellation()
            page = await self.client.events(
                stream.token.address, stream.event_name, min_block_timestamp=query_since,
                limit=self.cfg.page_limit, fingerprint=fingerprint,
            )
            self._pages.labels("ok").inc()
            if not self.health.is_connected:
                await self.health.connected(f"events API {self.cfg.api_url.redacted()}")
            events, newest, complete = self._page_events(stream, page)
            if newest is not None and newest > since:
                since = newest
            if events or newest is not None:
                published += int(await self.bus.publish(
                    events, checkpoint=(stream.checkpoint, str(since))))
                await self.health.progress(since, since / 1000.0)
            if not complete or not page.fingerprint or not page.size:
                return published
            fingerprint = page.fingerprint

    def _page_events(
        self, stream: Stream, page: EventsPage,
    ) -> tuple[list[Event], int | None, bool]:
        """(events to publish, newest block timestamp covered, whether the page was read
        to its end: False when an unconfirmed event stopped it)."""
        for reason in page.malformed:
            self.health.malformed("event", reason)
        out: list[Event] = []
        newest: int | None = None
        now = self.clock.now()
        for ev in page.events:
            if ev.unconfirmed:
                return out, newest, False
            try:
                event = flow_event(ev, stream.symbol, stream.token,
                                   source=stream.source, observed_at=now)
            except MalformedEvent as exc:
                self.health.malformed("event", f"{ev.transaction_id[:70]}: {exc}")
                event = None
            if event is not None:
                out.append(event)
            newest = ev.block_timestamp if newest is None else max(newest, ev.block_timestamp)
        return out, newest, True
