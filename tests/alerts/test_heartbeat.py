"""The dead-man's switch, delivery side: the always-firing Watchdog re-sent every
``repeat_interval_s`` with nothing new, pinging a heartbeat URL (a local HTTP server counts
the pings), and never reaching a person's receiver unless a route says so."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from redis.asyncio import Redis

from convmon.alerts.config import WATCHDOG_DISCARD, AlertsConfig, HeartbeatReceiver
from convmon.alerts.errors import DeliveryError
from convmon.alerts.notification import Notification
from convmon.alerts.receivers.heartbeat import HeartbeatSender
from convmon.alerts.routing import Route
from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from tests.waiting import eventually

from .helpers import (
    HeldClock,
    RecordingServer,
    make_dispatcher,
    publish,
    pump,
    transition,
)

PING_PATH = "/ping/0f2e6a8c-2b8e-4b8e-9a51-6f1b0c3d4e5f"
WATCHDOG = {"alertname": "Watchdog", "severity": "none", "group": "watchdog"}


def deadman_config(ping_url: str, people_url: str, **heartbeat: Any) -> dict[str, Any]:
    return {
        "receivers": [
            {"type": "heartbeat", "name": "deadman", "url": ping_url + PING_PATH,
             "timeout_s": 2, **heartbeat},
            {"type": "webhook", "name": "people", "url": people_url + "/hook"},
        ],
        # group_interval_s is inherited (300 s): the repeat must not wait for it.
        "route": {"receiver": "people", "group_by": ["alertname"], "group_wait_s": 30,
                  "group_interval_s": 300, "repeat_interval_s": 4 * 3600,
                  "routes": [{"matchers": ['alertname="Watchdog"'], "receiver": "deadman",
                              "group_wait_s": 0, "repeat_interval_s": 60}]},
    }


@pytest.fixture
async def people() -> Any:
    server = await RecordingServer().start()
    try:
        yield server
    finally:
        await server.stop()


async def test_watchdog_pings_every_repeat_interval_with_no_new_transition(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer,
    people: RecordingServer,
) -> None:
    d = make_dispatcher(redis, keys, deadman_config(hook.url, people.url), clock)
    await d.open()
    try:
        await publish(redis, keys, transition(WATCHDOG, "firing", 2, clock.now()))
        await pump(d)
        assert await d.flush_due() == 1
        for _ in range(10):
            clock.advance(59)
            assert await d.flush_due() == 0
            clock.advance(1)
            assert await d.flush_due() == 1
    finally:
        await d.close()
    assert len(hook.requests) == 11
    assert {(r.path, r.body) for r in hook.requests} == {(PING_PATH, b"")}
    assert people.requests == []


async def test_a_slow_ping_does_not_stretch_the_interval(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer,
    people: RecordingServer,
) -> None:
    d = make_dispatcher(redis, keys, deadman_config(hook.url, people.url), clock)
    await d.open()
    try:
        await publish(redis, keys, transition(WATCHDOG, "firing", 2, clock.now()))
        await pump(d)
        gate = asyncio.Event()
        hook.faults.append(("gate", gate))
        flush = asyncio.create_task(d.flush_due())

        async def held() -> bool:
            return hook.attempts >= 1

        await eventually(held)
        clock.advance(3)  # the service answers 3 s later
        gate.set()
        assert await flush == 1
        clock.advance(57)  # one repeat interval after the flush that sent the ping
        assert await d.flush_due() == 1
    finally:
        await d.close()
    assert hook.attempts == 2


async def test_running_dispatcher_keeps_pinging(
    redis: Redis, keys: Keys, hook: RecordingServer, people: RecordingServer,
) -> None:
    clock = HeldClock()
    d = make_dispatcher(redis, keys, deadman_config(hook.url, people.url, method="POST"),
                        clock)
    run = asyncio.create_task(d.run())
    try:
        await publish(redis, keys, transition(WATCHDOG, "firing", 2, clock.now()))
        await hook.wait_for(1)
        for n in range(2, 5):
            clock.advance(60)
            await hook.wait_for(n)
    finally:
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
    body = hook.requests[-1].json()
    assert body["status"] == "firing" and body["alerts"][0]["labels"]["alertname"] == "Watchdog"
    assert people.requests == []


async def test_ping_errors_never_show_the_url(hook: RecordingServer) -> None:
    cfg = HeartbeatReceiver(name="deadman", url=hook.url + PING_PATH)
    firing = transition(WATCHDOG, "firing", 2, 1_800_000_000.0)
    n = Notification(receiver="deadman", group_key="g", group_labels={}, firing=[firing],
                     resolved=[], version=0, sent_at=1_800_000_000.0)
    hook.faults.append((500, None))
    async with aiohttp.ClientSession() as session:
        sender = HeartbeatSender(cfg, session)
        with pytest.raises(DeliveryError) as failed:
            await sender.send(n)
        assert failed.value.retryable
        assert PING_PATH not in str(failed.value) and hook.url not in str(failed.value)
        # A resolved Watchdog is the switch stopping: not a ping.
        resolved = transition(WATCHDOG, "resolved", 3, 1_800_000_060.0)
        await sender.send(Notification(receiver="deadman", group_key="g", group_labels={},
                                       firing=[], resolved=[resolved], version=1,
                                       sent_at=1_800_000_060.0))
    assert hook.attempts == 1 and hook.requests == []
    assert "0f2e6a8c" not in repr(cfg)  # the check's key is a secret


def test_watchdog_is_routed_nowhere_unless_a_route_names_it() -> None:
    def receivers_of(cfg: AlertsConfig, labels: dict[str, str]) -> list[str]:
        return [r.receiver for r in Route.build(cfg.route).match(labels)]

    default = AlertsConfig()
    assert receivers_of(default, WATCHDOG) == [WATCHDOG_DISCARD]
    assert receivers_of(default, {"alertname": "PoolShare"}) == ["console"]

    slack_only = AlertsConfig.model_validate({
        "receivers": [{"type": "slack", "name": "slack", "webhook_url": "env:SLACK_URL"}],
        "route": {"receiver": "slack", "routes": [{"matchers": ["severity=critical"],
                                                   "receiver": "slack"}]},
    })
    assert receivers_of(slack_only, WATCHDOG) == [WATCHDOG_DISCARD]
    assert receivers_of(slack_only, {"alertname": "PoolShare", "severity": "critical"}) == [
        "slack"]
    assert AlertsConfig.model_validate(slack_only.model_dump(by_alias=True)) == slack_only

    explicit = AlertsConfig.model_validate(deadman_config("http://a", "http://b"))
    assert receivers_of(explicit, WATCHDOG) == ["deadman"]
    assert WATCHDOG_DISCARD not in {r.name for r in explicit.receivers}

    demo = AlertsConfig.model_validate({"demo_console": True})
    assert receivers_of(demo, WATCHDOG) == [WATCHDOG_DISCARD]


async def test_watchdog_never_reaches_a_person_by_default(
    redis: Redis, keys: Keys, clock: ManualClock, people: RecordingServer,
) -> None:
    cfg = {"receivers": [{"type": "webhook", "name": "people", "url": people.url + "/hook"}],
           "route": {"receiver": "people", "group_wait_s": 0}}
    d = make_dispatcher(redis, keys, cfg, clock)
    await d.open()
    try:
        await publish(redis, keys, transition(WATCHDOG, "firing", 2, clock.now()))
        await publish(redis, keys, transition({"alertname": "PoolShare"}, "firing", 2,
                                              clock.now()))
        await pump(d)
        delivered = 0
        for _ in range(3):
            delivered += await d.flush_due()
            clock.advance(4 * 3600)
    finally:
        await d.close()
    assert delivered == 6  # each group and its two repeats; the Watchdog's to the discard
    assert len(people.requests) == 3
    names = {a["labels"]["alertname"] for r in people.requests for a in r.json()["alerts"]}
    assert names == {"PoolShare"}


def test_deploy_readme_example_routes_the_watchdog_to_the_heartbeat_only() -> None:
    readme = Path(__file__).resolve().parents[2] / "deploy" / "README.md"
    example = re.findall(r"```yaml\n(.*?)```", readme.read_text(), flags=re.S)[0]
    cfg = AlertsConfig.model_validate(yaml.safe_load(example)["alerts"])
    route = Route.build(cfg.route)
    assert [r.receiver for r in route.match(WATCHDOG)] == ["deadman"]
    assert cfg.receiver("deadman").type == "heartbeat"
    assert [r.receiver for r in route.match({"alertname": "PoolShare"})] == ["slack"]
