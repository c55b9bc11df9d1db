"""The plugin as the daemon wires it: the dispatcher component running for real on the
system clock, state metrics, and the HTTP API for silences and alerts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.alerts.cli import parse_duration
from convmon.alerts.config import AlertsConfig
from convmon.alerts.plugin import PLUGIN
from convmon.monitor.alerting import encode_transition
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import BusSettings, CoreSettings
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime

from .helpers import RecordingServer, publish, transition


@pytest.fixture
def runtime(redis: Redis, keys: Keys, bus: EventBus, tmp_path: Path) -> Runtime:
    settings = CoreSettings(bus=BusSettings(block_ms=20, claim_idle_ms=200))
    return Runtime(settings=settings, redis=redis, keys=keys, bus=bus, clock=SystemClock(),
                   metrics=CollectorRegistry(), instance="test-1", data_dir=tmp_path)


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    app.router.add_routes(PLUGIN.http_routes(runtime, AlertsConfig()))  # type: ignore[misc]
    async with TestClient(TestServer(app)) as client:
        yield client


async def test_dispatcher_component_runs_and_stops_cleanly(
    runtime: Runtime, hook: RecordingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = AlertsConfig.model_validate({
        "receivers": [{"type": "webhook", "name": "hook", "url": hook.url},
                      {"type": "console", "name": "console"}],
        "route": {"receiver": "hook", "group_wait_s": 0, "group_by": ["alertname"],
                  "routes": [{"receiver": "console", "continue": True}, {"receiver": "hook"}]},
        "tick_s": 0.05,
    })
    (component,) = PLUGIN.components(runtime, cfg)
    task = asyncio.create_task(component.run())
    try:
        now = runtime.clock.now()
        await publish(runtime.redis, runtime.keys, transition(
            {"alertname": "NoHeliumPayout", "memo": "\x1b[31mred"}, "firing", 2, now))
        await hook.wait_for(1)
        assert hook.requests[0].json()["groupLabels"] == {"alertname": "NoHeliumPayout"}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    out = capsys.readouterr().out
    assert "FIRING" in out and "NoHeliumPayout" in out and "\x1b" not in out
    sent = runtime.metrics.get_sample_value("convmon_notifications_sent_total",
                                            {"receiver": "hook"})
    assert sent == 1
    pending = await runtime.redis.xpending(runtime.keys.alerts, "alerts-dispatcher")
    assert pending["pending"] == 0


async def test_silence_api_and_state_metrics(
    runtime: Runtime, api: TestClient[web.Request, web.Application]
) -> None:
    resp = await api.post("/api/v1/silences", json={
        "matchers": ["alertname=PoolShare", "pool=~foundry|antpool"], "duration_s": 3600,
        "author": "ops", "comment": "upgrade"})
    assert resp.status == 201
    created = await resp.json()
    assert created["state"] == "active" and created["author"] == "ops"
    bad = await api.post("/api/v1/silences", json={"matchers": ["pool=~("],
                                                   "duration_s": 60, "author": "x"})
    assert bad.status == 400 and "regex" in (await bad.json())["error"]
    everything = await api.post("/api/v1/silences", json={"matchers": ["pool=~.*"],
                                                          "duration_s": 60, "author": "x"})
    assert everything.status == 400

    families = {m.name: m for m in await PLUGIN.state_metrics(runtime, AlertsConfig())}  # type: ignore[misc]
    assert families["convmon_silences_active"].samples[0].value == 1

    listed = await (await api.get("/api/v1/silences")).json()
    assert [s["id"] for s in listed] == [created["id"]]
    assert (await api.delete(f"/api/v1/silences/{created['id']}")).status == 200
    assert (await api.delete("/api/v1/silences/nope")).status == 404
    listed = await (await api.get("/api/v1/silences")).json()
    assert listed[0]["state"] == "expired"
    families = {m.name: m for m in await PLUGIN.state_metrics(runtime, AlertsConfig())}  # type: ignore[misc]
    assert families["convmon_silences_active"].samples[0].value == 0


async def test_alerts_api_lists_active_alerts(
    runtime: Runtime, api: TestClient[web.Request, web.Application]
) -> None:
    t = transition({"alertname": "PoolShare"}, "firing", 2, runtime.clock.now())
    await runtime.redis.hset(runtime.keys.active_alerts, t.fingerprint, encode_transition(t))
    alerts = await (await api.get("/api/v1/alerts")).json()
    assert [(a["rule"], a["state"]) for a in alerts] == [("PoolShare", "firing")]


def test_parse_duration() -> None:
    assert parse_duration("90s") == 90
    assert parse_duration("2h") == 7200
    assert parse_duration("1.5d") == 1.5 * 86400
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_config_rejects_unknown_receiver_and_bad_matchers() -> None:
    with pytest.raises(ValueError, match="unknown receiver"):
        AlertsConfig.model_validate({"receivers": [{"type": "console", "name": "c"}],
                                     "route": {"receiver": "nope"}})
    with pytest.raises(ValueError, match="invalid matcher"):
        AlertsConfig.model_validate({"route": {"receiver": "console", "matchers": ["x"]}})
    with pytest.raises(ValueError, match="exactly one"):
        AlertsConfig.model_validate({"receivers": [{"type": "slack", "name": "s"}],
                                     "route": {"receiver": "s"}})


def test_demo_console_adds_a_console_route_and_keeps_the_root_receiver() -> None:
    cfg = AlertsConfig.model_validate({
        "demo_console": True,
        "receivers": [{"type": "webhook", "name": "hook", "url": "http://127.0.0.1:1/"}],
        "route": {"receiver": "hook"},
    })
    from convmon.alerts.routing import Route

    matched = Route.build(cfg.route).match({"alertname": "X", "severity": "info"})
    assert sorted(r.receiver for r in matched) == ["console", "hook"]
    assert AlertsConfig.model_validate({"demo_console": True}).receiver("console")


def test_check_reports_unresolvable_secrets_with_their_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from convmon.monitor.app import load_config
    from convmon.monitor.yamlfile import FileErrors

    monkeypatch.delenv("ALERTS_TEST_MISSING_HOOK", raising=False)
    path = tmp_path / "convmon.yaml"
    path.write_text(
        "alerts:\n"
        "  receivers:\n"
        "    - type: webhook\n"
        "      name: hook\n"
        "      url: env:ALERTS_TEST_MISSING_HOOK\n"
        "  route:\n"
        "    receiver: hook\n"
    )
    with pytest.raises(FileErrors) as caught:
        load_config(path, plugins=[PLUGIN])
    (error,) = caught.value.errors
    assert error.line == 5 and error.field == "alerts.receivers[0].url"
    assert "ALERTS_TEST_MISSING_HOOK is not set" in error.message
    monkeypatch.setenv("ALERTS_TEST_MISSING_HOOK", "http://127.0.0.1:1/")
    load_config(path, plugins=[PLUGIN])


def test_check_wants_receiver_timeouts_within_the_shutdown_budget(tmp_path: Path) -> None:
    from convmon.monitor.app import load_config
    from convmon.monitor.yamlfile import FileErrors

    path = tmp_path / "convmon.yaml"
    text = (
        "supervisor:\n"
        "  shutdown_timeout_s: 12\n"
        "alerts:\n"
        "  receivers:\n"
        "    - type: webhook\n"
        "      name: hook\n"
        "      url: http://127.0.0.1:1/\n"
        "      timeout_s: 12\n"
        "    - type: email\n"
        "      name: mail\n"
        "      host: 127.0.0.1\n"
        "      from: convmon@example.org\n"
        "      to: [ops@example.org]\n"
        "  route:\n"
        "    receiver: hook\n"
    )
    path.write_text(text)
    with pytest.raises(FileErrors) as caught:
        load_config(path, plugins=[PLUGIN])
    (error,) = caught.value.errors  # the email receiver's default (10 s) fits
    assert error.line == 8 and error.field == "alerts.receivers[0].timeout_s"
    assert "supervisor.shutdown_timeout_s (12 s)" in error.message
    path.write_text(text.replace("timeout_s: 12\n    - type", "timeout_s: 11.5\n    - type"))
    load_config(path, plugins=[PLUGIN])
    # the core default budget (15 s) applies when the supervisor section is absent
    path.write_text(text.replace("  shutdown_timeout_s: 12\n", "  restart_backoff_max_s: 9\n")
                    .replace("timeout_s: 12\n    - type", "timeout_s: 20\n    - type"))
    with pytest.raises(FileErrors) as caught:
        load_config(path, plugins=[PLUGIN])
    assert "(15 s)" in caught.value.errors[0].message
