"""Silences against a real Redis: every number that enters through the HTTP API or the store
is finite and in range, and a stored record that cannot be decoded is skipped and counted,
never fatal to the store, the HTTP API or the dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.alerts.config import AlertsConfig
from convmon.alerts.plugin import PLUGIN
from convmon.alerts.silences import MAX_DURATION_S, SilenceStore
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime

from .helpers import RecordingServer, make_dispatcher, publish, pump, transition

Client = TestClient[web.Request, web.Application]

pytestmark = pytest.mark.all_redis  # silences and the dispatcher's Lua run on 6.2 too

UNDECODABLE = "convmon_silences_undecodable_total"


@pytest.fixture
def runtime(redis: Redis, keys: Keys, bus: EventBus, clock: ManualClock,
            registry: CollectorRegistry, tmp_path: Path) -> Runtime:
    return Runtime(settings=CoreSettings(), redis=redis, keys=keys, bus=bus, clock=clock,
                   metrics=registry, instance="test", data_dir=tmp_path)


@pytest.fixture
async def api(runtime: Runtime) -> AsyncIterator[Client]:
    app = web.Application()
    app.router.add_routes(PLUGIN.http_routes(runtime, AlertsConfig()))  # type: ignore[misc]
    async with TestClient(TestServer(app)) as client:
        yield client


async def post_raw(api: Client, body: str) -> tuple[int, Any]:
    resp = await api.post("/api/v1/silences", data=body,
                          headers={"Content-Type": "application/json"})
    return resp.status, await resp.json()


@pytest.mark.parametrize(("fields", "named"), [
    ('"duration_s": NaN', "duration_s"),
    ('"duration_s": Infinity', "duration_s"),
    ('"duration_s": -Infinity', "duration_s"),
    ('"duration_s": 1e400', "duration_s"),
    ('"duration_s": 1' + "0" * 400, "duration_s"),
    ('"duration_s": 0', "duration_s"),
    ('"duration_s": -60', "duration_s"),
    (f'"duration_s": {MAX_DURATION_S + 1}', "duration_s"),
    ('"duration_s": true', "duration_s"),
    ('"duration_s": "3600"', "duration_s"),
    ('"duration_s": null', "duration_s"),
    ('"ends_at": Infinity', "ends_at"),
    ('"ends_at": NaN', "ends_at"),
    ('"ends_at": 1e400', "ends_at"),
    ('"ends_at": 1e13', "ends_at"),
    ('"ends_at": false', "ends_at"),
    ('"starts_at": NaN, "duration_s": 60', "starts_at"),
    ('"starts_at": -Infinity, "ends_at": 1800000060', "starts_at"),
    ('"starts_at": 5, "duration_s": 60', "starts_at"),
    ('"starts_at": 1800000000, "ends_at": 1800000000', "ends_at"),
])
async def test_api_refuses_numbers_that_are_not_finite_or_out_of_range(
    api: Client, fields: str, named: str
) -> None:
    status, body = await post_raw(
        api, '{"matchers": ["alertname=PoolShare"], "author": "ops", ' + fields + "}")
    assert status == 400, body
    assert named in body["error"]
    listed = await api.get("/api/v1/silences")
    assert listed.status == 200 and await listed.json() == []


async def test_api_refuses_bad_text_fields(api: Client) -> None:
    for fields in ('"author": 7', '"author": "ops", "comment": ["x"]',
                   '"author": "ops", "matchers": "alertname=PoolShare"'):
        status, body = await post_raw(api, '{"matchers": ["alertname=PoolShare"], '
                                      '"duration_s": 60, ' + fields + "}")
        assert status == 400, body
    status, body = await post_raw(api, "[1, 2]")
    assert status == 400 and "object" in body["error"]
    status, body = await post_raw(api, "{not json")
    assert status == 400


async def test_api_accepts_integers_and_floats(api: Client, clock: ManualClock) -> None:
    status, body = await post_raw(
        api, '{"matchers": ["alertname=PoolShare"], "author": "ops", "duration_s": 90.5}')
    assert status == 201 and body["ends_at"] == clock.now() + 90.5
    status, body = await post_raw(
        api, '{"matchers": ["alertname=PoolShare"], "author": "ops", '
        f'"starts_at": {int(clock.now())}, "ends_at": {int(clock.now()) + 60}}}')
    assert status == 201 and body["state"] == "active"


async def test_store_add_validates_too(redis: Redis, keys: Keys, clock: ManualClock) -> None:
    store = SilenceStore(redis, keys)
    now = clock.now()
    for starts, ends in ((now, float("nan")), (now, float("inf")), (float("nan"), now + 60),
                         (float("-inf"), now), (now, now + MAX_DURATION_S + 1), (0.0, 60.0)):
        with pytest.raises(ValueError, match=r"starts_at|ends_at|silence"):
            await store.add(["alertname=PoolShare"], starts, ends, "ops", "", now)
    with pytest.raises(ValueError, match="now"):
        await store.add(["alertname=PoolShare"], now, now + 60, "ops", "", float("nan"))
    with pytest.raises(ValueError, match="starts_at"):
        await store.add(["alertname=PoolShare"], True, now + 60, "ops", "", now)
    assert await redis.hlen(keys.silences) == 0


def _record(**override: Any) -> bytes:
    good = {"id": "x", "matchers": ["alertname=PoolShare"], "starts_at": 1_800_000_000.0,
            "ends_at": 1_800_003_600.0, "author": "ops", "comment": "SECRET-CONTENT",
            "created_at": 1_800_000_000.0}
    return msgspec.json.encode({**good, **override})


CORRUPT: dict[str, bytes] = {
    "garbage": b"\xff{SECRET-CONTENT not json",
    "empty": b"",
    "list": b"[1, 2, 3]",
    "null-end": _record(ends_at=None),  # what a NaN end used to be stored as
    "huge-end": _record().replace(b"1800003600.0", b"1e400"),
    "far-end": _record(ends_at=1e15),
    "str-start": _record(starts_at="soon"),
    "bool-start": _record(starts_at=True),
    "matchers-str": _record(matchers="alertname=PoolShare"),
    "missing-author": msgspec.json.encode({"id": "x", "matchers": ["a=b"]}),
    "bad-regex": _record(matchers=["alertname=~(?=x)"]),
    "no-matchers": _record(matchers=[]),
}


async def store_corrupt(redis: Redis, keys: Keys) -> None:
    await redis.hset(keys.silences,
                     mapping={f"corrupt-{name}": raw for name, raw in CORRUPT.items()})


async def test_undecodable_records_are_skipped_counted_and_logged(
    redis: Redis, keys: Keys, clock: ManualClock, registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = SilenceStore(redis, keys, registry=registry)
    now = clock.now()
    good = await store.add(["alertname=PoolShare"], now, now + 3600, "ops", "upgrade", now)
    await store_corrupt(redis, keys)

    with caplog.at_level(logging.WARNING, logger="convmon.alerts.silences"):
        assert [s.id for s in await store.all(now)] == [good.id]
        assert [s.id for s in await store.active(now)] == [good.id]
    assert registry.get_sample_value(UNDECODABLE) >= len(CORRUPT)
    warned = {r.getMessage() for r in caplog.records}
    for name in CORRUPT:
        assert any(f"corrupt-{name}" in m for m in warned), name
    assert not any("SECRET-CONTENT" in m for m in warned)
    assert not any("SECRET-CONTENT" in str(r.__dict__) for r in caplog.records)

    # The store keeps working: expire the good one, and expiring a corrupt id removes it.
    assert await store.expire(good.id, now + 10)
    assert [s.state(now + 10) for s in await store.all(now + 10)] == ["expired"]
    for name in CORRUPT:
        assert await store.expire(f"corrupt-{name}", now + 10)
    assert await redis.hlen(keys.silences) == 1
    assert not await store.expire("corrupt-garbage", now + 10)


async def test_http_api_keeps_working_with_undecodable_records(
    api: Client, runtime: Runtime
) -> None:
    resp = await api.post("/api/v1/silences", json={
        "matchers": ["alertname=PoolShare"], "duration_s": 3600, "author": "ops"})
    assert resp.status == 201
    created = await resp.json()
    await store_corrupt(runtime.redis, runtime.keys)

    listed = await api.get("/api/v1/silences")
    assert listed.status == 200
    assert [s["id"] for s in await listed.json()] == [created["id"]]
    assert runtime.metrics.get_sample_value(UNDECODABLE) >= len(CORRUPT)
    families = {m.name: m for m in await PLUGIN.state_metrics(runtime, AlertsConfig())}  # type: ignore[misc]
    assert families["convmon_silences_active"].samples[0].value == 1

    assert (await api.delete("/api/v1/silences/corrupt-null-end")).status == 200
    assert (await api.delete("/api/v1/silences/corrupt-null-end")).status == 404
    assert (await api.delete(f"/api/v1/silences/{created['id']}")).status == 200
    listed = await api.get("/api/v1/silences")
    assert [s["state"] for s in await listed.json()] == ["expired"]


async def test_dispatcher_delivers_and_silences_despite_undecodable_records(
    redis: Redis, keys: Keys, clock: ManualClock, hook: RecordingServer
) -> None:
    cfg = {"receivers": [{"type": "webhook", "name": "hook", "url": hook.url + "/hook"}],
           "route": {"receiver": "hook", "group_by": ["alertname"], "group_wait_s": 0}}
    d = make_dispatcher(redis, keys, cfg, clock)
    await d.open()
    try:
        now = clock.now()
        await SilenceStore(redis, keys).add(["alertname=Muted"], now, now + 3600, "ops", "",
                                            now)
        await store_corrupt(redis, keys)
        await publish(redis, keys, transition({"alertname": "Muted"}, "firing", 2, now))
        await publish(redis, keys, transition({"alertname": "NoBlock"}, "firing", 2, now))
        await pump(d)
        clock.advance(1)
        assert await d.flush_due() == 1
        assert hook.requests[0].json()["groupLabels"] == {"alertname": "NoBlock"}
    finally:
        await d.close()


async def test_running_dispatcher_survives_a_silence_posted_with_nan(
    api: Client, runtime: Runtime, hook: RecordingServer
) -> None:

    """The whole path a user took: a NaN silence through the API, then an alert."""
    status, _ = await post_raw(
        api, '{"matchers": ["alertname=Other"], "author": "ops", "duration_s": NaN}')
    assert status == 400
    await runtime.redis.hset(runtime.keys.silences, "corrupt-null-end",
                             CORRUPT["null-end"])
    cfg = AlertsConfig.model_validate({
        "receivers": [{"type": "webhook", "name": "hook", "url": hook.url}],
        "route": {"receiver": "hook", "group_wait_s": 0, "group_by": ["alertname"]},
        "tick_s": 0.05,
    })
    (component,) = PLUGIN.components(runtime, cfg)
    task = asyncio.create_task(component.run())
    try:
        await publish(runtime.redis, runtime.keys, transition(
            {"alertname": "NoHeliumPayout"}, "firing", 2, runtime.clock.now()))
        delivered = asyncio.create_task(hook.wait_for(1))
        await asyncio.wait([delivered, task], return_when=asyncio.FIRST_COMPLETED)
        assert not task.done(), task.exception()
        await delivered
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
