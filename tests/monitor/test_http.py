"""HTTP endpoints against a real Redis: metrics from state, health, readiness, auth."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import CoreSettings, HttpSettings
from convmon.monitor.health import CollectorHealth
from convmon.monitor.http import HttpServer
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.monitor.secrets import Secret


@pytest.fixture
def runtime(redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry) -> Runtime:
    return Runtime(
        settings=CoreSettings(), redis=redis, keys=keys, bus=bus, clock=ManualClock(),
        metrics=registry, instance="test", data_dir=Path("/tmp"),
    )


async def serve(server: HttpServer) -> AsyncIterator[str]:
    from aiohttp.test_utils import TestServer

    ts = TestServer(server.app, host="127.0.0.1")
    await ts.start_server()
    try:
        yield f"http://127.0.0.1:{ts.port}"
    finally:
        await ts.close()


@pytest.fixture
async def base(runtime: Runtime) -> AsyncIterator[str]:
    server = HttpServer(runtime, HttpSettings(), local_collectors=["btc"])
    async for url in serve(server):
        yield url


async def test_metrics_come_from_redis_state(runtime: Runtime, base: str) -> None:
    health = CollectorHealth(
        "btc", redis=runtime.redis, keys=runtime.keys, bus=runtime.bus, clock=runtime.clock,
        registry=runtime.metrics,
    )
    await health.connected("ws up")
    await health.progress(840000, event_time=runtime.clock.now() - 30)
    health.malformed("block", "bad json")
    async with aiohttp.ClientSession() as s, s.get(f"{base}/metrics") as r:
        assert r.status == 200
        text = await r.text()
    samples = {
        (smp.name, tuple(sorted(smp.labels.items()))): smp.value
        for fam in text_string_to_metric_families(text)
        for smp in fam.samples
    }
    assert samples[("convmon_collector_up", (("collector", "btc"),))] == 1.0
    assert samples[
        ("convmon_collector_malformed_payloads_total", (("collector", "btc"), ("what", "block")))
    ] == 1.0
    assert samples[("convmon_bus_stream_length", (("stream", "events"),))] == 1.0


async def test_healthz_and_readyz(runtime: Runtime, base: str) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/healthz") as r:
            assert r.status == 200
        async with s.get(f"{base}/readyz") as r:
            assert r.status == 503
            assert "collector btc not connected" in (await r.json())["problems"]
        health = CollectorHealth(
            "btc", redis=runtime.redis, keys=runtime.keys, bus=runtime.bus,
            clock=runtime.clock, registry=runtime.metrics,
        )
        await health.connected()
        async with s.get(f"{base}/readyz") as r:
            assert r.status == 200


async def test_status_document_lists_collectors_and_alerts(runtime: Runtime, base: str) -> None:
    await runtime.redis.hset(
        runtime.keys.active_alerts, "fp1",
        json.dumps({"state": "firing", "labels": {"alertname": "X"}, "starts_at": 1}),
    )
    health = CollectorHealth(
        "btc", redis=runtime.redis, keys=runtime.keys, bus=runtime.bus, clock=runtime.clock,
        registry=runtime.metrics,
    )
    await health.disconnected("ws closed")
    async with aiohttp.ClientSession() as s, s.get(f"{base}/api/v1/status") as r:
        doc = await r.json()
    assert doc["collectors"]["btc"]["connected"] is False
    assert doc["alerts"][0]["labels"]["alertname"] == "X"


async def test_api_requires_the_bearer_token(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVMON_TEST_TOKEN", "t0ken")
    server = HttpServer(runtime, HttpSettings(token=Secret("env:CONVMON_TEST_TOKEN")))
    async for base in serve(server):
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{base}/api/v1/status") as r:
                assert r.status == 401
            async with s.get(
                f"{base}/api/v1/status", headers={"Authorization": "Bearer t0ken"}
            ) as r:
                assert r.status == 200
            async with s.get(f"{base}/metrics") as r:
                assert r.status == 200


async def test_status_time_follows_the_daemons_clock(runtime: Runtime, base: str) -> None:
    """Another process (the CLI) reads the demo's state: ages must follow the demo's fast
    clock, not the reader's, or everything reads as 0 s old."""
    wall = time.time()
    await runtime.redis.hset(runtime.keys.heartbeat("demo"), mapping={
        "instance": "demo", "pid": 1, "roles": "rules", "started_at": 2.0e9,
        "updated_at": 2.0e9, "wall_at": wall - 10, "clock_rate": 1200.0, "components": "[]",
    })
    async with aiohttp.ClientSession() as s, s.get(f"{base}/api/v1/status") as r:
        doc = await r.json()
    # Ten wall seconds after the beat, the demo's clock is 12,000 s further on.
    assert 2.0e9 + 12_000 <= doc["time"] < 2.0e9 + 12_000 + 1200 * 60
    [process] = doc["processes"]
    assert process["pid"] == 1 and process["components"] == []
