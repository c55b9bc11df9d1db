"""Pushes to a REAL Alertmanager (Debian prometheus-alertmanager), which routes them to a
local webhook: labels, annotations, startsAt/endsAt and resolution arrive as sent, and
firing alerts are re-pushed every resend interval."""

from __future__ import annotations

import shutil
import time
from collections.abc import AsyncIterator

import aiohttp
import msgspec
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from tests.deploy.am_harness import AlertmanagerHarness
from tests.shared_data import require_binary

from .helpers import RecordingServer, make_dispatcher, publish, pump, transition


@pytest.fixture
async def alertmanager(hook: RecordingServer) -> AsyncIterator[str]:
    binary = require_binary(
        "alertmanager", shutil.which("alertmanager") or shutil.which("prometheus-alertmanager")
    )
    config = {
        "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait": "1s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "hook", "webhook_configs": [
            {"url": f"{hook.url}/from-alertmanager", "send_resolved": True}]}],
    }
    async with AlertmanagerHarness.start(config, binary=binary) as am:
        yield am.url


async def test_push_routes_through_real_alertmanager(
    redis: Redis, keys: Keys, hook: RecordingServer, alertmanager: str
) -> None:
    # Alertmanager compares endsAt with its own clock: keep the manual clock behind it.
    clock = ManualClock(start=time.time() - 120)
    registry = CollectorRegistry()
    cfg = {
        "receivers": [{"type": "alertmanager", "name": "am", "urls": [alertmanager],
                       "resend_interval_s": 60}],
        "route": {"receiver": "am", "group_by": ["alertname"], "group_wait_s": 0,
                  "group_interval_s": 300, "repeat_interval_s": 3600},
    }
    d = make_dispatcher(redis, keys, cfg, clock, registry)
    await d.open()
    try:
        labels = {"alertname": "PoolConcentration", "severity": "critical", "window": "144"}
        t = transition(labels, "firing", 2, clock.now(),
                       annotations={"summary": "Top two pools above 50%"})
        t = msgspec.structs.replace(t, generator_url="http://convmon.local/rules/concentration")
        await publish(redis, keys, t)
        await pump(d)
        assert await d.flush_due() == 1
        await hook.wait_for(1)
        body = hook.requests[0].json()
        assert body["status"] == "firing"
        (alert,) = body["alerts"]
        assert alert["labels"] == labels
        assert alert["annotations"] == {"summary": "Top two pools above 50%"}
        assert alert["generatorURL"] == "http://convmon.local/rules/concentration"

        # Firing alerts are pushed again every resend interval, not every repeat interval.
        clock.advance(60)
        assert await d.flush_due() == 1
        sent = registry.get_sample_value("convmon_notifications_sent_total", {"receiver": "am"})
        assert sent == 2
        async with aiohttp.ClientSession() as session, session.get(
            alertmanager + "/api/v2/alerts"
        ) as resp:
            active = await resp.json()
        assert [a["labels"]["alertname"] for a in active] == ["PoolConcentration"]

        await publish(redis, keys, transition(labels, "resolved", 3, clock.now()))
        await pump(d)
        clock.advance(60)
        assert await d.flush_due() == 1
        await hook.wait_for(2)
        resolved = hook.requests[1].json()
        assert resolved["status"] == "resolved"
        assert resolved["alerts"][0]["labels"] == labels
    finally:
        await d.close()
