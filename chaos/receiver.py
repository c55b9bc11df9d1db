"""A webhook receiver that records every notification, and can be made unreachable.

In: convmon's webhook POSTs (Alertmanager-style JSON: ``groupKey``, ``alerts[]`` with
``fingerprint``, ``status``, ``startsAt``). Out: `accepted` (every body answered 200, in
order) as `Delivered` records for the ledger. Modes: ``up`` (200), ``503`` (reachable but
failing) and ``closed`` (the listening socket is closed: connections are refused); the
port stays the same across modes so the daemon's configuration keeps pointing at it.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from aiohttp import web

from chaos.ledger import Delivered

Mode = Literal["up", "503", "closed"]


@dataclass(frozen=True)
class Received:
    at: float
    body: dict[str, Any]


class WebhookRecorder:
    def __init__(self) -> None:
        self.accepted: list[Received] = []
        self.refused = 0
        """Requests answered 503."""
        self.mode: Mode = "up"
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._open()

    async def _open(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])

    async def set_mode(self, mode: Mode) -> None:
        if mode == self.mode:
            return
        if mode == "closed" and self._site is not None:
            await self._site.stop()
            self._site = None
            # Kept-alive connections too: nothing gets through while closed.
            server = self._runner.server if self._runner is not None else None
            for conn in list(server.connections if server is not None else ()):
                conn.force_close()
        elif self.mode == "closed":
            await self._open()
        self.mode = mode

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        if self.mode != "up":
            self.refused += 1
            return web.Response(status=503, text="receiver outage (chaos)")
        try:
            body = json.loads(raw)
        except ValueError:
            return web.Response(status=400, text="not JSON")
        if not isinstance(body, dict):
            return web.Response(status=400, text="not a JSON object")
        self.accepted.append(Received(time.time(), body))
        return web.Response(status=200, text="ok")

    def delivered(self) -> list[Delivered]:
        return list(deliveries(b.body for b in self.accepted))


def deliveries(bodies: Any) -> list[Delivered]:
    """One `Delivered` per alert of each accepted notification body."""
    out: list[Delivered] = []
    for body in bodies:
        group = str(body.get("groupKey", ""))
        for alert in body.get("alerts") or ():
            if not isinstance(alert, dict):
                continue
            out.append(Delivered(group, str(alert.get("fingerprint", "")),
                                 str(alert.get("status", "")), str(alert.get("startsAt", ""))))
    return out
