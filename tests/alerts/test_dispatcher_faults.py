"""Dispatcher faults that must not turn into duplicate or lost notifications: shutdown
in the middle of a send, Redis going away after a receiver accepted a notification, one
broken group among healthy ones, and notification logs that must outlive long repeat
intervals. Real Redis (directly or through a TCP forwarder we can cut), a local webhook."""

from __future__ import annotations

import asyncio
import math

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from convmon.alerts.store import AlertStore
from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from tests.waiting import eventually

from .helpers import (
    HeldClock,
    RecordingServer,
    make_dispatcher,
    publish,
    pump,
    redis_behind_proxy,
    transition,
)
from .test_dispatcher import config

pytestmark = pytest.mark.all_redis  # the dispatcher's Lua runs on 6.2 too


async def _attempts(hook: RecordingServer, n: int) -> None:
    async def seen() -> bool:
        return hook.attempts >= n

    await eventually(seen)


async def test_cancelled_twice_mid_send_finishes_and_records_it(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    gate = asyncio.Event()
    hook.faults.append(("gate", gate))  # a slow receiver: accepts only when the gate opens
    cfg = config(hook.url, receiver_opts={"timeout_s": 5})
    d1 = make_dispatcher(redis, keys, cfg, clock, instance="d1")
    await publish(redis, keys, transition({"alertname": "PoolShare"}, "firing", 2, clock.now()))
    run = asyncio.create_task(d1.run())
    await _attempts(hook, 1)
    run.cancel()  # the supervisor stops the component ...

    def consumer_stopped() -> bool:
        return not any(t.get_name() == f"{d1.name}-consumer" and not t.done()
                       for t in asyncio.all_tasks())

    await eventually(consumer_stopped, "the consumer loop stopped")
    # ... and when its shutdown budget is spent, asyncio.run cancels every task left,
    # the flush loop included
    (flush_loop,) = [t for t in asyncio.all_tasks()
                     if getattr(t.get_coro(), "__qualname__", "") == "Dispatcher._flush_loop"]
    flush_loop.cancel()
    run.cancel()
    # Nothing to wait for: the run must not end. Cancellation propagates through ready
    # callbacks, which all run before this timer, however loaded the machine.
    await asyncio.sleep(0.05)
    assert not run.done(), "the in-flight send was abandoned"
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert len(hook.requests) == 1

    d2 = make_dispatcher(redis, keys, cfg, clock, instance="d2")
    await d2.open()
    try:
        clock.advance(300)
        assert await d2.flush_due() == 0  # the log says sent: a restart sends nothing
    finally:
        await d2.close()
    assert hook.attempts == 1


async def test_redis_outage_after_the_receiver_accepted_is_retried_not_resent(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    # No client-side retries: the outage must reach the dispatcher.
    proxy, flaky = await redis_behind_proxy(redis, retries=0)
    gate = asyncio.Event()
    hook.faults.append(("gate", gate))
    cfg = config(hook.url, receiver_opts={"timeout_s": 5})
    d1 = make_dispatcher(flaky, keys, cfg, clock, instance="d1")
    await d1.open()
    try:
        await publish(redis, keys, transition({"alertname": "PoolShare"}, "firing", 2,
                                              clock.now()))
        await pump(d1)
        clock.advance(30)
        flush = asyncio.create_task(d1.flush_due())
        await _attempts(hook, 1)
        proxy.cut()
        gate.set()  # the receiver accepts while Redis is unreachable

        async def retried() -> bool:
            return proxy.refused >= 2 or flush.done()

        await eventually(retried)
        proxy.restore()
        assert await flush == 1
    finally:
        await d1.close()
        await flaky.aclose()
        await proxy.stop()

    d2 = make_dispatcher(redis, keys, cfg, clock, instance="d2")
    await d2.open()
    try:
        clock.advance(300)
        assert await d2.flush_due() == 0
    finally:
        await d2.close()
    assert len(hook.requests) == 1


async def test_one_broken_group_does_not_stop_the_flush_or_its_siblings(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    gate = asyncio.Event()
    hook.faults.append(("gate", gate))
    registry = CollectorRegistry()
    cfg = config(hook.url, receiver_opts={"timeout_s": 5})
    d = make_dispatcher(redis, keys, cfg, clock, registry=registry)
    await d.open()
    try:
        good = transition({"alertname": "PoolShare"}, "firing", 2, clock.now())
        bad = transition({"alertname": "HashrateDrop"}, "firing", 2, clock.now())
        for t in (good, bad):
            await publish(redis, keys, t)
        await pump(d)
        store = AlertStore(redis, keys)
        for gk in await store.due_groups(math.inf):
            alerts = store.keys.alert_group_alerts(gk)
            if await redis.hexists(alerts, bad.fingerprint):
                # an unreadable record, e.g. written by an incompatible version
                await redis.hset(alerts, bad.fingerprint, b"{not json")
        clock.advance(30)
        flush = asyncio.create_task(d.flush_due())

        def errors() -> float:
            return registry.get_sample_value("convmon_alert_group_errors_total") or 0.0

        async def broken_group_failed() -> bool:
            return errors() >= 1 or flush.done()

        await eventually(broken_group_failed)
        assert not flush.done(), "the flush ended while a sibling's send was in flight"
        gate.set()
        assert await flush == 1
        assert errors() == 1
        assert len(hook.requests) == 1
        assert hook.requests[0].json()["groupLabels"] == {"alertname": "PoolShare"}
        # the broken group waits before it is tried again (no retry on every tick)
        assert await store.due_groups(clock.now() + 1) == []
    finally:
        await d.close()


async def test_notification_log_outlives_a_long_repeat_interval(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    week = 7 * 86400.0
    d = make_dispatcher(redis, keys, config(hook.url, repeat_interval_s=week), clock)
    await d.open()
    try:
        await publish(redis, keys, transition({"alertname": "PoolShare"}, "firing", 2,
                                              clock.now()))
        await pump(d)
        clock.advance(30)
        assert await d.flush_due() == 1
        (nflog,) = await redis.keys(d.store.nflog_key("*"))
        # an expired log would make the next flush repeat the notification before the week
        assert await redis.ttl(nflog) >= 2 * week - 60
    finally:
        await d.close()


async def test_redis_outage_under_a_running_dispatcher_raises_then_a_new_run_catches_up(
    redis: Redis, keys: Keys, hook: RecordingServer
) -> None:

    clock = HeldClock()
    proxy, flaky = await redis_behind_proxy(redis, retries=1)
    d = make_dispatcher(flaky, keys, config(hook.url), clock)
    a = transition({"alertname": "PoolShare"}, "firing", 2, clock.now())
    try:
        await publish(redis, keys, a)
        run = asyncio.create_task(d.run())
        clock.advance(30)
        await hook.wait_for(1)

        async def logged() -> bool:
            return bool(await redis.hget(d.store.nflog_key("*").replace("*", gk), "sent_at"))

        (gk,) = [k.decode().rsplit(":", 1)[-1] for k in await redis.keys(d.store.nflog_key("*"))]
        await eventually(logged)
        proxy.cut()
        with pytest.raises(RedisConnectionError):
            await run  # a failure, not a return and not a cancellation: the supervisor
        current = asyncio.current_task()  # restarts a component that raised
        assert current is not None and current.cancelling() == 0
        assert not d._inflight

        # Transitions the rule engine wrote while the dispatcher could not reach Redis.
        await publish(redis, keys, transition(dict(a.labels), "resolved", 3, clock.now()))
        b = transition({"alertname": "HashrateDrop"}, "firing", 2, clock.now())
        await publish(redis, keys, b)
        proxy.restore()
        rerun = asyncio.create_task(d.run())

        async def caught_up() -> bool:
            # Time passes while the new run ingests the backlog: a single jump taken
            # before it read the transitions would leave their group_wait ahead forever.
            clock.advance(30)
            return len(hook.requests) >= 3

        await eventually(caught_up, "3 requests recorded")
        rerun.cancel()
        with pytest.raises(asyncio.CancelledError):
            await rerun
    finally:
        await flaky.aclose()
        await proxy.stop()
    after = [r.json() for r in hook.requests[1:]]
    assert sorted((body["status"], body["groupLabels"]["alertname"]) for body in after) == [
        ("firing", "HashrateDrop"), ("resolved", "PoolShare")]

    d2 = make_dispatcher(redis, keys, config(hook.url), clock, instance="d2")
    await d2.open()
    try:
        clock.advance(300)
        assert await d2.flush_due() == 0  # each was delivered once and logged as sent
    finally:
        await d2.close()
    assert len(hook.requests) == 3
