"""A local Bitcoin node for tests and ``convmon demo``: one simulated chain served over the
Esplora/mempool REST + websocket API, Bitcoin Core JSON-RPC and ZMQ (aiohttp, pyzmq).

Serves a chain of `SimBlock`s over the real endpoints: ``GET /api/blocks/tip/height``,
``/api/blocks/tip/hash``, ``/api/blocks/:start_height``, ``/api/block-height/:h``,
``/api/block/:hash``, ``/api/block/:hash/txid/0``, ``/api/tx/:txid`` and the websocket
``/api/v1/ws`` (after ``{"action":"want","data":["blocks"]}`` every new tip is pushed as
``{"block": {...}}``).
Controlled in-process: `append`, `reorg` (replace the last k blocks), `drop_websockets`,
`send_ws_raw` (arbitrary, e.g. malformed, websocket frames),
and queued faults for the next REST requests (`fail` with 429 + Retry-After or 500,
`garbage` malformed JSON bodies).

The same chain is also served as Bitcoin Core JSON-RPC (``POST /rpc``: getblockchaininfo,
getblockhash, getblock verbosity 2, getnetworkhashps) and, with `start_zmq` (pyzmq),
``hashblock`` notifications, so both collector sources run against one server.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from convmon.sim.bitcoin_chain import SimBlock, to_bitcoind
from convmon.sim.localhttp import json_objects, serve


@dataclass
class _Fault:
    status: int
    retry_after: float | None = None
    body: str | None = None


class BitcoinNodeServer:
    def __init__(self, blocks: Iterable[SimBlock] = ()) -> None:
        self.blocks: list[SimBlock] = []
        self._by_hash: dict[str, SimBlock] = {}
        self._txs: dict[str, dict[str, Any]] = {}
        self._faults: deque[_Fault] = deque()
        self._sockets: set[web.WebSocketResponse] = set()
        self._wanting: set[web.WebSocketResponse] = set()
        self.requests = 0
        self.attributed: set[str] = set()
        """Blocks whose coinbase a client asked for (it has seen them whole)."""
        self.port = 0
        self._zmq: Any = None
        self._zmq_seq = 0
        self._runner: web.AppRunner | None = None
        for block in blocks:
            self._add(block)

    def _add(self, block: SimBlock) -> None:
        header, tx = block
        if self.blocks and header["previousblockhash"] != self.blocks[-1][0]["id"]:
            raise ValueError(f"block {header['height']} does not extend the tip")
        self.blocks.append(block)
        self._by_hash[header["id"]] = block
        self._txs[tx["txid"]] = tx

    @property
    def tip(self) -> dict[str, Any]:
        return self.blocks[-1][0]

    async def append(self, *blocks: SimBlock) -> None:
        for block in blocks:
            self._add(block)
            await self._announce(block[0])

    async def reorg(self, depth: int, replacement: Iterable[SimBlock]) -> None:
        """Replace the last ``depth`` blocks by ``replacement`` (which must build on the
        block below them); the old blocks stay retrievable by hash, like a real node."""
        if depth < 1 or depth >= len(self.blocks):
            raise ValueError("bad reorg depth")
        del self.blocks[-depth:]
        for block in replacement:
            self._add(block)
        await self._announce(self.tip)

    async def _announce(self, header: dict[str, Any]) -> None:
        if self._zmq is not None:
            seq = self._zmq_seq.to_bytes(4, "little")
            self._zmq_seq += 1
            await self._zmq.send_multipart(
                [b"hashblock", bytes.fromhex(header["id"])[::-1], seq]
            )
        for ws in list(self._wanting):
            if ws.closed:
                self._wanting.discard(ws)
                continue
            try:
                await ws.send_json({"block": header})
            except ConnectionError:
                self._wanting.discard(ws)

    async def drop_websockets(self) -> int:
        socks = list(self._sockets)
        for ws in socks:
            await ws.close()
        self._sockets.clear()
        self._wanting.clear()
        return len(socks)

    async def send_ws_raw(self, text: str) -> None:
        """Send ``text`` as-is to every websocket client (e.g. malformed JSON)."""
        for ws in list(self._wanting):
            if not ws.closed:
                await ws.send_str(text)

    @property
    def websocket_count(self) -> int:
        return sum(1 for ws in self._wanting if not ws.closed)

    def fail(self, count: int, status: int = 500, retry_after: float | None = None) -> None:
        for _ in range(count):
            self._faults.append(_Fault(status, retry_after))

    def garbage(self, count: int, body: str = '{"id": "truncated') -> None:
        for _ in range(count):
            self._faults.append(_Fault(200, body=body))

    @web.middleware
    async def _faults_mw(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.endswith("/v1/ws"):
            return await handler(request)  # type: ignore[no-any-return]
        self.requests += 1
        if self._faults:
            fault = self._faults.popleft()
            if fault.body is not None:
                return web.Response(text=fault.body, content_type="application/json")
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = f"{fault.retry_after:g}"
            return web.Response(status=fault.status, text="fault injected", headers=headers)
        return await handler(request)  # type: ignore[no-any-return]

    def _block(self, request: web.Request) -> SimBlock:
        block = self._by_hash.get(request.match_info["hash"].lower())
        if block is None:
            raise web.HTTPNotFound(text="Block not found")
        return block

    async def _tip_height(self, request: web.Request) -> web.Response:
        return web.Response(text=str(self.tip["height"]))

    async def _tip_hash(self, request: web.Request) -> web.Response:
        return web.Response(text=self.tip["id"])

    async def _block_height(self, request: web.Request) -> web.Response:
        try:
            height = int(request.match_info["height"])
        except ValueError:
            raise web.HTTPBadRequest(text="Invalid height") from None
        base = self.blocks[0][0]["height"]
        if not base <= height <= self.tip["height"]:
            raise web.HTTPNotFound(text="Block not found")
        return web.Response(text=self.blocks[height - base][0]["id"])

    async def _blocks_from(self, request: web.Request) -> web.Response:
        """Esplora's ``GET /blocks/:start_height``: up to 10 blocks, newest first."""
        try:
            start = int(request.match_info["height"])
        except ValueError:
            raise web.HTTPBadRequest(text="Invalid height") from None
        base = self.blocks[0][0]["height"]
        top = min(start, self.tip["height"])
        out = [self.blocks[h - base][0] for h in range(top, max(base, top - 9) - 1, -1)]
        return web.json_response(out)

    async def _get_block(self, request: web.Request) -> web.Response:
        return web.json_response(self._block(request)[0])

    async def _txid(self, request: web.Request) -> web.Response:
        if request.match_info["index"] != "0":
            raise web.HTTPNotFound(text="Transaction not indexed here")
        block = self._block(request)
        self.attributed.add(block[0]["id"])
        return web.Response(text=block[1]["txid"])

    async def _tx(self, request: web.Request) -> web.Response:
        tx = self._txs.get(request.match_info["txid"].lower())
        if tx is None:
            raise web.HTTPNotFound(text="Transaction not found")
        return web.json_response(tx)

    async def _rpc(self, request: web.Request) -> web.Response:
        try:
            doc = await request.json()
            method, params, rid = doc["method"], doc.get("params", []), doc.get("id")
        except (ValueError, KeyError, TypeError):
            return web.json_response({"result": None, "error": {"code": -32700,
                                      "message": "Parse error"}, "id": None}, status=500)

        def error(code: int, message: str) -> web.Response:
            return web.json_response(
                {"result": None, "error": {"code": code, "message": message}, "id": rid},
                status=500,
            )

        base = self.blocks[0][0]["height"]
        if method == "getblockchaininfo":
            result: Any = {"chain": "main", "blocks": self.tip["height"],
                           "bestblockhash": self.tip["id"],
                           "difficulty": self.tip["difficulty"]}
        elif method == "getblockhash":
            height = params[0] if params else -1
            if not isinstance(height, int) or not base <= height <= self.tip["height"]:
                return error(-8, "Block height out of range")
            result = self.blocks[height - base][0]["id"]
        elif method == "getblock":
            block = self._by_hash.get(str(params[0]).lower()) if params else None
            if block is None:
                return error(-5, "Block not found")
            result = to_bitcoind(block)
        elif method == "getnetworkhashps":
            result = self.tip["difficulty"] * 2**32 / 600
        else:
            return error(-32601, "Method not found")
        return web.json_response({"result": result, "error": None, "id": rid})

    async def start_zmq(self, endpoint: str = "tcp://127.0.0.1:*") -> str:
        """Publish ``hashblock`` on ``endpoint``; returns the bound address."""
        import zmq
        import zmq.asyncio

        sock = zmq.asyncio.Context.instance().socket(zmq.PUB)
        sock.bind(endpoint)
        self._zmq = sock
        bound = sock.getsockopt(zmq.LAST_ENDPOINT)
        return bound.decode() if isinstance(bound, bytes) else str(bound)

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            async for doc in json_objects(ws):
                if doc.get("action") == "want" and "blocks" in doc.get("data", []):
                    self._wanting.add(ws)
        finally:
            self._sockets.discard(ws)
            self._wanting.discard(ws)
        return ws

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._faults_mw])
        app.add_routes(
            [
                web.get("/api/blocks/tip/height", self._tip_height),
                web.get("/api/blocks/tip/hash", self._tip_hash),
                web.get("/api/block-height/{height}", self._block_height),
                web.get("/api/blocks/{height}", self._blocks_from),
                web.get("/api/block/{hash}", self._get_block),
                web.get("/api/block/{hash}/txid/{index}", self._txid),
                web.get("/api/tx/{txid}", self._tx),
                web.get("/api/v1/ws", self._ws),
                web.post("/rpc", self._rpc),
            ]
        )
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner, self.port = await serve(self.app(), host, port)
        self.host = host

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def rpc_url(self) -> str:
        return f"http://user:pass@{self.host}:{self.port}/rpc"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/api/v1/ws"

    async def close(self) -> None:
        if self._zmq is not None:
            self._zmq.close(linger=0)
            self._zmq = None
        await self.drop_websockets()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
