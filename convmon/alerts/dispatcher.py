"""The alert dispatcher: outbox → groups → notifications, exactly once per due notification.

In: `AlertTransition`s from the ``keys.alerts`` outbox, read through a consumer group
(``pending`` transitions are ignored). Out: notifications to receivers.

Flow, following Alertmanager:
1. Ingest: route the alert through the route tree and insert it into one aggregation group
   per matching route (`AlertStore.ingest`, atomic and idempotent per transition seq). A new
   group is due after ``group_wait``.
2. Flush: a due group is taken atomically (and re-scheduled ``group_interval`` later), its
   alerts are filtered by silences and inhibition, and the notification log decides whether
   anything is new: new firing alerts, newly resolved alerts (when the receiver has
   ``send_resolved``), everything resolved, or ``repeat_interval`` elapsed. An alert that
   was firing in a notification that could not be delivered (the log's ``owed`` set) and
   resolved before the receiver came back is "missed": with the route's
   ``send_missed_resolved`` (the default) it is delivered as resolved, saying when it fired
   and resolved, so that a receiver outage loses nothing.
3. Deliver: claim (compare-and-set with a lease) → send → mark sent. Failures are retried
   with exponential backoff and jitter (``Retry-After`` wins) by re-scheduling the group;
   the state is in Redis, so an outage spanning restarts still ends in one delivery. After
   ``give_up_after_s`` the notification goes to the dead-letter stream. Marking sent is
   retried through Redis outages: a notification the receiver accepted must not be sent
   again because the log could not be written.
4. Resolved alerts that were evaluated leave the group; an empty group is deleted.

A group that fails unexpectedly (a Redis error, an unreadable record) is counted, logged
and looked at again later; its siblings carry on. On shutdown the dispatcher stops taking
groups, lets the sends already handed to a receiver finish and be recorded (however often
it is cancelled meanwhile; receiver timeouts keep this within the supervisor's shutdown
budget), then closes its HTTP session.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NoReturn

import aiohttp
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from convmon.monitor.alerting import AlertTransition, decode_transition, encode_transition
from convmon.monitor.backoff import Backoff
from convmon.monitor.bus import BusMetrics, Delivery, StreamConsumer
from convmon.monitor.clock import Clock
from convmon.monitor.config import BusSettings
from convmon.monitor.durable import durable_scripts
from convmon.monitor.keys import Keys
from convmon.monitor.tasks import run_together

from .config import AlertmanagerReceiver, AlertsConfig
from .errors import DeliveryError
from .inhibit import Inhibitor
from .metrics import DeliveryMetrics
from .notification import Notification, notification_json
from .receivers import Sender, build_receiver
from .routing import Route
from .silences import Silence, SilenceStore
from .store import NFLOG_TTL_S, AlertStore, Group, GroupTarget, LogEntry

log = logging.getLogger(__name__)

CONSUMER_GROUP = "alerts-dispatcher"
MAX_PARALLEL_GROUPS = 32
MARK_RETRY_INITIAL_S = 0.1
MARK_RETRY_MAX_S = 5.0
_REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
"""Errors of a Redis that is restarting, unreachable or failing over: worth retrying."""


async def wait_through_cancellation(tasks: Collection[asyncio.Future[Any]]) -> bool:
    """Wait until every task is done, however often the caller is cancelled meanwhile
    (the tasks themselves are not cancelled); True when the caller was cancelled."""
    cancelled = False
    pending = {t for t in tasks if not t.done()}
    while pending:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
        pending = {t for t in pending if not t.done()}
    return cancelled


def nflog_ttl_s(route: Route, config: AlertsConfig) -> float:
    """The notification log must outlive the longest repeat interval by a margin: an
    expired log reads as "never sent" and repeats the notification early."""
    intervals = [r.repeat_interval_s for r in _route_tree(route)]
    intervals += [r.resend_interval_s for r in config.receivers
                  if isinstance(r, AlertmanagerReceiver)]
    return max(NFLOG_TTL_S, 2 * max(intervals))


def missed_alerts(entry: LogEntry | None, resolved: set[str]) -> set[str]:
    """Resolved alerts the user may never have heard of: they were firing in a notification
    that was claimed but not delivered since the last successful send (the receiver was
    down), and the last notification delivered did not show them firing."""
    if entry is None:
        return set()
    return (resolved & set(entry.owed)) - set(entry.firing)


def needs_update(
    entry: LogEntry | None, firing: set[str], resolved: set[str], send_resolved: bool,
    repeat_s: float, now: float, missed: set[str] | None = None,
) -> bool:
    """Alertmanager's notification-log decision (``nflog`` ``needsUpdate``), plus: alerts
    ``missed`` during a receiver outage are always worth a notification."""
    if missed:
        return True
    if entry is None:
        return bool(firing)
    if not firing <= set(entry.firing):
        return True
    if not firing:
        return bool(entry.firing)
    if send_resolved and not resolved <= set(entry.resolved):
        return True
    return entry.sent_at is None or entry.sent_at <= now - repeat_s


class Dispatcher:
    """One dispatcher replica. Run as many as you like against one Redis."""

    name = "alerts-dispatcher"

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        config: AlertsConfig,
        clock: Clock,
        metrics: DeliveryMetrics,
        *,
        bus_settings: BusSettings,
        bus_metrics: BusMetrics,
        instance: str = "dispatcher",
        senders: Mapping[str, Sender] | None = None,
        rng: random.Random | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.config = config
        self.clock = clock
        self.metrics = metrics
        metrics.start_at_zero(r.name for r in config.receivers)
        self.instance = instance
        self.route = Route.build(config.route)
        self.durable = durable_scripts(redis, bus_settings)
        self.store = AlertStore(redis, keys, nflog_ttl_s=nflog_ttl_s(self.route, config),
                                durable=self.durable,
                                dead_retention_s=bus_settings.dead_letter_retention_s)
        self.silences = SilenceStore(redis, keys, registry=registry)
        self._routes = {r.id: r for r in _route_tree(self.route)}
        self.inhibitor = Inhibitor(config.inhibit_rules)
        self._given_senders: dict[str, Sender] = dict(senders or {})
        self.senders: dict[str, Sender] = dict(self._given_senders)
        self._rng = rng or random.Random()
        self._session: aiohttp.ClientSession | None = None
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[bool | None]] = set()
        self.consumer: StreamConsumer[AlertTransition] = StreamConsumer(
            redis, stream=keys.alerts, group=CONSUMER_GROUP, name=instance,
            handler=self.handle, decode=decode_transition, settings=bus_settings,
            metrics=bus_metrics, dead_stream=keys.alerts_dead,
        )

    async def open(self) -> None:
        """Create the HTTP session and the senders not given explicitly."""
        missing = [r for r in self.config.receivers if r.name not in self.senders]
        if missing and self._session is None:
            self._session = aiohttp.ClientSession()
        for cfg in missing:
            assert self._session is not None
            self.senders[cfg.name] = build_receiver(cfg, self._session)

    async def close(self) -> None:
        """Close the HTTP session and forget the senders built on it: the supervisor
        calls `run` again on this object after a failure, and that run opens anew."""
        if self._session is not None:
            await self._session.close()
            self._session = None
        self.senders = dict(self._given_senders)
        if self.durable is not None:
            await self.durable.aclose()

    async def run(self) -> NoReturn:
        """Consume the outbox and flush due groups until cancelled. Any failure of either
        loop (Redis unreachable, a bug) raises out of here, after in-flight sends were
        recorded, so that the supervisor restarts the dispatcher: it never returns."""
        await self.open()
        try:
            await self.consumer.ensure_group()
            await run_together({
                f"{self.name}-consumer": self.consumer.run(),
                f"{self.name}-flush": self._flush_loop(),
            })
        finally:
            cancelled = await wait_through_cancellation(set(self._inflight))
            await self.close()
            if cancelled:
                raise asyncio.CancelledError

    async def handle(self, deliveries: Sequence[Delivery[AlertTransition]]) -> None:
        """Consumer-group handler: ingest a batch of transitions (idempotent)."""
        if any(await self.ingest(*(d.value for d in deliveries))):
            self._wake.set()

    async def ingest(self, *transitions: AlertTransition) -> list[bool]:
        now = self.clock.now()
        items = []
        for t in transitions:
            if t.state == "pending":
                continue
            targets = []
            for route in self.route.match(t.labels):
                # Alertmanager flushes a new group at once when its first alert is older
                # than group_wait (e.g. after a restart); otherwise it waits group_wait.
                due = max(now, min(now, t.starts_at) + route.group_wait_s)
                targets.append(GroupTarget(
                    route.group_key(t.labels), route.id, route.receiver,
                    route.group_labels(t.labels), due, self._group_interval(route),
                ))
            items.append((t, encode_transition(t), targets))
        return await self.store.ingest(items)

    async def _flush_loop(self) -> None:
        while True:
            # Cleared before looking, not after: a transition ingested while this round
            # reads the due groups must wake the next wait, not be lost until the tick.
            self._wake.clear()
            await self.flush_due()
            now = self.clock.now()
            nxt = await self.store.next_due()
            wait = self.config.tick_s if nxt is None else min(self.config.tick_s, nxt - now)
            if wait <= 0:
                await asyncio.sleep(0)
                continue
            sleeper = asyncio.ensure_future(self.clock.sleep(wait))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait((sleeper, waker), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (sleeper, waker):
                    task.cancel()
                # Not `suppress(CancelledError)` around each: a cancellation of this loop
                # arriving meanwhile would be swallowed and the loop would run on.
                await asyncio.gather(sleeper, waker, return_exceptions=True)

    async def flush_due(self) -> int:
        """Evaluate every due group once; returns how many notifications were delivered."""
        now = self.clock.now()
        due = await self.store.due_groups(now)
        if not due:
            return 0
        silences = await self.silences.active(now)
        firing = await self.store.firing_alerts() if self.inhibitor.rules else []
        limiter = asyncio.Semaphore(MAX_PARALLEL_GROUPS)

        async def flush_one(group_key: str) -> bool:
            async with limiter:
                try:
                    return await self.flush_group(group_key, silences, firing)
                except Exception as exc:
                    await self._group_failed(group_key, now, exc)
                    return False

        results = await asyncio.gather(*(flush_one(group_key) for group_key in due))
        return sum(results)

    async def _group_failed(self, group_key: str, now: float, exc: Exception) -> None:
        """One group's unexpected failure must not stop its siblings (or close the HTTP
        session under their sends): count it, log it and look at the group again after
        the longest backoff rather than on every tick; after the first backoff when Redis
        was unavailable (a restart or failover: the group itself is fine)."""
        self.metrics.group_errors.inc()
        log.exception("evaluating an alert group failed; it will be retried",
                      extra={"group": group_key})
        try:
            retry = self.config.retry
            delay = (retry.initial_backoff_s if isinstance(exc, _REDIS_UNAVAILABLE)
                     else retry.max_backoff_s)
            await self.store.reschedule(group_key, now + delay)
        except Exception:
            log.warning("could not reschedule the failed group", extra={"group": group_key})

    def _repeat_interval(self, route: Route, receiver: str | None = None) -> float:
        cfg = self.config.receiver(receiver or route.receiver)
        if isinstance(cfg, AlertmanagerReceiver):
            return cfg.resend_interval_s
        return route.repeat_interval_s

    def _group_interval(self, route: Route) -> float:
        # A group is evaluated at least once per repeat interval, so that a repeat is sent
        # on time even with nothing new (the Watchdog to a heartbeat receiver every minute;
        # Alertmanager expects firing alerts again before they time out). Alertmanager
        # itself repeats only on group_interval ticks.
        return min(route.group_interval_s, self._repeat_interval(route))

    async def flush_group(
        self, group_key: str, silences: Sequence[Silence], firing_all: Sequence[AlertTransition]
    ) -> bool:
        now = self.clock.now()
        taken = await self.store.take(group_key, now)
        if taken is None:
            return False
        group, entry = taken
        route = self._routes.get(group.route_id)
        if route is None or route.receiver != group.receiver:
            # The configuration changed under a live group: finish it with its receiver.
            route = self.route
        if group.receiver not in {r.name for r in self.config.receivers}:
            log.warning("dropping group of a receiver that is no longer configured",
                        extra={"group": group_key, "receiver": group.receiver})
            await self.store.drop_group(group_key)
            return False
        visible = [
            t for t, _ in group.alerts
            if not any(s.mutes(t.labels, now) for s in silences)
            and not (t.state == "firing" and self.inhibitor.inhibited(t, firing_all))
        ]
        firing = sorted((t for t in visible if t.state == "firing"), key=lambda t: t.fingerprint)
        resolved = sorted(
            (t for t in visible if t.state == "resolved"), key=lambda t: t.fingerprint
        )
        receiver_cfg = self.config.receiver(group.receiver)
        firing_fps = {t.fingerprint for t in firing}
        resolved_fps = {t.fingerprint for t in resolved}
        repeat = self._repeat_interval(route, group.receiver)
        missed = missed_alerts(entry, resolved_fps) if route.send_missed_resolved else set()
        if not needs_update(entry, firing_fps, resolved_fps, receiver_cfg.send_resolved,
                            repeat, now, missed):
            await self.store.prune_resolved(group)
            return False
        sent = await self._deliver(group, entry, firing, resolved, now, missed)
        if sent is not None:
            await self.store.prune_resolved(group)
        return bool(sent)

    async def _deliver(
        self, group: Group, entry: LogEntry | None, firing: list[AlertTransition],
        resolved: list[AlertTransition], now: float, missed: set[str],
    ) -> bool | None:
        """Claim, send, mark. True delivered, False nothing to send (logged as sent),
        None not done now (busy elsewhere, rate limited or retrying later). Resolved alerts
        are sent when the receiver has ``send_resolved``, and ``missed`` ones always."""
        group_key, receiver = group.group_key, group.receiver
        cfg = self.config.receiver(receiver)
        if cfg.rate_limit_per_minute is not None:
            reopen = await self.store.take_rate_token(receiver, now, cfg.rate_limit_per_minute)
            if reopen is not None:
                await self.store.reschedule(group_key, reopen)
                return None
        version = entry.version if entry else 0
        token = f"{self.instance}:{uuid.uuid4().hex}"
        claimed, thread = await self.store.claim(group_key, version, token, now,
                                                 self.config.retry.lease_s,
                                                 [t.fingerprint for t in firing])
        if claimed == -1:
            # Another sender holds the lease: look again when it would have expired, in
            # case that sender died.
            await self.store.reschedule(
                group_key, now + self.config.retry.lease_s, earlier_only=True
            )
        if claimed != 1:
            return None
        firing_fps = [t.fingerprint for t in firing]
        resolved_fps = [t.fingerprint for t in resolved]
        to_send = [t for t in resolved if cfg.send_resolved or t.fingerprint in missed]
        if not firing and not to_send:
            await self._mark_sent(group_key, token, firing_fps, resolved_fps, now)
            return False
        notification = Notification(
            receiver=receiver, group_key=group_key, group_labels=group.labels, firing=firing,
            resolved=to_send, version=version, thread=thread, sent_at=now,
            links=self.config.links,
            external_url=self.config.external_url, missed=frozenset(missed),
        )
        # On shutdown the in-flight send finishes (receivers have timeouts) and is recorded,
        # even if we are cancelled again: abandoning it after the receiver accepted it
        # would make a restart send it again.
        task = asyncio.ensure_future(
            self._send_and_record(notification, entry, token, firing_fps, resolved_fps)
        )
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            await wait_through_cancellation([task])
            if not task.cancelled() and task.exception() is not None:
                log.error("recording a notification failed during shutdown",
                          exc_info=task.exception(),
                          extra={"group": group_key, "receiver": receiver})
            raise

    async def _send_and_record(
        self, notification: Notification, entry: LogEntry | None, token: str,
        firing_fps: list[str], resolved_fps: list[str],
    ) -> bool | None:
        try:
            await self._send(notification)
        except DeliveryError as exc:
            self.metrics.failed.labels(notification.receiver, exc.reason).inc()
            await self._failed(notification, entry, token, exc)
            return None
        await self._delivered(notification, token, firing_fps, resolved_fps)
        return True

    async def _delivered(
        self, n: Notification, token: str, firing_fps: list[str], resolved_fps: list[str]
    ) -> None:
        now = self.clock.now()
        # Logged as sent at the flush that decided to send, not when the receiver answered:
        # the group's next evaluation is one interval after that flush, and a later time
        # would make the repeat check miss it and wait a whole interval more.
        if not await self._mark_sent(n.group_key, token, firing_fps, resolved_fps,
                                     n.sent_at):
            log.warning("lease expired before the notification was marked sent; another "
                        "replica may send it again",
                        extra={"group": n.group_key, "receiver": n.receiver})
        self.metrics.sent.labels(n.receiver).inc()
        newest = max(t.evaluated_at for t in n.alerts)
        self.metrics.latency.labels(n.receiver).observe(max(0.0, now - newest))

    async def _mark_sent(
        self, group_key: str, token: str, firing_fps: list[str], resolved_fps: list[str],
        now: float,
    ) -> bool:
        """`AlertStore.mark_sent`, retried through a Redis outage: it only checks the claim
        token, so a retry is safe, and without it the log says unsent and the next flush
        sends again. Gives up (False) once the lease is over: by then another replica may
        hold the claim, and a lost claim returns False anyway."""
        backoff = Backoff(MARK_RETRY_INITIAL_S, MARK_RETRY_MAX_S)
        deadline = time.monotonic() + self.config.retry.lease_s
        while True:
            try:
                return await self.store.mark_sent(group_key, token, firing_fps, resolved_fps, now)
            except _REDIS_UNAVAILABLE as exc:
                if time.monotonic() >= deadline:
                    log.error("could not record a notification as sent before its lease "
                              "ended", extra={"group": group_key, "error": type(exc).__name__})
                    return False
                log.warning("recording a notification as sent failed; retrying",
                            extra={"group": group_key, "error": type(exc).__name__,
                                   "attempt": backoff.attempt + 1})
                await backoff.wait()

    async def _send(self, notification: Notification) -> None:
        sender = self.senders.get(notification.receiver)
        if sender is None:
            raise DeliveryError("receiver not configured", retryable=False, reason="config")
        try:
            await sender.send(notification)
        except DeliveryError:
            raise
        except Exception as exc:  # a broken receiver (bad secret, bug) must not stop others
            raise DeliveryError(f"{type(exc).__name__}", reason="error") from exc

    def backoff(self, attempts: int) -> float:
        """Delay before retry number ``attempts`` (1-based) of a failed notification; the
        attempt count lives in the notification log, so it survives restarts."""
        policy = self.config.retry
        pacing = Backoff(policy.initial_backoff_s,
                         max(policy.initial_backoff_s, policy.max_backoff_s), rng=self._rng)
        pacing.attempt = max(0, attempts - 1)
        return pacing.next_delay()

    async def _failed(
        self, n: Notification, entry: LogEntry | None, token: str, exc: DeliveryError
    ) -> None:
        now = self.clock.now()
        first = entry.first_failure_at if entry and entry.first_failure_at else now
        give_up = not exc.retryable or now - first >= self.config.retry.give_up_after_s
        if give_up:
            await self._mark_sent(
                n.group_key, token, [t.fingerprint for t in n.firing],
                [t.fingerprint for t in n.resolved], now,
            )
            await self.store.dead_letter({
                "group_key": n.group_key, "receiver": n.receiver, "reason": exc.reason,
                "error": str(exc), "first_failure_at": str(first), "at": str(now),
                "data": notification_json(n).decode(),
            })
            self.metrics.dead_letters.labels(n.receiver).inc()
            log.error("notification dead-lettered", extra={
                "group": n.group_key, "receiver": n.receiver, "reason": exc.reason})
            return
        recorded = await self.store.record_failure(n.group_key, token, now)
        attempts = recorded[0] if recorded else 1
        if exc.retry_after is not None:  # the receiver's wish, but never a hot loop
            delay = max(exc.retry_after, self.config.retry.initial_backoff_s)
        else:
            delay = self.backoff(attempts)
        await self.store.reschedule(n.group_key, now + delay)
        log.warning("notification failed; will retry", extra={
            "group": n.group_key, "receiver": n.receiver, "reason": exc.reason,
            "attempt": attempts, "retry_in_s": round(delay, 3)})


def _route_tree(route: Route) -> list[Route]:
    """``route`` and every route below it, depth first (the order routes match in)."""
    out = [route]
    for child in route.children:
        out.extend(_route_tree(child))
    return out
