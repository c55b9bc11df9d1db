"""Serving a local aiohttp application for the simulated services.

In: an application, a host (127.0.0.1 unless a test says otherwise) and a port (0 for any
free one). Out: the running `web.AppRunner` (its ``cleanup`` stops the server) and the port
it listens on.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


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
