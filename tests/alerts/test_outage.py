"""Receiver outages lose nothing: an alert that fires and resolves while its receiver is
unreachable is delivered once the receiver is back, as one resolved notification that says
when it fired and resolved, also across a dispatcher restart and with two replicas.

The receiver sits behind a TCP forwarder that is cut for the outage (connections refused),
in front of a local recording HTTP server; real Redis; a manual clock."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from convmon.alerts.config import AlertmanagerReceiver, ConsoleReceiver, EmailReceiver
from convmon.alerts.dispatcher import Dispatcher
from convmon.alerts.notification import Notification, notification_json
from convmon.alerts.receivers.alertmanager import MISSED_ANNOTATION, AlertmanagerSender
from convmon.alerts.receivers.console import ConsoleSender
from convmon.alerts.receivers.email import build_message
from convmon.alerts.receivers.slack import build_blocks
from convmon.monitor.alerting import AlertTransition
from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from tests.waiting import eventually

from .helpers import (
    HeldClock,
    RecordingServer,
    TcpProxy,
    make_dispatcher,
    publish,
    pump,
    redis_behind_proxy,
    transition,
)
from .test_dispatcher import config
from .test_slack import all_mrkdwn

pytestmark = pytest.mark.all_redis  # the dispatcher's Lua runs on 6.2 too

FIRED_AT = 1_800_000_000.0


@pytest.fixture
async def proxy(hook: RecordingServer) -> AsyncIterator[TcpProxy]:
    host, port = hook.url.removeprefix("http://").split(":")
    forwarder = await TcpProxy(host, int(port)).start()
    try:
        yield forwarder
    finally:
        await forwarder.stop()


def outage_config(proxy: TcpProxy, **route: Any) -> dict[str, Any]:
    return config(f"http://127.0.0.1:{proxy.listen_port}", **route)


async def fire_and_resolve_during_outage(
    redis: Redis, keys: Keys, clock: ManualClock, d: Dispatcher, proxy: TcpProxy,
) -> AlertTransition:
    """The receiver is down for the alert's whole life: its firing notification is tried
    (and fails) after group_wait, then it resolves; returns the resolved transition."""
    proxy.cut()
    labels = {"alertname": "PoolShare", "pool": "foundry"}
    await publish(redis, keys, transition(labels, "firing", 2, FIRED_AT))
    await pump(d)
    clock.advance(30)
    assert await d.flush_due() == 0
    assert proxy.refused >= 1  # the firing notification was due and could not be delivered
    clock.advance(60)
    resolved = transition(labels, "resolved", 3, clock.now(), starts_at=FIRED_AT)
    await publish(redis, keys, resolved)
    await pump(d)
    return resolved


def assert_one_missed_resolved(hook: RecordingServer, alert: AlertTransition) -> None:
    assert len(hook.requests) == 1
    body = hook.requests[0].json()
    assert body["status"] == "resolved"
    (item,) = body["alerts"]
    assert item["fingerprint"] == alert.fingerprint
    assert item["status"] == "resolved"
    assert item["missed"] is True
    assert item["startsAt"] == "2027-01-15T08:00:00.000Z"  # when it fired
    assert alert.ends_at is not None and item["endsAt"].startswith("2027-01-15T08:01:30")


async def flush_until_quiet(d: Dispatcher, clock: ManualClock, rounds: int = 6) -> int:
    """Flush through several group intervals (and past any retry backoff)."""
    total = 0
    for _ in range(rounds):
        clock.advance(300)
        total += await d.flush_due()
    return total


async def test_alert_whose_life_falls_inside_an_outage_is_delivered_as_resolved(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer, proxy: TcpProxy
) -> None:
    d = make_dispatcher(redis, keys, outage_config(proxy), clock)
    await d.open()
    try:
        resolved = await fire_and_resolve_during_outage(redis, keys, clock, d, proxy)
        proxy.restore()
        assert await flush_until_quiet(d, clock) == 1
    finally:
        await d.close()
    assert_one_missed_resolved(hook, resolved)
    assert await redis.zcard(keys.alerts_due) == 0  # the group is finished


async def test_missed_alert_is_sent_even_without_send_resolved(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer, proxy: TcpProxy
) -> None:
    cfg = outage_config(proxy, receiver_opts={"send_resolved": False})
    d = make_dispatcher(redis, keys, cfg, clock)
    await d.open()
    try:
        resolved = await fire_and_resolve_during_outage(redis, keys, clock, d, proxy)
        proxy.restore()
        assert await flush_until_quiet(d, clock) == 1
    finally:
        await d.close()
    assert_one_missed_resolved(hook, resolved)


async def test_send_missed_resolved_false_keeps_alertmanager_behaviour(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer, proxy: TcpProxy
) -> None:
    d = make_dispatcher(redis, keys, outage_config(proxy, send_missed_resolved=False), clock)
    await d.open()
    try:
        await fire_and_resolve_during_outage(redis, keys, clock, d, proxy)
        proxy.restore()
        assert await flush_until_quiet(d, clock) == 0
    finally:
        await d.close()
    assert hook.requests == []
    assert await redis.zcard(keys.alerts_due) == 0


async def test_short_alert_outside_an_outage_is_still_not_sent(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer, proxy: TcpProxy
) -> None:
    """Alertmanager's rule stays: an alert that resolves within group_wait, before any
    notification was due, is not worth one."""
    d = make_dispatcher(redis, keys, outage_config(proxy), clock)
    await d.open()
    try:
        labels = {"alertname": "PoolShare"}
        await publish(redis, keys, transition(labels, "firing", 2, clock.now()))
        clock.advance(10)
        await publish(redis, keys, transition(labels, "resolved", 3, clock.now()))
        await pump(d)
        assert await flush_until_quiet(d, clock) == 0
    finally:
        await d.close()
    assert hook.attempts == 0


async def test_dispatcher_restarted_inside_the_outage_delivers_once(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer, proxy: TcpProxy
) -> None:
    cfg = outage_config(proxy)
    d1 = make_dispatcher(redis, keys, cfg, clock, instance="d1")
    await d1.open()
    try:
        resolved = await fire_and_resolve_during_outage(redis, keys, clock, d1, proxy)
    finally:
        await d1.close()  # the process goes away inside the outage
    d2 = make_dispatcher(redis, keys, cfg, clock, instance="d2")
    await d2.open()
    try:
        clock.advance(300)
        assert await d2.flush_due() == 0  # still down: retried, not lost
        proxy.restore()
        assert await flush_until_quiet(d2, clock) == 1
    finally:
        await d2.close()
    d3 = make_dispatcher(redis, keys, cfg, clock, instance="d1")
    await d3.open()
    try:
        assert await flush_until_quiet(d3, clock) == 0
    finally:
        await d3.close()
    assert_one_missed_resolved(hook, resolved)


async def test_dispatcher_dying_between_claim_and_failure_record_delivers_once(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer, proxy: TcpProxy
) -> None:
    """The sender loses Redis while its send is in flight and dies: the claim (with the
    alert it was sending) is all the log has. Another replica still delivers it once."""
    cfg = outage_config(proxy)
    redis_proxy, flaky = await redis_behind_proxy(redis)
    d1 = make_dispatcher(flaky, keys, cfg, clock, instance="d1")
    await d1.open()
    labels = {"alertname": "PoolShare", "pool": "foundry"}
    try:
        await publish(redis, keys, transition(labels, "firing", 2, FIRED_AT))
        await pump(d1)
        clock.advance(30)
        hook.faults.append(("hang", None))  # held past the receiver timeout: the send fails
        flush = asyncio.create_task(d1.flush_due())

        async def sending() -> bool:
            return hook.attempts >= 1

        await eventually(sending)
        redis_proxy.cut()  # ... and its failure cannot be recorded
        assert await flush == 0
    finally:
        await d1.close()
        await flaky.aclose()
        await redis_proxy.stop()
    proxy.cut()  # the receiver is down from here on, until the alert is over
    clock.advance(60)
    resolved = transition(labels, "resolved", 3, clock.now(), starts_at=FIRED_AT)
    await publish(redis, keys, resolved)
    d2 = make_dispatcher(redis, keys, cfg, clock, instance="d2")
    await d2.open()
    try:
        await pump(d2)
        clock.advance(300)  # the dead sender's lease is over
        assert await d2.flush_due() == 0
        proxy.restore()
        assert await flush_until_quiet(d2, clock) == 1
    finally:
        await d2.close()
    assert_one_missed_resolved(hook, resolved)


async def test_two_running_replicas_deliver_a_missed_alert_once(
    redis: Redis, keys: Keys, hook: RecordingServer, proxy: TcpProxy
) -> None:

    clock = HeldClock(start=FIRED_AT)
    cfg = outage_config(proxy)
    replicas = [make_dispatcher(redis, keys, cfg, clock, instance=f"d{i}") for i in (1, 2)]
    proxy.cut()
    labels = {"alertname": "PoolShare", "pool": "foundry"}
    runs = [asyncio.create_task(d.run()) for d in replicas]
    try:
        await publish(redis, keys, transition(labels, "firing", 2, FIRED_AT))
        await _wait_for_group(redis, keys)
        clock.advance(30)
        await _wait_for_refused(proxy, 1)
        clock.advance(60)
        resolved = transition(labels, "resolved", 3, clock.now(), starts_at=FIRED_AT)
        await publish(redis, keys, resolved)
        await _wait_for_alert_state(redis, keys, resolved)
        proxy.restore()
        clock.advance(300)
        await hook.wait_for(1)
        for _ in range(4):
            clock.advance(300)
        await _wait_for_no_group(redis, keys)
    finally:
        for run in runs:
            run.cancel()
        for run in runs:
            with pytest.raises(asyncio.CancelledError):
                await run
    assert_one_missed_resolved(hook, resolved)


async def _wait_for_group(redis: Redis, keys: Keys) -> None:
    async def grouped() -> bool:
        return bool(await redis.zcard(keys.alerts_due))

    await eventually(grouped)


async def _wait_for_refused(proxy: TcpProxy, n: int) -> None:
    async def refused() -> bool:
        return proxy.refused >= n

    await eventually(refused)


async def _wait_for_alert_state(redis: Redis, keys: Keys, t: AlertTransition) -> None:
    async def ingested() -> bool:
        return int(await redis.get(keys.alert_seq(t.fingerprint)) or 0) >= t.seq

    await eventually(ingested)


async def _wait_for_no_group(redis: Redis, keys: Keys) -> None:
    async def finished() -> bool:
        return not await redis.zcard(keys.alerts_due)

    await eventually(finished)


async def test_every_receiver_says_when_a_missed_alert_fired_and_resolved() -> None:
    alert = transition({"alertname": "PoolShare"}, "resolved", 3, FIRED_AT + 90,
                       starts_at=FIRED_AT)
    plain = transition({"alertname": "PoolShare", "pool": "x"}, "resolved", 3, FIRED_AT + 90)
    n = Notification(receiver="r", group_key="g", group_labels={"alertname": "PoolShare"},
                     firing=[], resolved=[alert, plain], version=0, sent_at=FIRED_AT + 400,
                     missed=frozenset({alert.fingerprint}))
    fired, ended = "2027-01-15 08:00:00 UTC", "2027-01-15 08:01:30 UTC"
    note = n.missed_note(alert)
    assert fired in note and ended in note and n.missed_note(plain) == ""
    assert n.title.startswith("[RESOLVED, missed")

    slack_texts = all_mrkdwn(build_blocks(n))
    assert sum(note in t for t in slack_texts) == 1

    mail = build_message(EmailReceiver.model_validate(
        {"name": "m", "host": "localhost", "from": "a@b.c", "to": ["d@e.f"]}), n)
    text_part, html_part = (p.get_content() for p in mail.iter_parts())
    assert text_part.count(note) == 1 and f"resolved: {ended}" in text_part
    assert html_part.count(note) == 1

    body = json.loads(notification_json(n))
    assert [a["missed"] for a in body["alerts"]] == [True, False]
    assert body["alerts"][0]["startsAt"] == "2027-01-15T08:00:00.000Z"
    assert body["alerts"][0]["endsAt"] == "2027-01-15T08:01:30.000Z"

    async with aiohttp.ClientSession() as session:
        am = AlertmanagerSender(AlertmanagerReceiver(name="am", urls=["http://127.0.0.1:1"]),
                                session)
        pushed = json.loads(am.body(n))
    assert pushed[0]["annotations"][MISSED_ANNOTATION] == note
    assert MISSED_ANNOTATION not in pushed[1]["annotations"]
    assert (pushed[0]["startsAt"], pushed[0]["endsAt"]) == (
        "2027-01-15T08:00:00.000Z", "2027-01-15T08:01:30.000Z")

    out = io.StringIO()
    await ConsoleSender(ConsoleReceiver(name="c"), stream=out).send(n)
    assert out.getvalue().count(note) == 1
