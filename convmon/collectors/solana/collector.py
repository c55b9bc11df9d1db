"""The streaming engine shared by the DePIN and stablecoin collectors.

Flow: `LogsSubscriber` notifications and gap recovery put signatures into the Redis
`SignatureQueue`; the drain loop fetches them with ``getTransaction`` (rate-limited by
`SolanaRpc`), hands each transaction to the collector's ``extract`` function and publishes
the events with a checkpoint, then acknowledges the signatures. A crash between publish and
ack re-fetches; the bus dedupes by event id, so nothing is lost and nothing doubled.

Gap recovery: after every (re)subscription (which includes the first start after a
restart) each address is paged back with ``getSignaturesForAddress(before, until=last
seen)`` to the last signature seen, stored per address under
`Keys.solana_last_seen`. Notifications move that marker only for addresses already
recovered on the current connection: after a restart the first notification can come
before the recovery of its address, and moving the marker then would skip what was
produced while the process was down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import Redis

from convmon.collectors.solana.errors import (
    MalformedTransaction,
    RpcError,
    RpcTransportError,
    UnsupportedTransactionVersion,
)
from convmon.collectors.solana.rpc import RpcSettings, SolanaRpc, gather_limited
from convmon.collectors.solana.sigqueue import SignatureQueue
from convmon.collectors.solana.txshape import block_time_of, signature_of, slot_of
from convmon.collectors.solana.ws import LogsSubscriber, WantedLogs
from convmon.monitor.backoff import Backoff
from convmon.monitor.bus import EventBus
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.events import Event
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.monitor.tasks import run_together

log = logging.getLogger(__name__)

Extract = Callable[[dict[str, Any], float], list[Event]]
"""(jsonParsed transaction, observed_at) -> events; may raise `MalformedTransaction`."""

_CAS_LUA = """
local cur = redis.call('GET', KEYS[1])
if (cur == false and ARGV[1] == '') or cur == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
return 0
"""


class SolanaTxCollector:
    """Subscribe, recover gaps, drain the queue, extract, publish. One per plugin."""

    def __init__(
        self,
        name: str,
        settings: RpcSettings,
        addresses: Sequence[str],
        extract: Extract,
        *,
        redis: Redis,
        keys: Keys,
        bus: EventBus,
        clock: Clock,
        health: CollectorHealth,
        rpc: SolanaRpc | None = None,
        batch: int = 50,
        max_fetch_attempts: int = 5,
        idle_poll_s: float = 1.0,
        wanted_logs: WantedLogs | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.addresses = list(dict.fromkeys(addresses))
        self.extract = extract
        self.redis = redis
        self.keys = keys
        self.bus = bus
        self.clock = clock
        self.health = health
        self.collector_health = health
        self.rpc = rpc or SolanaRpc(settings)
        self.queue = SignatureQueue(redis, keys, name)
        self.batch = batch
        self.max_fetch_attempts = max_fetch_attempts
        self.idle_poll_s = idle_poll_s
        self.wanted_logs = wanted_logs
        """Notifications whose complete logs fail this are not fetched (gap recovery, which
        sees no logs, still fetches everything)."""
        self.unsupported_version = 0
        """Transactions refused with -32015 (raise max_supported_transaction_version)."""
        self.malformed = 0
        self._attempts: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._recover = asyncio.Event()
        self._session = 0
        self._current: set[str] = set()
        """Addresses whose gap was recovered on the current connection (their marker may
        follow notifications)."""
        self._cas = redis.register_script(_CAS_LUA)

    def last_key(self, address: str) -> str:
        return self.keys.solana_last_seen(self.name, address)

    async def run(self) -> None:
        subscriber = LogsSubscriber(
            self.settings.ws_url.reveal(),
            self.addresses,
            commitment=self.settings.commitment,
            health=self.health,
            on_signature=self.on_signature,
            on_connected=self._on_connected,
            on_session=self._on_session,
            ping_interval_s=self.settings.ping_interval_s,
            wanted_logs=self.wanted_logs,
        )
        try:
            await run_together({
                f"{self.name}-ws": subscriber.run(),
                f"{self.name}-recovery": self._recovery_loop(),
                f"{self.name}-drain": self.drain_forever(),
            })
        finally:
            await self.rpc.close()

    async def _on_session(self) -> None:
        # A new connection: every address's marker is stale until its gap is recovered.
        self._session += 1
        self._current.clear()

    async def _on_connected(self) -> None:
        self._recover.set()

    async def on_signature(self, address: str, signature: str, slot: int, skip: bool) -> None:
        if not skip:
            await self.queue.enqueue([signature])
            self._wake.set()
        if address in self._current:
            # Only a recovered address's marker moves with notifications: moving a stale
            # one past the signatures produced while we were away would lose them.
            await self.redis.set(self.last_key(address), signature)

    async def _recovery_loop(self) -> None:
        backoff = Backoff(initial=1.0, maximum=60.0)
        while True:
            honour_cancellation()
            await self._recover.wait()
            self._recover.clear()
            try:
                await self.recover_gaps()
                backoff.reset()
            except (RpcError, RpcTransportError) as exc:
                await self.health.error("gap_recovery", str(exc))
                self._recover.set()
                await backoff.wait()

    async def recover_gaps(self) -> int:
        """Queue every signature between the last one seen and now, per address; each
        address recovered on the current connection then follows its notifications."""
        session = self._session
        total = 0
        for address in self.addresses:
            total += await self._recover_address(address)
            if self._session == session:
                self._current.add(address)
        if total:
            self._wake.set()
        return total

    async def _recover_address(self, address: str) -> int:
        raw = await self.redis.get(self.last_key(address))
        marker = raw.decode() if isinstance(raw, bytes) else raw
        found: list[dict[str, Any]] = []
        if marker is None:
            # First start: begin at the newest signature (or backfill a few). An address
            # without any history is marked with "" so its first signatures are not skipped.
            limit = self.settings.initial_backfill or 1
            found = await self.rpc.get_signatures_for_address(address, limit=limit)
            if not found:
                await self.redis.set(self.last_key(address), "", nx=True)
                return 0
            if not self.settings.initial_backfill:
                await self._cas(keys=[self.last_key(address)], args=["", found[0]["signature"]])
                return 0
        else:
            until = marker or None
            before: str | None = None
            while True:
                page = await self.rpc.get_signatures_for_address(
                    address, before=before, until=until, limit=self.settings.signatures_page
                )
                found.extend(page)
                if len(page) < self.settings.signatures_page:
                    break
                before = page[-1]["signature"]
        if not found:
            return 0
        oldest_first = [r["signature"] for r in reversed(found) if r.get("err") is None]
        added = await self.queue.enqueue(oldest_first)
        await self._cas(keys=[self.last_key(address)], args=[marker or "", found[0]["signature"]])
        if added:
            log.info(
                "gap recovered",
                extra={"collector": self.name, "address": address, "signatures": added},
            )
        return added

    async def drain_forever(self) -> None:
        backoff = Backoff(initial=0.5, maximum=30.0)
        while True:
            honour_cancellation()
            done, stalled = await self.drain_once()
            if stalled:
                await backoff.wait()
                continue
            backoff.reset()
            if done == 0:
                self._wake.clear()
                # asyncio.wait rather than wait_for/timeout: on Python 3.11 those can turn a
                # cancellation racing with the timeout into TimeoutError, and shutdown hangs.
                waiter = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait({waiter}, timeout=self.idle_poll_s)
                finally:
                    waiter.cancel()

    async def drain_once(self) -> tuple[int, bool]:
        """Fetch and handle one batch in queue order. Returns (signatures finished, stalled):
        stalled means the head of the queue could not be fetched now and is kept."""
        sigs = await self.queue.peek(self.batch)
        if not sigs:
            return 0, False
        results = await gather_limited(
            self.settings.fetch_concurrency, [self.rpc.get_transaction(s) for s in sigs]
        )
        now = self.clock.now()
        events: list[Event] = []
        finished: list[str] = []
        stalled = False
        last_slot: int | None = None
        last_time: int | None = None
        for sig, result in zip(sigs, results, strict=True):
            if isinstance(result, UnsupportedTransactionVersion):
                self.unsupported_version += 1
                message = (
                    f"{sig}: {result.message} (maxSupportedTransactionVersion="
                    f"{self.settings.max_supported_transaction_version}; raise "
                    "max_supported_transaction_version, then requeue failed signatures)"
                )
                log.error("transaction version not supported", extra={"detail": message})
                await self.health.error("unsupported_transaction_version", message)
                await self.queue.fail(sig, message, now)
                continue
            if isinstance(result, RpcTransportError):
                # Rate limits and outages: keep the signature at the head and retry later,
                # however long it takes; a burst is slowed down, never dropped.
                await self.health.error("rpc", str(result))
                stalled = True
                break
            if isinstance(result, BaseException):
                if not isinstance(result, RpcError):
                    raise result
                stalled = await self._retry_or_fail(sig, f"{type(result).__name__}: {result}", now)
                if stalled:
                    break
                continue
            if result is None:
                stalled = await self._retry_or_fail(sig, "transaction not found", now)
                if stalled:
                    break
                continue
            try:
                if signature_of(result) != sig:
                    raise MalformedTransaction("answer is for another signature")
                events.extend(self.extract(result, now))
                last_slot, last_time = slot_of(result), block_time_of(result)
            except MalformedTransaction as exc:
                self.malformed += 1
                self.health.malformed("transaction", f"{sig}: {exc}")
            self._attempts.pop(sig, None)
            finished.append(sig)
        if finished:
            await self.bus.publish(events, checkpoint=(self.name, finished[-1]))
            await self.queue.ack(finished, now)
            if last_slot is not None:
                await self.health.progress(last_slot, last_time)
        return len(finished), stalled

    async def _retry_or_fail(self, sig: str, reason: str, now: float) -> bool:
        """Count an attempt; give up after ``max_fetch_attempts`` (returns False then)."""
        attempts = self._attempts.get(sig, 0) + 1
        self._attempts[sig] = attempts
        if attempts >= self.max_fetch_attempts:
            self._attempts.pop(sig, None)
            await self.health.error("fetch_failed", f"{sig}: {reason}")
            await self.queue.fail(sig, reason, now)
            return False
        return True
