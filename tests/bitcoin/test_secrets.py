"""Source URLs carry keys and passwords: failures must report them redacted everywhere."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from convmon.monitor.bus import EventBus
from convmon.monitor.events import CollectorStatus
from tests.bitcoin.helpers import events, make_collector
from tests.waiting import eventually

SECRETS = ("K3Y", "S3CRET", base64.b64encode(b"alice:S3CRET").decode())


@pytest.fixture
async def hostile_server() -> AsyncIterator[int]:
    """Refuses the websocket handshake (403) and redirects every REST request to itself,
    so the client gives up with errors that hold the URL and the request headers."""

    async def refuse(request: web.Request) -> web.Response:
        return web.Response(status=403)

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound(str(request.rel_url))

    app = web.Application()
    app.router.add_get("/api/v1/ws", refuse)
    app.router.add_route("*", "/{tail:.*}", loop)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield port
    finally:
        await runner.cleanup()


async def test_failures_never_expose_url_credentials_or_query(
    hostile_server: int, bus: EventBus, registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    origin = f"http://alice:S3CRET@127.0.0.1:{hostile_server}"
    col = make_collector(
        bus, registry, f"{origin}/api?api_key=K3Y", f"{origin.replace('http', 'ws')}"
        "/api/v1/ws?api_key=K3Y", attempts=2,
    )
    status_key = bus.keys.collector_status("bitcoin")

    async def down_reported() -> list[CollectorStatus]:
        return [e.payload for e in await events(bus)
                if isinstance(e.payload, CollectorStatus) and not e.payload.connected]

    async def reported() -> bool:
        # The sync failure writes ``last_error`` first and publishes the "down" status
        # event after it: wait for both, and for the push channel's failure.
        return col.push_failures > 0 and bool(await down_reported())

    task = asyncio.create_task(col.run())
    try:
        await eventually(reported, "sync and push failures reported")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    status = {k.decode(): v.decode() for k, v in (await bus.redis.hgetall(status_key)).items()}
    assert "TooManyRedirects" in status["last_error"]
    assert f"127.0.0.1:{hostile_server}/api" in status["last_error"]
    assert status["connected"] == "0"
    # ours only: the local server's own access log shows what it was sent
    logged = "\n".join(
        f"{r.getMessage()} {r.__dict__}" for r in caplog.records if r.name.startswith("convmon")
    )
    assert "WSServerHandshakeError" in logged
    (down, *_) = await down_reported()
    assert down.collector == "bitcoin"
    assert "TooManyRedirects" in down.detail and f"127.0.0.1:{hostile_server}" in down.detail
    published = "\n".join(repr(e) for e in await events(bus))
    for secret in SECRETS:
        assert secret not in str(status)
        assert secret not in logged
        assert secret not in published
