"""Dispatcher behaviour against a real Redis and a local webhook, on a manual clock:
grouping and timing as in Alertmanager, dedupe across redelivery, restarts and replicas,
retries through receiver outages, dead letters, silences, inhibition and rate limits."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.alerts.silences import SilenceStore
from convmon.alerts.store import AlertStore
from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys

from .helpers import RecordingServer, make_dispatcher, publish, pump, transition

pytestmark = pytest.mark.all_redis  # the dispatcher's Lua runs on 6.2 too


def config(url: str, **route: Any) -> dict[str, Any]:
    receiver: dict[str, Any] = {"type": "webhook", "name": "hook", "url": url + "/hook",
                                "hmac_secret": "s3cret", "timeout_s": 3}
    receiver.update(route.pop("receiver_opts", {}))
    top = route.pop("top", {})
    out: dict[str, Any] = {
        "receivers": [receiver],
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait_s": 30,
                  "group_interval_s": 300, "repeat_interval_s": 3600, **route},
        "retry": {"initial_backoff_s": 1, "max_backoff_s": 300, "give_up_after_s": 6 * 3600},
    }
    out.update(top)
    return out


def fingerprints(body: dict[str, Any], status: str | None = None) -> set[str]:
    return {a["fingerprint"] for a in body["alerts"] if status is None or a["status"] == status}


async def test_group_wait_interval_repeat_and_resolve(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    d = make_dispatcher(redis, keys, config(hook.url), clock)
    await d.open()
    try:
        a = transition({"alertname": "PoolShare", "pool": "foundry"}, "firing", 2, clock.now())
        b = transition({"alertname": "PoolShare", "pool": "antpool"}, "firing", 2, clock.now())
        for t in (a, b):
            await publish(redis, keys, t)
        await pump(d)
        assert await d.flush_due() == 0  # group_wait not over
        clock.advance(29)
        assert await d.flush_due() == 0
        clock.advance(1)
        assert await d.flush_due() == 1
        body = hook.requests[0].json()
        assert body["status"] == "firing" and body["groupLabels"] == {"alertname": "PoolShare"}
        assert fingerprints(body) == {a.fingerprint, b.fingerprint}
        signature = hook.requests[0].headers["X-Convmon-Signature"]
        expected = hmac.new(b"s3cret", hook.requests[0].body, hashlib.sha256).hexdigest()
        assert signature == f"sha256={expected}"
        assert hook.requests[0].headers["X-Convmon-Timestamp"] == str(int(clock.now()))

        # A new alert joins: it waits for the next group_interval tick, not group_wait.
        clock.advance(10)
        c = transition({"alertname": "PoolShare", "pool": "viabtc"}, "firing", 2, clock.now())
        await publish(redis, keys, c)
        await pump(d)
        clock.advance(100)
        assert await d.flush_due() == 0
        clock.advance(190)
        assert await d.flush_due() == 1
        assert fingerprints(hook.requests[1].json()) == {a.fingerprint, b.fingerprint,
                                                          c.fingerprint}
        # Nothing new: silent at each tick until repeat_interval has passed.
        for _ in range(11):
            clock.advance(300)
            await d.flush_due()
        assert len(hook.requests) == 2
        clock.advance(300)
        assert await d.flush_due() == 1  # 3600 s after the last notification
        assert len(hook.requests) == 3

        # One resolves: a notification with it as resolved, then it leaves the group.
        clock.advance(5)
        await publish(redis, keys, transition(dict(a.labels), "resolved", 3, clock.now()))
        await pump(d)
        clock.advance(300)
        assert await d.flush_due() == 1
        body = hook.requests[3].json()
        assert fingerprints(body, "resolved") == {a.fingerprint}
        assert fingerprints(body, "firing") == {b.fingerprint, c.fingerprint}
        clock.advance(300)
        assert await d.flush_due() == 0
        # All resolve: one final resolved notification; the group is deleted.
        for t in (b, c):
            await publish(redis, keys, transition(dict(t.labels), "resolved", 3, clock.now()))
        await pump(d)
        clock.advance(300)
        assert await d.flush_due() == 1
        assert hook.requests[4].json()["status"] == "resolved"
        assert await redis.zcard(keys.alerts_due) == 0
        clock.advance(5000)
        assert await d.flush_due() == 0
        assert len(hook.requests) == 5
    finally:
        await d.close()


async def test_send_resolved_false_and_pending_ignored(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    d = make_dispatcher(redis, keys, config(hook.url, receiver_opts={"send_resolved": False}),
                        clock)
    await d.open()
    try:
        labels = {"alertname": "NoBlock"}
        await publish(redis, keys, transition(labels, "pending", 1, clock.now()))
        await pump(d)
        clock.advance(60)
        assert await d.flush_due() == 0
        await publish(redis, keys, transition(labels, "firing", 2, clock.now()))
        await pump(d)
        clock.advance(30)
        assert await d.flush_due() == 1
        await publish(redis, keys, transition(labels, "resolved", 3, clock.now()))
        await pump(d)
        clock.advance(300)
        assert await d.flush_due() == 0
        assert len(hook.requests) == 1
        assert await redis.zcard(keys.alerts_due) == 0
    finally:
        await d.close()


async def test_redelivered_and_stale_transitions_change_nothing(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    d = make_dispatcher(redis, keys, config(hook.url), clock)
    await d.open()
    try:
        labels = {"alertname": "BigMint", "token": "USDT"}
        firing = transition(labels, "firing", 2, clock.now())
        resolved = transition(labels, "resolved", 3, clock.now() + 10)
        await publish(redis, keys, firing)
        await publish(redis, keys, resolved)
        await publish(redis, keys, firing)  # stale redelivery after the resolution
        await pump(d)
        assert await redis.hlen(keys.alerts_firing) == 0
        clock.advance(30)
        # Fired and resolved within group_wait: the receiver never knew, nothing to send.
        assert await d.flush_due() == 0
        assert hook.requests == []
    finally:
        await d.close()


async def test_receiver_outage_of_an_hour_ends_in_exactly_one_delivery(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    registry = CollectorRegistry()
    d = make_dispatcher(redis, keys, config(hook.url), clock, registry)
    await d.open()
    try:
        hook.faults = [(500, None), (429, {"Retry-After": "7"}), ("hang", None)] + [
            (503, None)] * 200
        await publish(redis, keys, transition({"alertname": "PoolShare"}, "firing", 2,
                                              clock.now()))
        await pump(d)
        clock.advance(30)
        assert await d.flush_due() == 0  # 500
        due = await AlertStore(redis, keys).next_due()
        assert due is not None and clock.now() + 0.5 <= due <= clock.now() + 1
        clock.advance(1)
        assert await d.flush_due() == 0  # 429 Retry-After: 7
        assert await AlertStore(redis, keys).next_due() == clock.now() + 7
        clock.advance(7)
        assert await d.flush_due() == 0  # timeout
        started = clock.now()
        while clock.now() - started < 3600:
            nxt = await AlertStore(redis, keys).next_due()
            assert nxt is not None
            clock.advance(max(0.0, nxt - clock.now()))
            await d.flush_due()
        assert hook.requests == []
        attempts = hook.attempts
        assert 10 <= attempts <= 40  # backoff grows to max_backoff_s, not a hot loop
        hook.faults = []  # the receiver recovers
        nxt = await AlertStore(redis, keys).next_due()
        assert nxt is not None
        clock.advance(nxt - clock.now())
        assert await d.flush_due() == 1
        for _ in range(5):  # and it is not sent again
            clock.advance(300)
            await d.flush_due()
        assert len(hook.requests) == 1
        reasons = {s.labels["reason"] for m in registry.collect() for s in m.samples
                   if m.name == "convmon_notifications_failed"}
        assert {"http_5xx", "rate_limited", "timeout"} <= reasons
        assert registry.get_sample_value("convmon_notifications_sent_total",
                                         {"receiver": "hook"}) == 1
    finally:
        await d.close()


async def test_dead_letter_after_retry_budget_and_on_permanent_error(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    registry = CollectorRegistry()
    cfg = config(hook.url)
    cfg["retry"]["give_up_after_s"] = 600
    d = make_dispatcher(redis, keys, cfg, clock, registry)
    # Exported at 0 before the first dead letter: Prometheus's increase() needs the 0.
    assert registry.get_sample_value("convmon_notification_dead_letters_total",
                                     {"receiver": "hook"}) == 0
    await d.open()
    try:
        hook.faults = [(500, None)] * 1000
        await publish(redis, keys, transition({"alertname": "A"}, "firing", 2, clock.now()))
        await pump(d)
        clock.advance(30)
        for _ in range(100):
            nxt = await AlertStore(redis, keys).next_due()
            assert nxt is not None
            clock.advance(max(0.0, nxt - clock.now()))
            await d.flush_due()
            if await redis.xlen(keys.notifications_dead):
                break
        dead: Any = await redis.xrange(keys.notifications_dead)
        assert len(dead) == 1 and dead[0][1][b"reason"] == b"http_5xx"
        assert registry.get_sample_value("convmon_notification_dead_letters_total",
                                         {"receiver": "hook"}) == 1
        attempts = hook.attempts
        clock.advance(300)
        await d.flush_due()
        assert hook.attempts == attempts  # given up: no further attempts for it

        hook.faults = [(400, None)]
        await publish(redis, keys, transition({"alertname": "B"}, "firing", 2, clock.now()))
        await pump(d)
        clock.advance(30)
        await d.flush_due()
        assert await redis.xlen(keys.notifications_dead) == 2  # 4xx: not retried
        assert hook.attempts == attempts + 1
    finally:
        await d.close()


async def test_restart_mid_group_sends_no_duplicate(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    a = transition({"alertname": "PoolShare", "pool": "foundry"}, "firing", 2, clock.now())
    first = make_dispatcher(redis, keys, config(hook.url), clock, instance="d1")
    await first.open()
    await publish(redis, keys, a)
    await pump(first)
    clock.advance(30)
    assert await first.flush_due() == 1
    # A crash before the ack: the entry is redelivered to the next process.
    await publish(redis, keys, a)
    await first.consumer.ensure_group()
    await redis.xreadgroup(first.consumer.group, "d1", {keys.alerts: ">"}, count=10)
    await first.close()

    second = make_dispatcher(redis, keys, config(hook.url), clock, instance="d1")
    await second.open()
    try:
        await pump(second)
        for _ in range(4):
            clock.advance(300)
            await second.flush_due()
        assert len(hook.requests) == 1
        b = transition({"alertname": "PoolShare", "pool": "antpool"}, "firing", 2, clock.now())
        await publish(redis, keys, b)
        await pump(second)
        clock.advance(300)
        assert await second.flush_due() == 1
        assert fingerprints(hook.requests[1].json()) == {a.fingerprint, b.fingerprint}
    finally:
        await second.close()


async def test_two_replicas_deliver_once(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    one = make_dispatcher(redis, keys, config(hook.url), clock, instance="r1")
    two = make_dispatcher(redis, keys, config(hook.url), clock, instance="r2")
    await one.open()
    await two.open()
    try:
        for i in range(20):
            await publish(redis, keys, transition({"alertname": f"A{i}"}, "firing", 2,
                                                  clock.now()))
        await asyncio.gather(pump(one), pump(two))
        clock.advance(30)
        sent = await asyncio.gather(one.flush_due(), two.flush_due(), one.flush_due())
        assert sum(sent) == 20
        assert len(hook.requests) == 20
        names = sorted(r.json()["groupLabels"]["alertname"] for r in hook.requests)
        assert names == sorted(f"A{i}" for i in range(20))
    finally:
        await one.close()
        await two.close()


async def test_claim_lease_lets_another_replica_take_over(redis: Redis, keys: Keys) -> None:
    store = AlertStore(redis, keys)
    assert (await store.claim("g", 0, "dead-replica", 1000.0, 60))[0] == 1
    assert (await store.claim("g", 0, "other", 1030.0, 60))[0] == -1  # lease held
    assert (await store.claim("g", 0, "other", 1061.0, 60))[0] == 1  # lease expired
    assert not await store.mark_sent("g", "dead-replica", ["x"], [], 1062.0)
    assert await store.mark_sent("g", "other", ["x"], [], 1062.0)
    # The log moved on: a claim at the old version is refused.
    assert (await store.claim("g", 0, "late", 1063.0, 60))[0] == 0


async def test_silence_mutes_until_expired(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    d = make_dispatcher(redis, keys, config(hook.url), clock)
    await d.open()
    silences = SilenceStore(redis, keys)
    try:
        s = await silences.add(["alertname=~Pool.*", "pool!=antpool"], clock.now(),
                               clock.now() + 3600, "ops", "maintenance", clock.now())
        muted = transition({"alertname": "PoolShare", "pool": "foundry"}, "firing", 2,
                           clock.now())
        other = transition({"alertname": "NoBlock"}, "firing", 2, clock.now())
        await publish(redis, keys, muted)
        await publish(redis, keys, other)
        await pump(d)
        clock.advance(30)
        assert await d.flush_due() == 1
        assert hook.requests[0].json()["groupLabels"] == {"alertname": "NoBlock"}
        clock.advance(300)
        assert await d.flush_due() == 0
        assert await silences.expire(s.id, clock.now())
        clock.advance(300)
        assert await d.flush_due() == 1
        assert hook.requests[1].json()["groupLabels"] == {"alertname": "PoolShare"}
        listed = await silences.all(clock.now())
        assert [x.state(clock.now()) for x in listed] == ["expired"]
    finally:
        await d.close()


async def test_inhibition_critical_mutes_warning(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    cfg = config(hook.url, group_by=["..."], top={"inhibit_rules": [
        {"source_matchers": ["severity=critical"], "target_matchers": ["severity=warning"],
         "equal": ["pool"]}]})
    d = make_dispatcher(redis, keys, cfg, clock)
    await d.open()
    try:
        crit = transition({"alertname": "PoolShareHigh", "pool": "foundry",
                           "severity": "critical"}, "firing", 2, clock.now())
        warn = transition({"alertname": "PoolShareElevated", "pool": "foundry"}, "firing", 2,
                          clock.now())
        warn_other = transition({"alertname": "PoolShareElevated", "pool": "antpool"},
                                "firing", 2, clock.now())
        for t in (crit, warn, warn_other):
            await publish(redis, keys, t)
        await pump(d)
        clock.advance(30)
        assert await d.flush_due() == 2
        sent = {a["fingerprint"] for r in hook.requests for a in r.json()["alerts"]}
        assert sent == {crit.fingerprint, warn_other.fingerprint}
        # The source resolves: the warning is no longer inhibited and goes out.
        await publish(redis, keys, transition(dict(crit.labels), "resolved", 3, clock.now()))
        await pump(d)
        clock.advance(300)
        await d.flush_due()
        sent = {a["fingerprint"] for r in hook.requests for a in r.json()["alerts"]
                if a["status"] == "firing"}
        assert warn.fingerprint in sent
    finally:
        await d.close()


async def test_routing_continue_and_rate_limit(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    cfg = config(hook.url, group_by=["..."])
    cfg["receivers"][0]["rate_limit_per_minute"] = 3
    cfg["receivers"].append({"type": "webhook", "name": "crit", "url": hook.url + "/crit"})
    cfg["route"]["routes"] = [
        {"receiver": "crit", "matchers": ["severity=critical"], "continue": True},
        {"receiver": "hook", "matchers": ["alertname=~.+"]},
    ]
    d = make_dispatcher(redis, keys, cfg, clock)
    await d.open()
    try:
        clock.advance(60 - clock.now() % 60)  # start of a minute window
        for i in range(5):
            await publish(redis, keys, transition({"alertname": f"W{i}"}, "firing", 2,
                                                  clock.now()))
        await publish(redis, keys, transition({"alertname": "C", "severity": "critical"},
                                              "firing", 2, clock.now()))
        await pump(d)
        clock.advance(30)
        await d.flush_due()
        paths = [r.path for r in hook.requests]
        assert paths.count("/crit") == 1
        assert paths.count("/hook") == 3  # the critical one counts too; 3 per minute
        clock.advance(30)
        await d.flush_due()
        assert [r.path for r in hook.requests].count("/hook") == 6
    finally:
        await d.close()


async def test_crashed_sender_lease_expires_and_another_replica_delivers(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    d = make_dispatcher(redis, keys, config(hook.url), clock, instance="survivor")
    await d.open()
    try:
        t = transition({"alertname": "PoolShare"}, "firing", 2, clock.now())
        await publish(redis, keys, t)
        await pump(d)
        clock.advance(30)
        (gk,) = await AlertStore(redis, keys).due_groups(clock.now())
        # A replica claimed this notification and died before sending or marking it.
        assert (await AlertStore(redis, keys).claim(gk, 0, "crashed:1", clock.now(), 60))[0] == 1
        assert await d.flush_due() == 0
        assert await AlertStore(redis, keys).next_due() == clock.now() + 60
        clock.advance(60)
        assert await d.flush_due() == 1
        clock.advance(300)
        assert await d.flush_due() == 0
        assert len(hook.requests) == 1
    finally:
        await d.close()


async def test_groups_of_a_removed_receiver_are_dropped(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:

    cfg = config(hook.url)
    cfg["receivers"].append({"type": "webhook", "name": "old", "url": hook.url + "/old"})
    cfg["route"]["routes"] = [{"receiver": "old", "matchers": ["team=old"]}]
    before = make_dispatcher(redis, keys, cfg, clock)
    await before.open()
    await publish(redis, keys, transition({"alertname": "A", "team": "old"}, "firing", 2,
                                          clock.now()))
    await pump(before)
    await before.close()
    after = make_dispatcher(redis, keys, config(hook.url), clock)  # "old" was removed
    await after.open()
    try:
        clock.advance(30)
        assert await after.flush_due() == 0
        assert await redis.zcard(keys.alerts_due) == 0
        assert hook.attempts == 0
    finally:
        await after.close()
