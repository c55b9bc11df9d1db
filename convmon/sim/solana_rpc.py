"""A local Solana node for tests and the demo: real JSON-RPC over HTTP and the real
``logsSubscribe`` websocket protocol, serving transactions added at run time.

Methods: ``getTransaction`` (jsonParsed results as stored; -32015 when the transaction's
version is above the request's ``maxSupportedTransactionVersion``), ``getSignaturesForAddress``
(newest first, ``before``/``until``/``limit``), ``getTokenSupply``, ``getSlot``,
``getHealth``; websocket ``logsSubscribe``/``logsUnsubscribe`` with ``logsNotification``
(one address in ``mentions``, as on mainnet).

In-process control for fault injection: `add_transaction` (notifies subscribers),
`drop_connections`, ``idle_timeout_s`` (close silent websockets, as public endpoints do
after about 30 s), `fail_next` (429 with Retry-After, or 500), `set_rate_limit` (per-method
token bucket answering 429 like a public endpoint), `malform` (a transaction whose payload
is broken), `send_malformed_frame`, `set_supply`.
"""

from __future__ import annotations

import contextlib
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from convmon.collectors.solana.txshape import account_keys, signature_of
from convmon.sim.localhttp import serve

_encode = msgspec.json.encode


def mentions_of(tx: dict[str, Any]) -> set[str]:
    """Addresses a transaction mentions: its accounts (lookup-table ones included),
    invoked programs, and the mints of its token balances."""
    found = set(account_keys(tx))
    meta = tx.get("meta") or {}
    for field_name in ("preTokenBalances", "postTokenBalances"):
        for bal in meta.get(field_name) or ():
            found.add(bal.get("mint", ""))
    for ix in tx["transaction"]["message"].get("instructions", ()):
        found.add(ix.get("programId", ""))
    for group in meta.get("innerInstructions") or ():
        for ix in group.get("instructions", ()):
            found.add(ix.get("programId", ""))
    found.discard("")
    return found


def _version_number(version: Any) -> int | None:
    return None if version in (None, "legacy") else int(version)


@dataclass
class _Fault:
    status: int
    retry_after: float | None


@dataclass
class _Bucket:
    rate: float
    per: float
    tokens: float
    updated: float = field(default_factory=time.monotonic)


class LocalSolanaServer:
    """Serve ``http_url`` (JSON-RPC) and ``ws_url`` (websocket) on 127.0.0.1."""

    def __init__(self) -> None:
        self.transactions: dict[str, dict[str, Any]] = {}
        self._by_address: dict[str, list[str]] = {}
        self._malformed: set[str] = set()
        self._faults: list[_Fault] = []
        self._limits: dict[str, _Bucket] = {}
        self._limit_spec: tuple[float, float] | None = None
        self.supply: dict[str, tuple[int, int]] = {}
        self.slot = 0
        self.requests: list[str] = []
        """Method of every request served (429s included)."""
        self.rejected = 0
        self.idle_timeout_s: float | None = None
        """Close websockets that send nothing (not even a ping) for this long."""
        self.ws_connections = 0
        self.idle_drops = 0
        self.pings = 0
        self._sockets: set[web.WebSocketResponse] = set()
        self._subs: dict[int, tuple[web.WebSocketResponse, str]] = {}
        self._sub_ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self, port: int = 0) -> LocalSolanaServer:
        app = web.Application()
        app.router.add_post("/", self._rpc)
        app.router.add_get("/ws", self._ws)
        self._runner, self.port = await serve(app, port=port)
        return self

    async def close(self) -> None:
        await self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalSolanaServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def add_transaction(
        self, tx: dict[str, Any], *, notify: bool = True, mentions: Iterable[str] | None = None
    ) -> str:
        """Store a jsonParsed ``getTransaction`` result and notify ``logsSubscribe``rs."""
        sig = signature_of(tx)
        self.transactions[sig] = tx
        self.slot = max(self.slot, int(tx.get("slot", 0)))
        addresses = set(mentions) if mentions is not None else mentions_of(tx)
        for address in addresses:
            self._by_address.setdefault(address, []).append(sig)
        if notify:
            err = (tx.get("meta") or {}).get("err")
            logs = (tx.get("meta") or {}).get("logMessages") or []
            for sub_id, (ws, address) in list(self._subs.items()):
                if address in addresses and not ws.closed:
                    await self._send(ws, sub_id, sig, err, logs)
        return sig

    async def _send(
        self, ws: web.WebSocketResponse, sub_id: int, sig: str, err: Any, logs: list[str]
    ) -> None:
        frame = {
            "jsonrpc": "2.0",
            "method": "logsNotification",
            "params": {
                "result": {
                    "context": {"slot": self.slot},
                    "value": {"signature": sig, "err": err, "logs": logs},
                },
                "subscription": sub_id,
            },
        }
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_bytes(_encode(frame))

    def malform(self, signature: str) -> None:
        """Answer ``getTransaction`` for ``signature`` with a broken payload."""
        self._malformed.add(signature)

    def fail_next(self, n: int, *, status: int = 429, retry_after: float | None = 1.0) -> None:
        self._faults.extend(_Fault(status, retry_after) for _ in range(n))

    def set_rate_limit(self, requests: float | None, per_seconds: float = 10.0) -> None:
        """Per-method limit like the public endpoints (None removes it)."""
        self._limit_spec = None if requests is None else (requests, per_seconds)
        self._limits.clear()

    def set_supply(self, mint: str, amount: int, decimals: int) -> None:
        self.supply[mint] = (amount, decimals)

    async def drop_connections(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        self._sockets.clear()
        self._subs.clear()

    async def send_malformed_frame(self, text: str = "{not json") -> None:
        for ws in list(self._sockets):
            await ws.send_str(text)

    @property
    def subscriptions(self) -> int:
        return len(self._subs)

    def _limited(self, method: str) -> float | None:
        """Seconds to wait when ``method`` is over its limit, else None (token taken)."""
        if self._limit_spec is None:
            return None
        rate, per = self._limit_spec
        bucket = self._limits.setdefault(method, _Bucket(rate, per, rate))
        now = time.monotonic()
        bucket.tokens = min(rate, bucket.tokens + (now - bucket.updated) * rate / per)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        return (1 - bucket.tokens) * per / rate

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = msgspec.json.decode(raw)
            method = body["method"]
            req_id = body.get("id")
            params = body.get("params") or []
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
            return web.json_response(
                {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
            )
        self.requests.append(method)
        if self._faults:
            fault = self._faults.pop(0)
            self.rejected += 1
            headers = {} if fault.retry_after is None else {"Retry-After": str(fault.retry_after)}
            return web.Response(status=fault.status, text="Too many requests", headers=headers)
        wait = self._limited(method)
        if wait is not None:
            self.rejected += 1
            return web.Response(
                status=429, text="Too many requests", headers={"Retry-After": f"{wait:.3f}"}
            )
        try:
            result = self._dispatch(method, params)
        except _RpcFailure as exc:
            payload = {
                "jsonrpc": "2.0",
                "id": req_id,
                "error": {"code": exc.code, "message": exc.msg},
            }
            return web.Response(body=_encode(payload), content_type="application/json")
        return web.Response(
            body=_encode({"jsonrpc": "2.0", "id": req_id, "result": result}),
            content_type="application/json",
        )

    def _dispatch(self, method: str, params: list[Any]) -> Any:
        if method == "getTransaction":
            return self._get_transaction(params)
        if method == "getSignaturesForAddress":
            return self._get_signatures(params)
        if method == "getTokenSupply":
            mint = params[0] if params else ""
            if mint not in self.supply:
                raise _RpcFailure(-32602, f"Invalid param: could not find mint {mint}")
            amount, decimals = self.supply[mint]
            return {
                "context": {"slot": self.slot, "apiVersion": "2.3.0"},
                "value": {
                    "amount": str(amount),
                    "decimals": decimals,
                    "uiAmount": amount / 10**decimals,
                    "uiAmountString": str(amount / 10**decimals),
                },
            }
        if method == "getSlot":
            return self.slot
        if method == "getHealth":
            return "ok"
        raise _RpcFailure(-32601, "Method not found")

    def _get_transaction(self, params: list[Any]) -> Any:
        sig = params[0] if params else None
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        tx = self.transactions.get(sig) if isinstance(sig, str) else None
        if tx is None:
            return None
        version = _version_number(tx.get("version"))
        requested = config.get("maxSupportedTransactionVersion")
        if version is not None and (requested is None or version > int(requested)):
            raise _RpcFailure(
                -32015,
                f"Transaction version ({version}) is not supported by the requesting client. "
                "Please try the request again with the following configuration parameter: "
                f'"maxSupportedTransactionVersion": {version}',
            )
        if sig in self._malformed:
            return {"slot": tx.get("slot"), "transaction": {"signatures": [sig]}, "meta": "??"}
        return tx

    def _get_signatures(self, params: list[Any]) -> list[dict[str, Any]]:
        address = params[0] if params else ""
        config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
        limit = min(int(config.get("limit", 1000)), 1000)
        sigs = self._by_address.get(address, [])
        newest_first = list(reversed(sigs))
        before, until = config.get("before"), config.get("until")
        if before in newest_first:
            newest_first = newest_first[newest_first.index(before) + 1 :]
        if until in newest_first:
            newest_first = newest_first[: newest_first.index(until)]
        out = []
        for sig in newest_first[:limit]:
            tx = self.transactions[sig]
            out.append(
                {
                    "signature": sig,
                    "slot": tx.get("slot"),
                    "err": (tx.get("meta") or {}).get("err"),
                    "memo": None,
                    "blockTime": tx.get("blockTime"),
                    "confirmationStatus": "confirmed",
                }
            )
        return out

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.ws_connections += 1
        try:
            while True:
                try:
                    msg = await ws.receive(timeout=self.idle_timeout_s)
                except TimeoutError:
                    self.idle_drops += 1  # like public RPC: silent sockets are closed
                    await ws.close()
                    break
                if msg.type == WSMsgType.PING:
                    self.pings += 1
                    await ws.pong(msg.data)
                    continue
                if msg.type == WSMsgType.PONG:
                    continue
                if msg.type != WSMsgType.TEXT and msg.type != WSMsgType.BINARY:
                    break
                await self._ws_request(ws, msg.data)
        finally:
            self._sockets.discard(ws)
            for sub_id, (sock, _) in list(self._subs.items()):
                if sock is ws:
                    del self._subs[sub_id]
        return ws

    async def _ws_request(self, ws: web.WebSocketResponse, data: str | bytes) -> None:
        try:
            req = msgspec.json.decode(data)
            method, req_id, params = req["method"], req.get("id"), req.get("params") or []
        except (msgspec.DecodeError, KeyError, TypeError):
            await ws.send_bytes(
                _encode(
                    {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": {"code": -32700, "message": "Parse error"},
                    }
                )
            )
            return
        if method == "logsSubscribe":
            mentions = params[0].get("mentions") if params and isinstance(params[0], dict) else None
            if not isinstance(mentions, list) or len(mentions) != 1:
                error = {"code": -32602, "message": "Invalid Request: Only 1 address supported"}
                await ws.send_bytes(_encode({"jsonrpc": "2.0", "id": req_id, "error": error}))
                return
            sub_id = next(self._sub_ids)
            self._subs[sub_id] = (ws, mentions[0])
            await ws.send_bytes(_encode({"jsonrpc": "2.0", "id": req_id, "result": sub_id}))
        elif method == "logsUnsubscribe":
            found = self._subs.pop(params[0], None) if params else None
            await ws.send_bytes(
                _encode({"jsonrpc": "2.0", "id": req_id, "result": found is not None})
            )
        else:
            error = {"code": -32601, "message": "Method not found"}
            await ws.send_bytes(_encode({"jsonrpc": "2.0", "id": req_id, "error": error}))


class _RpcFailure(Exception):
    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
