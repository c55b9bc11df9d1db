"""A JSON-RPC proxy in front of a node that behaves like a capped public provider.

In: JSON-RPC over HTTP POST and websocket from the collector. Out: the same requests
forwarded to the upstream node (anvil), except ``eth_getLogs`` spanning more than
``max_range`` blocks, which get the provider error real endpoints send (so the collector's
range splitting runs against the real wire protocol), and websockets that `drop_websockets`
closes on demand (so reconnect + resubscribe + backfill can be exercised). `fail_next`
queues HTTP faults for the next requests: an error status (429 with ``Retry-After``, 500)
or a body that is not JSON; `fail_method` does the same for the next calls of one method
only, or answers them with a result of the wrong shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from typing import Any

import aiohttp
from aiohttp import web

RANGE_ERROR = {"code": -32005, "message": "block range is too large"}


class RpcProxy:
    def __init__(self, upstream_http: str, upstream_ws: str, *,
                 max_range: int | None = None) -> None:
        self.upstream_http = upstream_http
        self.upstream_ws = upstream_ws
        self.max_range = max_range
        self.refused = 0
        self.log_ranges: list[tuple[int, int]] = []
        self._sockets: set[web.WebSocketResponse] = set()
        self._faults: deque[tuple[int, float | None]] = deque()
        self._method_faults: dict[str, deque[tuple[int, Any]]] = {}
        self.faults_served = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self._http)
        app.router.add_get("/ws", self._ws)
        self._session = aiohttp.ClientSession()
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    async def close(self) -> None:
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def fail_next(self, status: int, *, retry_after: float | None = None,
                  times: int = 1) -> None:
        """Answer the next ``times`` HTTP requests with ``status`` (0 = a 200 whose body is
        not JSON) instead of forwarding them."""
        for _ in range(times):
            self._faults.append((status, retry_after))

    def fail_method(self, method: str, *, status: int = 200, result: Any = None,
                    times: int = 1) -> None:
        """Answer the next ``times`` HTTP calls of ``method`` with ``status`` (an error
        status, or 200 with ``result`` as the JSON-RPC result) instead of forwarding them."""
        queue = self._method_faults.setdefault(method, deque())
        for _ in range(times):
            queue.append((status, result))

    def _method_fault(self, body: bytes) -> web.Response | None:
        try:
            request = json.loads(body)
        except ValueError:
            return None
        method = request.get("method") if isinstance(request, dict) else None
        queue = self._method_faults.get(str(method))
        if not queue:
            return None
        status, result = queue.popleft()
        self.faults_served += 1
        if status != 200:
            return web.Response(status=status, text="fault injected")
        return web.json_response({"jsonrpc": "2.0", "id": request.get("id"), "result": result})

    async def drop_websockets(self) -> None:
        for ws in list(self._sockets):
            await ws.close()

    def _refusal(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict) or request.get("method") != "eth_getLogs":
            return None
        params = request.get("params") or [{}]
        flt = params[0] if isinstance(params[0], dict) else {}
        try:
            lo, hi = int(flt["fromBlock"], 16), int(flt["toBlock"], 16)
        except (KeyError, TypeError, ValueError):
            return None
        self.log_ranges.append((lo, hi))
        if self.max_range is not None and hi - lo + 1 > self.max_range:
            self.refused += 1
            return {"jsonrpc": "2.0", "id": request.get("id"), "error": RANGE_ERROR}
        return None

    async def _http(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if self._faults:
            status, retry_after = self._faults.popleft()
            self.faults_served += 1
            if status == 0:
                return web.Response(body=b"<html>upstream hiccup</html>",
                                    content_type="application/json")
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            return web.Response(status=status, text="fault injected", headers=headers)
        fault = self._method_fault(body)
        if fault is not None:
            return fault
        try:
            refusal = self._refusal(json.loads(body))
        except ValueError:
            refusal = None
        if refusal is not None:
            return web.json_response(refusal)
        assert self._session is not None
        async with self._session.post(
            self.upstream_http, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            return web.Response(body=await upstream.read(), status=upstream.status,
                                content_type="application/json")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        client = web.WebSocketResponse(max_msg_size=0)
        await client.prepare(request)
        self._sockets.add(client)
        assert self._session is not None
        try:
            async with self._session.ws_connect(self.upstream_ws, max_msg_size=0) as upstream:
                async def down() -> None:
                    async for msg in upstream:
                        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                            await client.send_str(msg.data if isinstance(msg.data, str)
                                                  else msg.data.decode())
                    await client.close()

                pump = asyncio.create_task(down())
                try:
                    async for msg in client:
                        if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                            continue
                        text = msg.data if isinstance(msg.data, str) else msg.data.decode()
                        try:
                            refusal = self._refusal(json.loads(text))
                        except ValueError:
                            refusal = None
                        if refusal is not None:
                            await client.send_str(json.dumps(refusal))
                        else:
                            await upstream.send_str(text)
                finally:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump
        except aiohttp.ClientError:
            pass
        finally:
            self._sockets.discard(client)
            await client.close()
        return client
