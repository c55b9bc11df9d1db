"""A local stratum job server for tests and ``convmon demo``: SIMULATED pools' jobs served
over both wire formats the stratum collector reads.

1. mempool's websocket ``/api/v1/ws`` (aiohttp): after ``{"track-stratum": "all"}`` the
   client gets ``{"stratumJobs": "<JSON string of {pool id: job}>"}`` with every pool's
   latest job, then ``{"stratumJob": job}`` per new job.
2. Stratum v1 over TCP (asyncio), one listener per pool, newline-delimited JSON-RPC:
   ``mining.subscribe`` -> ``[[subscriptions], extranonce1, extranonce2_size]``,
   ``mining.authorize`` -> ``true`` (any worker), then ``mining.set_difficulty`` and
   ``mining.notify`` for each new job of that pool. A ``mining.submit`` is answered and
   counted (`submits`): the collector must never send one.

Controlled in-process: `publish` (jobs from `convmon.sim.stratum_jobs`), `drop_websockets`,
`drop_tcp`, `send_ws_raw` / `send_tcp_raw` (malformed frames and lines), `reconnect_tcp`
(``client.reconnect`` to a host/port/wait). Binds 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
from collections.abc import Iterable, Sequence
from typing import Any

from aiohttp import web

from convmon.sim.localhttp import json_objects, serve
from convmon.sim.stratum_jobs import EXTRANONCE1, EXTRANONCE2_SIZE, SimJob, SimStratumPool


class StratumServer:
    def __init__(
        self, pools: Sequence[SimStratumPool], *, ws_pools: Iterable[str] | None = None
    ) -> None:
        self.pools = {p.slug: p for p in pools}
        self.ws_pools = set(self.pools if ws_pools is None else ws_pools)
        """Pools whose jobs the websocket carries (all by default; mempool does not see
        every pool)."""
        self.latest: dict[int, dict[str, Any]] = {}
        self._latest_notify: dict[str, list[Any]] = {}
        self._ws: set[web.WebSocketResponse] = set()
        self._tracking: set[web.WebSocketResponse] = set()
        self._tcp_servers: dict[str, asyncio.Server] = {}
        self._tcp_clients: dict[str, set[asyncio.StreamWriter]] = {p: set() for p in self.pools}
        self._tcp_all: set[asyncio.StreamWriter] = set()
        """Every open TCP connection, authorized or not (closed by `close`)."""
        self.tcp_ports: dict[str, int] = {}
        self.subscribes = 0
        self.authorizations: list[tuple[str, str]] = []
        """(pool, worker) per ``mining.authorize``."""
        self.submits = 0
        self.tracking_requests = 0
        self.port = 0
        self._runner: web.AppRunner | None = None

    # Control
    async def publish(self, jobs: Iterable[SimJob]) -> None:
        """Send each job to websocket trackers and to the TCP clients of its pool."""
        for job in jobs:
            if job.pool.slug in self.ws_pools:
                doc = job.as_mempool()
                self.latest[job.pool.pool_id] = doc
                await self.send_ws_raw(json.dumps({"stratumJob": doc}))
            notify = job.as_notify()
            self._latest_notify[job.pool.slug] = notify
            await self._broadcast(job.pool.slug, {"id": None, "method": "mining.notify",
                                                  "params": notify})

    async def drop_websockets(self) -> int:
        dropped = len(self._ws)
        for ws in list(self._ws):
            await ws.close()
        return dropped

    async def send_ws_raw(self, text: str) -> None:
        for ws in list(self._tracking):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await ws.send_str(text)

    @property
    def websocket_count(self) -> int:
        return len(self._tracking)

    def tcp_count(self, pool: str) -> int:
        return len(self._tcp_clients[pool])

    async def drop_tcp(self, pool: str | None = None) -> int:
        dropped = 0
        for slug, writers in self._tcp_clients.items():
            if pool is not None and slug != pool:
                continue
            for writer in list(writers):
                writer.close()
                dropped += 1
        return dropped

    async def send_tcp_raw(self, pool: str, line: str) -> None:
        for writer in list(self._tcp_clients[pool]):
            with contextlib.suppress(ConnectionError):
                writer.write(line.encode() + b"\n")
                await writer.drain()

    async def reconnect_tcp(self, pool: str, host: str, port: int, wait_s: int = 0) -> None:
        """Send ``client.reconnect`` to the pool's clients (to another listener, say)."""
        await self._broadcast(pool, {"id": None, "method": "client.reconnect",
                                     "params": [host, port, wait_s]})

    async def _broadcast(self, pool: str, message: dict[str, Any]) -> None:
        line = json.dumps(message).encode() + b"\n"
        for writer in list(self._tcp_clients.get(pool, ())):
            try:
                writer.write(line)
                await writer.drain()
            except ConnectionError:
                self._tcp_clients[pool].discard(writer)

    # mempool websocket
    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._ws.add(ws)
        try:
            async for doc in json_objects(ws):
                if doc.get("track-stratum"):
                    self.tracking_requests += 1
                    snapshot = {str(k): v for k, v in self.latest.items()}
                    await ws.send_str(json.dumps({"stratumJobs": json.dumps(snapshot)}))
                    self._tracking.add(ws)
        finally:
            self._ws.discard(ws)
            self._tracking.discard(ws)
        return ws

    # Stratum v1
    async def _tcp_client(
        self, pool: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        def send(message: dict[str, Any]) -> None:
            writer.write(json.dumps(message).encode() + b"\n")

        self._tcp_all.add(writer)
        try:
            while line := await reader.readline():
                try:
                    req = json.loads(line)
                except ValueError:
                    continue
                method, rid = req.get("method"), req.get("id")
                if method == "mining.subscribe":
                    self.subscribes += 1
                    send({"id": rid, "error": None, "result": [
                        [["mining.set_difficulty", "d1"], ["mining.notify", "n1"]],
                        EXTRANONCE1, EXTRANONCE2_SIZE,
                    ]})
                elif method == "mining.authorize":
                    params = req.get("params") or [""]
                    self.authorizations.append((pool, str(params[0])))
                    send({"id": rid, "error": None, "result": True})
                    send({"id": None, "method": "mining.set_difficulty", "params": [65536]})
                    self._tcp_clients[pool].add(writer)
                    if pool in self._latest_notify:
                        send({"id": None, "method": "mining.notify",
                              "params": self._latest_notify[pool]})
                elif method == "mining.submit":
                    self.submits += 1
                    send({"id": rid, "error": None, "result": False})
                else:
                    send({"id": rid, "error": [20, "unknown method", None], "result": None})
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            self._tcp_clients[pool].discard(writer)
            self._tcp_all.discard(writer)
            writer.close()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v1/ws", self._websocket)
        return app

    async def start(
        self, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None
    ) -> None:
        """Serve the websocket and one Stratum v1 listener per pool (TLS with ``tls``)."""
        self._runner, self.port = await serve(self.app(), host)
        for slug in self.pools:
            tcp = await asyncio.start_server(
                functools.partial(self._tcp_client, slug), host, 0, ssl=tls
            )
            self._tcp_servers[slug] = tcp
            self.tcp_ports[slug] = tcp.sockets[0].getsockname()[1]

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/v1/ws"

    def stratum_url(self, pool: str, scheme: str = "stratum+tcp") -> str:
        return f"{scheme}://127.0.0.1:{self.tcp_ports[pool]}"

    async def close(self) -> None:
        await self.drop_websockets()
        for tcp in self._tcp_servers.values():
            tcp.close()
        # A server waits for its connections: close every one (a client cancelled while
        # connecting never closes its side).
        for writer in list(self._tcp_all):
            writer.close()
        for tcp in self._tcp_servers.values():
            await tcp.wait_closed()
        if self._runner is not None:
            await self._runner.cleanup()
