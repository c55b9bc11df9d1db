"""Local exchange servers that speak the real wire formats, for tests and the demo.

- `CoinbaseFeedServer`: the Coinbase Exchange websocket feed (``subscribe`` with
  ``ticker`` and ``heartbeat`` channels, ``subscriptions`` ack, ``ticker`` and
  ``heartbeat`` messages, ``error`` for unknown products).
- `KrakenFeedServer`: Kraken websocket v2 (``status`` on connect, one ``subscribe`` ack per
  symbol, ticker ``snapshot`` then ``update``, ``heartbeat``, ``ping``/``pong``).
- `CoinGeckoServer`: ``GET /api/v3/simple/price``.

All bind 127.0.0.1 on an ephemeral port and are driven in-process: `push_tick`, go
``stale`` (no ticks, heartbeats continue) or ``silent`` (nothing at all), ``refuse`` new
connections, `drop_connections`, `send_raw` garbage; the REST server can answer 429 with
``Retry-After``, 500 or a broken body.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from convmon.monitor.clock import Clock, SystemClock
from convmon.sim.localhttp import json_objects, serve


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    products: set[str] = field(default_factory=set)
    heartbeat: bool = False


class _Server:
    def __init__(self) -> None:
        self.app = web.Application()
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._runner, self.port = await serve(self.app, host, port)

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class _FeedServer(_Server):
    """What both websocket feeds share: connections, controls, heartbeats."""

    path = "/"

    def __init__(
        self,
        *,
        listed: set[str] | None = None,
        heartbeat_interval_s: float = 1.0,
        clock: Clock | None = None,
    ) -> None:
        super().__init__()
        self.listed = listed
        """Products the venue lists (None: any)."""
        self.heartbeat_interval_s = heartbeat_interval_s
        self.clock = clock or SystemClock()
        self.prices: dict[str, float] = {}
        self.stale = False
        self.silent = False
        self.refuse = False
        self.accepted = 0
        self.subscribe_requests: list[list[str]] = []
        self._conns: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.app.router.add_get(self.path, self._handler)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    @property
    def connections(self) -> int:
        return len(self._conns)

    def subscribed(self, product: str) -> bool:
        return any(product in c.products for c in self._conns)

    async def push_tick(self, product: str, price: float) -> int:
        """Record a trade at ``price`` and send it to subscribers; returns how many got it."""
        self.prices[product] = price
        if self.stale or self.silent:
            return 0
        sent = 0
        for conn in list(self._conns):
            if product in conn.products:
                sent += await self._send(conn, self.ticker_message(product, price, "update"))
        return sent

    async def send_raw(self, text: str) -> None:
        """Send ``text`` as is to every connection (garbage, unknown message types)."""
        for conn in list(self._conns):
            with contextlib.suppress(ConnectionError, RuntimeError):
                await conn.ws.send_str(text)

    async def drop_connections(self) -> None:
        """Close every connection abruptly, like a load balancer restarting."""
        for conn in list(self._conns):
            with contextlib.suppress(Exception):
                await conn.ws.close(code=1012, message=b"restart")

    async def close(self) -> None:
        await self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        await super().close()

    async def _send(self, conn: _Connection, body: dict[str, Any]) -> int:
        try:
            await conn.ws.send_str(json.dumps(body))
        except (ConnectionError, RuntimeError):
            return 0
        return 1

    async def _handler(self, request: web.Request) -> web.StreamResponse:
        if self.refuse:
            return web.Response(status=503, text="service unavailable")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Connection(ws)
        self._conns.add(conn)
        self.accepted += 1
        beat = asyncio.create_task(self._heartbeats(conn))
        self._tasks.add(beat)
        try:
            await self.on_connect(conn)
            async for body in json_objects(ws):
                if not self.silent:
                    await self.on_request(conn, body)
        finally:
            beat.cancel()
            self._tasks.discard(beat)
            self._conns.discard(conn)
        return ws

    async def _heartbeats(self, conn: _Connection) -> None:
        while not conn.ws.closed:
            await asyncio.sleep(self.heartbeat_interval_s)
            if not self.silent and conn.heartbeat:
                for body in self.heartbeat_messages(conn):
                    await self._send(conn, body)

    def _accepts(self, product: str) -> bool:
        return self.listed is None or product in self.listed

    async def on_connect(self, conn: _Connection) -> None:
        """Hook: greet a new connection."""

    async def on_request(self, conn: _Connection, body: dict[str, Any]) -> None:
        raise NotImplementedError

    def ticker_message(self, product: str, price: float, kind: str) -> dict[str, Any]:
        raise NotImplementedError

    def heartbeat_messages(self, conn: _Connection) -> list[dict[str, Any]]:
        raise NotImplementedError


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fmt(price: float) -> str:
    digits = max(2, 6 - math.floor(math.log10(price))) if price > 0 else 2
    return f"{price:.{digits}f}"


class CoinbaseFeedServer(_FeedServer):
    """``wss://ws-feed.exchange.coinbase.com`` on 127.0.0.1."""

    path = "/"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sequence = 1000
        self._trade_id = 1

    async def on_request(self, conn: _Connection, body: dict[str, Any]) -> None:
        if body.get("type") != "subscribe":
            await self._send(conn, {"type": "error", "message": "Failed to subscribe",
                                    "reason": f"{body.get('type')!r} is not a valid type"})
            return
        products = [str(p) for p in body.get("product_ids") or []]
        channels = [c if isinstance(c, str) else c.get("name") for c in body.get("channels", [])]
        self.subscribe_requests.append(products)
        bad = [p for p in products if not self._accepts(p)]
        if bad:
            await self._send(conn, {"type": "error", "message": "Failed to subscribe",
                                    "reason": f"{bad[0]} is not a valid product"})
            return
        if "ticker" in channels:
            conn.products.update(products)
        conn.heartbeat = conn.heartbeat or "heartbeat" in channels
        acks = [{"name": c, "product_ids": sorted(conn.products)} for c in channels]
        await self._send(conn, {"type": "subscriptions", "channels": acks})
        if "ticker" in channels and not self.stale:
            for product in products:
                if product in self.prices:
                    await self._send(conn, self.ticker_message(product, self.prices[product], ""))

    def ticker_message(self, product: str, price: float, kind: str) -> dict[str, Any]:
        self._sequence += 1
        self._trade_id += 1
        p = _fmt(price)
        return {
            "type": "ticker", "sequence": self._sequence, "product_id": product, "price": p,
            "open_24h": p, "volume_24h": "1234.5", "low_24h": p, "high_24h": p,
            "volume_30d": "45678.9", "best_bid": _fmt(price * 0.9999), "best_bid_size": "0.5",
            "best_ask": _fmt(price * 1.0001), "best_ask_size": "0.4", "side": "buy",
            "time": _iso(self.clock.now()), "trade_id": self._trade_id, "last_size": "0.01",
        }

    def heartbeat_messages(self, conn: _Connection) -> list[dict[str, Any]]:
        now = _iso(self.clock.now())
        return [
            {"type": "heartbeat", "last_trade_id": self._trade_id, "product_id": p,
             "sequence": self._sequence, "time": now}
            for p in sorted(conn.products)
        ]


class KrakenFeedServer(_FeedServer):
    """``wss://ws.kraken.com/v2`` on 127.0.0.1."""

    path = "/v2"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.system = "online"
        self._connection_id = 4_000_000

    async def on_connect(self, conn: _Connection) -> None:
        self._connection_id += 1
        await self._send(conn, {
            "channel": "status", "type": "update",
            "data": [{"api_version": "v2", "connection_id": self._connection_id,
                      "system": self.system, "version": "2.0.10"}],
        })

    async def on_request(self, conn: _Connection, body: dict[str, Any]) -> None:
        method = body.get("method")
        stamp = _iso(self.clock.now())
        if method == "ping":
            await self._send(conn, {"method": "pong", "req_id": body.get("req_id"),
                                    "time_in": stamp, "time_out": stamp})
            return
        if method != "subscribe":
            await self._send(conn, {"error": f"Method not found {method}", "method": method,
                                    "success": False, "time_in": stamp, "time_out": stamp})
            return
        params = body.get("params") or {}
        symbols = [str(s) for s in params.get("symbol") or []]
        self.subscribe_requests.append(symbols)
        for symbol in symbols:
            if not self._accepts(symbol):
                await self._send(conn, {"error": f"Currency pair not supported {symbol}",
                                        "method": "subscribe", "success": False,
                                        "symbol": symbol, "time_in": stamp, "time_out": stamp})
                continue
            conn.products.add(symbol)
            conn.heartbeat = True
            await self._send(conn, {
                "method": "subscribe", "success": True, "time_in": stamp, "time_out": stamp,
                "result": {"channel": "ticker", "event_trigger": "trades", "snapshot": True,
                           "symbol": symbol},
            })
            if symbol in self.prices and not self.stale:
                await self._send(conn, self.ticker_message(symbol, self.prices[symbol], "snapshot"))

    def ticker_message(self, product: str, price: float, kind: str) -> dict[str, Any]:
        return {
            "channel": "ticker", "type": kind or "update",
            "data": [{"symbol": product, "bid": price * 0.9999, "bid_qty": 0.5,
                      "ask": price * 1.0001, "ask_qty": 0.4, "last": price, "volume": 1234.5,
                      "vwap": price, "low": price, "high": price, "change": 0.0,
                      "change_pct": 0.0}],
        }

    def heartbeat_messages(self, conn: _Connection) -> list[dict[str, Any]]:
        return [{"channel": "heartbeat"}]


class CoinGeckoServer(_Server):
    """``GET /api/v3/simple/price`` on 127.0.0.1."""

    def __init__(self, *, api_key: str | None = None, clock: Clock | None = None) -> None:
        super().__init__()
        self.clock = clock or SystemClock()
        self.api_key = api_key
        self.prices: dict[str, float] = {}
        self.requests: list[list[str]] = []
        self.rate_limit_next = 0
        self.retry_after_s = 1.0
        self.fail_next = 0
        self.garbage_next = 0
        self.app.router.add_get("/api/v3/simple/price", self._simple_price)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def set_price(self, coin: str, price: float) -> None:
        self.prices[coin] = price

    async def _simple_price(self, request: web.Request) -> web.Response:
        if self.api_key is not None:
            given = request.headers.get("x-cg-demo-api-key") or request.headers.get(
                "x-cg-pro-api-key"
            )
            if given != self.api_key:
                return web.json_response({"error": "invalid api key"}, status=401)
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        self.requests.append(ids)
        if self.rate_limit_next > 0:
            self.rate_limit_next -= 1
            return web.json_response(
                {"status": {"error_code": 429, "error_message": "You've exceeded the Rate Limit"}},
                status=429, headers={"Retry-After": f"{self.retry_after_s:g}"},
            )
        if self.fail_next > 0:
            self.fail_next -= 1
            return web.Response(status=500, text="internal error")
        if self.garbage_next > 0:
            self.garbage_next -= 1
            return web.Response(status=200, text="<html>maintenance</html>",
                                content_type="application/json")
        if request.query.get("vs_currencies") != "usd":
            return web.json_response({"error": "missing vs_currencies"}, status=400)
        with_time = request.query.get("include_last_updated_at") == "true"
        now = int(self.clock.now())
        body: dict[str, dict[str, float]] = {}
        for coin in ids:
            if coin in self.prices:
                body[coin] = {"usd": self.prices[coin]}
                if with_time:
                    body[coin]["last_updated_at"] = now
            else:
                body[coin] = {}
        return web.json_response(body)
