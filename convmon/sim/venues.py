"""Local Binance, OKX and Bybit (spot) for tests and the demo: the REST market listing and
the public websocket ticker streams, in each venue's real wire format, so that ccxt's own
clients (pointed here through their endpoint URLs) run unmodified against them.

- Binance: ``GET /api/v3/exchangeInfo``; websocket ``/ws``: ``{"method": "SUBSCRIBE",
  "params": ["usdcusdt@bookTicker"], "id": n}`` → ``{"result": null, "id": n}``, then
  ``bookTicker`` payloads (``b``/``a`` best bid/ask with sizes, ``u`` update id).
- OKX: ``GET /api/v5/public/instruments?instType=SPOT``; websocket ``/ws/v5/public``:
  ``{"op": "subscribe", "args": [{"channel": "tickers", "instId": "USDC-USDT"}]}`` →
  ``{"event": "subscribe", ...}``, then ``{"arg": ..., "data": [{bidPx, askPx, last, ts}]}``;
  text ``ping`` → ``pong``.
- Bybit: ``GET /v5/market/instruments-info?category=spot``; websocket
  ``/v5/public/spot``: ``{"op": "subscribe", "args": ["orderbook.1.USDCUSDT"]}`` → a
  success ack, then ``snapshot`` order books of depth 1; ``{"op": "ping"}`` → ``pong``.

All bind 127.0.0.1 on an ephemeral port (REST and websocket on one port) and are driven
in-process: `push` a best bid/ask, `drop_connections`, `send_raw` garbage, ``stale`` (no
pushes reach clients). `endpoints` maps the venue's public hosts to this server, in the
form the venue collector's ``endpoints`` option takes.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from convmon.sim.localhttp import serve

HOSTS: dict[str, tuple[str, ...]] = {
    "binance": ("https://api.binance.com", "wss://stream.binance.com:9443"),
    "okx": ("https://{hostname}", "wss://ws.okx.com:8443", "wss://ws.okx.com:443"),
    "bybit": ("https://api.{hostname}", "wss://stream.{hostname}", "wss://stream.bybit.com"),
}
_SERIAL = itertools.count(1)


def _pair(symbol: str) -> tuple[str, str]:
    base, quote = symbol.split("/")
    return base, quote


@dataclass(eq=False)
class _Client:
    ws: web.WebSocketResponse
    topics: set[str] = field(default_factory=set)


@dataclass
class VenueServer:
    """One venue: ``listed`` unified symbols such as ``USDC/USDT``."""

    venue: str
    listed: list[str]
    stale: bool = False
    port: int = 0
    subscriptions: list[str] = field(default_factory=list)
    """Every topic clients subscribed to, in order (re-subscriptions included)."""
    connections: int = 0
    rest_requests: list[str] = field(default_factory=list)
    quotes: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    """symbol -> (bid, ask, last) last pushed."""
    _clients: set[_Client] = field(default_factory=set)
    _runner: web.AppRunner | None = None

    def __post_init__(self) -> None:
        if self.venue not in HOSTS:
            raise ValueError(f"no local server for venue {self.venue!r}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoints(self) -> dict[str, str]:
        """Public host prefix -> this server (``ws://`` for websocket hosts)."""
        return {host: (f"ws://127.0.0.1:{self.port}" if host.startswith("wss")
                       else self.url) for host in HOSTS[self.venue]}

    async def start(self) -> VenueServer:
        app = web.Application()
        app.router.add_get("/api/v3/exchangeInfo", self._binance_markets)
        app.router.add_get("/api/v5/public/instruments", self._okx_markets)
        app.router.add_get("/v5/market/instruments-info", self._bybit_markets)
        app.router.add_get("/ws", self._ws)
        app.router.add_get("/ws/{stream}", self._ws)  # ccxt numbers its Binance sockets
        app.router.add_get("/ws/v5/public", self._ws)
        app.router.add_get("/v5/public/spot", self._ws)
        self._runner, self.port = await serve(app)
        return self

    async def close(self) -> None:
        await self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def drop_connections(self) -> None:
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.ws.close()
        self._clients.clear()

    async def send_raw(self, text: str) -> None:
        for client in list(self._clients):
            with contextlib.suppress(Exception):
                await client.ws.send_str(text)

    async def push(self, symbol: str, bid: float, ask: float, last: float | None = None,
                   at_ms: int | None = None) -> int:
        """Send a best bid/ask to the clients subscribed to ``symbol``; returns how many."""
        last = (bid + ask) / 2 if last is None else last
        self.quotes[symbol] = (bid, ask, last)
        if self.stale:
            return 0
        ms = at_ms if at_ms is not None else int(time.time() * 1000)
        topic, message = self._ticker(symbol, bid, ask, last, ms)
        sent = 0
        for client in list(self._clients):
            if topic in client.topics:
                with contextlib.suppress(Exception):
                    await client.ws.send_str(json.dumps(message))
                    sent += 1
        return sent

    def _ticker(self, symbol: str, bid: float, ask: float, last: float,
                ms: int) -> tuple[str, dict[str, Any]]:
        base, quote = _pair(symbol)
        if self.venue == "binance":
            return f"{(base + quote).lower()}@bookTicker", {
                "u": next(_SERIAL), "s": base + quote, "b": f"{bid}", "B": "100000",
                "a": f"{ask}", "A": "100000",
            }
        if self.venue == "okx":
            inst = f"{base}-{quote}"
            return f"tickers:{inst}", {
                "arg": {"channel": "tickers", "instId": inst},
                "data": [{
                    "instType": "SPOT", "instId": inst, "last": f"{last}", "lastSz": "1",
                    "askPx": f"{ask}", "askSz": "100000", "bidPx": f"{bid}",
                    "bidSz": "100000", "open24h": f"{last}", "high24h": f"{ask}",
                    "low24h": f"{bid}", "sodUtc0": f"{last}", "sodUtc8": f"{last}",
                    "volCcy24h": "1000000", "vol24h": "1000000", "ts": str(ms),
                }],
            }
        return f"orderbook.1.{base}{quote}", {
            "topic": f"orderbook.1.{base}{quote}", "type": "snapshot", "ts": ms,
            "data": {"s": base + quote, "b": [[f"{bid}", "100000"]],
                     "a": [[f"{ask}", "100000"]], "u": next(_SERIAL), "seq": next(_SERIAL)},
            "cts": ms,
        }

    async def _binance_markets(self, request: web.Request) -> web.Response:
        self.rest_requests.append(str(request.rel_url))
        symbols = []
        for symbol in self.listed:
            base, quote = _pair(symbol)
            symbols.append({
                "symbol": base + quote, "status": "TRADING", "baseAsset": base,
                "baseAssetPrecision": 8, "quoteAsset": quote, "quotePrecision": 8,
                "quoteAssetPrecision": 8, "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8, "orderTypes": ["LIMIT", "MARKET"],
                "icebergAllowed": True, "ocoAllowed": True, "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False, "permissions": [],
                "permissionSets": [["SPOT"]],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.00010000",
                     "maxPrice": "10.00000000", "tickSize": "0.00010000"},
                    {"filterType": "LOT_SIZE", "minQty": "1.00000000",
                     "maxQty": "9000000.00000000", "stepSize": "1.00000000"},
                ],
            })
        return web.json_response({"timezone": "UTC", "serverTime": int(time.time() * 1000),
                                  "rateLimits": [], "exchangeFilters": [], "symbols": symbols})

    async def _okx_markets(self, request: web.Request) -> web.Response:
        self.rest_requests.append(str(request.rel_url))
        data = []
        if request.query.get("instType", "SPOT") == "SPOT":
            for symbol in self.listed:
                base, quote = _pair(symbol)
                data.append({
                    "instType": "SPOT", "instId": f"{base}-{quote}", "uly": "", "instFamily": "",
                    "baseCcy": base, "quoteCcy": quote, "settleCcy": "", "ctVal": "",
                    "ctMult": "", "ctValCcy": "", "optType": "", "stk": "", "listTime":
                    "1606468572000", "expTime": "", "lever": "", "tickSz": "0.0001",
                    "lotSz": "0.000001", "minSz": "1", "ctType": "", "alias": "",
                    "state": "live", "maxLmtSz": "10000000", "maxMktSz": "1000000",
                })
        return web.json_response({"code": "0", "msg": "", "data": data})

    async def _bybit_markets(self, request: web.Request) -> web.Response:
        self.rest_requests.append(str(request.rel_url))
        items = []
        if request.query.get("category") == "spot":
            for symbol in self.listed:
                base, quote = _pair(symbol)
                items.append({
                    "symbol": base + quote, "baseCoin": base, "quoteCoin": quote,
                    "innovation": "0", "status": "Trading", "marginTrading": "none",
                    "lotSizeFilter": {"basePrecision": "0.01", "quotePrecision": "0.0001",
                                      "minOrderQty": "1", "maxOrderQty": "1000000",
                                      "minOrderAmt": "1", "maxOrderAmt": "1000000"},
                    "priceFilter": {"tickSize": "0.0001"},
                })
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": {
            "category": request.query.get("category", ""), "list": items,
            "nextPageCursor": ""}, "retExtInfo": {}, "time": int(time.time() * 1000)})

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        client = _Client(ws)
        self._clients.add(client)
        self.connections += 1
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                await self._on_text(client, msg.data)
        finally:
            self._clients.discard(client)
        return ws

    async def _on_text(self, client: _Client, text: str) -> None:
        if text == "ping":
            await client.ws.send_str("pong")
            return
        try:
            request = json.loads(text)
        except ValueError:
            return
        if not isinstance(request, dict):
            return
        if self.venue == "binance" and request.get("method") == "SUBSCRIBE":
            for topic in request.get("params") or []:
                client.topics.add(topic)
                self.subscriptions.append(topic)
            await client.ws.send_str(json.dumps({"result": None, "id": request.get("id")}))
        elif self.venue == "okx" and request.get("op") == "subscribe":
            for arg in request.get("args") or []:
                topic = f"{arg.get('channel')}:{arg.get('instId')}"
                client.topics.add(topic)
                self.subscriptions.append(topic)
                await client.ws.send_str(json.dumps(
                    {"event": "subscribe", "arg": arg, "connId": "local"}))
        elif self.venue == "bybit" and request.get("op") == "subscribe":
            for topic in request.get("args") or []:
                client.topics.add(topic)
                self.subscriptions.append(topic)
            await client.ws.send_str(json.dumps({
                "success": True, "ret_msg": "", "conn_id": "local",
                "req_id": request.get("req_id", ""), "op": "subscribe"}))
        elif request.get("op") == "ping":
            await client.ws.send_str(json.dumps({
                "success": True, "ret_msg": "pong", "conn_id": "local",
                "req_id": request.get("req_id", ""), "op": "ping"}))
        if self.quotes:
            for symbol, (bid, ask, last) in list(self.quotes.items()):
                topic, message = self._ticker(symbol, bid, ask, last, int(time.time() * 1000))
                if topic in client.topics and not self.stale:
                    await client.ws.send_str(json.dumps(message))
