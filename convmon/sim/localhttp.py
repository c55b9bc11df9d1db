"""Serving a local aiohttp application for the simulated services.

`serve`: in, an application, a host (127.0.0.1 unless a test says otherwise) and a port
(0 for any free one); out, the running `web.AppRunner` (its ``cleanup`` stops the server)
and the port it listens on. `json_objects`: the JSON objects a websocket client sends.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web


async def serve(
    app: web.Application, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Start ``app`` on ``host:port``; the runner and the port actually bound."""
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server: Any = site._server
    return runner, int(server.sockets[0].getsockname()[1])


async def json_objects(ws: web.WebSocketResponse) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects a client sends on ``ws``, in order; binary frames, text that is
    not JSON and JSON that is not an object are skipped (a real server ignores them)."""
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            continue
        try:
            doc = json.loads(msg.data)
        except ValueError:
            continue
        if isinstance(doc, dict):
            yield doc
