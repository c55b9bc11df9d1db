"""Where blocks come from: an Esplora/mempool REST+websocket API or Bitcoin Core RPC+ZMQ.

Both give the collector the same four operations: the best height, the hash at a height,
a parsed `ChainBlock`, and ``watch`` (wake the collector when a new block is announced:
websocket ``{"block": ...}`` or ZMQ ``hashblock``; returns or raises when the push channel
drops, and the collector falls back to polling). Requests go through a token bucket
(`RateLimiter`); HTTP 429 pauses it for ``Retry-After``; 5xx and malformed bodies are
retried a few times, counted through `CollectorHealth`, then raised as `SourceUnavailable`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Protocol

import aiohttp
from yarl import URL

from convmon.collectors.bitcoin.blocks import ChainBlock, from_bitcoind, from_esplora
from convmon.collectors.bitcoin.errors import (
    BitcoinCollectorError,
    BlockNotFound,
    MalformedBlock,
    SourceUnavailable,
)
from convmon.monitor.backoff import Backoff, RateLimiter
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)


class ChainSource(Protocol):
    name: str

    async def tip_height(self) -> int: ...
    async def block_hash(self, height: int) -> str: ...
    async def block(self, block_hash: str) -> ChainBlock: ...
    async def blocks(self, start: int, end: int) -> list[ChainBlock]:
        """Consecutive blocks ``start..end`` of the best chain as the source sees it now
        (may stop early when the tip moved; the caller checks the links)."""
        ...
    async def watch(self, wake: asyncio.Event) -> None: ...
    async def close(self) -> None: ...


def safe_url(url: str) -> str:
    """``url`` without credentials or query string: fit for logs and status (an RPC URL
    carries the node's password)."""
    try:
        parsed = URL(url)
        return str(parsed.with_user(None).with_query(None).with_fragment(None))
    except (ValueError, TypeError):
        return "<url>"


def describe_error(exc: BaseException) -> str:
    """A log- and status-safe description of a transport error: the type name, the HTTP
    status and the URL without credentials or query. ``repr``/``str`` of aiohttp errors
    carry the full URL (``?api_key=...``) and request headers (Basic auth), so they are
    never reported as they are."""
    parts = [type(exc).__name__]
    if isinstance(exc, aiohttp.ClientResponseError):
        parts.append(f"HTTP {exc.status}")
        url = exc.request_info.real_url if exc.request_info is not None else None
        if url is not None:
            parts.append(safe_url(str(url)))
    elif isinstance(exc, aiohttp.InvalidURL):
        parts.append(safe_url(str(exc.url)))
    elif isinstance(exc, aiohttp.ClientConnectorError):
        parts.append(f"{exc.host}:{exc.port}")
    elif isinstance(exc, BitcoinCollectorError):
        parts.append(str(exc))  # our own messages; URLs in them already pass `safe_url`
    return " ".join(parts)


def _retry_after(value: str | None, default: float) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


class _Http:
    """GET/POST with rate limit, Retry-After, bounded retries and malformed-body counting."""

    def __init__(
        self, health: CollectorHealth, limiter: RateLimiter, *, attempts: int,
        backoff: Backoff, timeout_s: float,
    ) -> None:
        self.health = health
        self.limiter = limiter
        self.attempts = attempts
        self.backoff = backoff
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def request(
        self, method: str, url: str, *, as_json: bool, body: Any = None,
        not_found_ok: bool = False,
    ) -> Any:
        last = ""
        for _ in range(self.attempts):
            await self.limiter.acquire()
            try:
                async with self.session.request(method, url, json=body) as resp:
                    text = await resp.text(errors="replace")
                    if resp.status == 429:
                        delay = _retry_after(resp.headers.get("Retry-After"), 5.0)
                        self.limiter.pause(delay)
                        await self.health.error("rate_limited", f"retry after {delay:g}s")
                        last = "HTTP 429"
                        continue
                    if resp.status == 404 and not_found_ok:
                        raise BlockNotFound(url.rsplit("/", 1)[-1])
                    if resp.status >= 400 and not (as_json and body is not None):
                        await self.health.error(f"http_{resp.status}", text[:200])
                        last = f"HTTP {resp.status}"
                        await self.backoff.wait()
                        continue
                    if not as_json:
                        self.backoff.reset()
                        return text.strip()
                    try:
                        parsed = json.loads(text)
                    except ValueError:
                        self.health.malformed("json", text[:200])
                        last = "malformed JSON"
                        await self.backoff.wait()
                        continue
                    self.backoff.reset()
                    return parsed
            except (aiohttp.ClientError, TimeoutError) as exc:
                last = describe_error(exc)
                await self.health.error("connection", last)
                await self.backoff.wait()
        raise SourceUnavailable(f"{method} {safe_url(url)}: {last}")

    async def close(self) -> None:
        await self.session.close()


class EsploraSource:
    """mempool.space / Esplora REST API plus the mempool websocket."""

    name = "esplora"

    def __init__(
        self, base_url: str, ws_url: str | None, health: CollectorHealth,
        limiter: RateLimiter, *, attempts: int = 5, backoff: Backoff | None = None,
        timeout_s: float = 20.0,
    ) -> None:
        self.base = base_url.rstrip("/")
        self.ws_url = ws_url
        self.health = health
        self.http = _Http(
            health, limiter, attempts=attempts,
            backoff=backoff or Backoff(0.5, 30.0), timeout_s=timeout_s,
        )

    async def _text(self, path: str, not_found_ok: bool = False) -> str:
        text = await self.http.request(
            "GET", self.base + path, as_json=False, not_found_ok=not_found_ok
        )
        assert isinstance(text, str)
        return text

    async def tip_height(self) -> int:
        for _ in range(self.http.attempts):
            text = await self._text("/blocks/tip/height")
            if text.isdigit():
                return int(text)
            self.health.malformed("tip_height", text[:100])
            await self.http.backoff.wait()
        raise SourceUnavailable("tip height: malformed answers")

    async def block_hash(self, height: int) -> str:
        for _ in range(self.http.attempts):
            text = await self._text(f"/block-height/{height}", not_found_ok=True)
            if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
                return text.lower()
            self.health.malformed("block_hash", text[:100])
            await self.http.backoff.wait()
        raise SourceUnavailable(f"block hash at {height}: malformed answers")

    async def _with_coinbase(self, header: Any, block_hash: str) -> ChainBlock:
        txid = await self._text(f"/block/{block_hash}/txid/0", not_found_ok=True)
        tx = await self.http.request("GET", f"{self.base}/tx/{txid}", as_json=True)
        parsed = from_esplora(header, tx)
        if parsed.hash != block_hash.lower():
            raise MalformedBlock("block id differs from the requested hash")
        return parsed

    async def block(self, block_hash: str) -> ChainBlock:
        for _ in range(self.http.attempts):
            header = await self.http.request(
                "GET", f"{self.base}/block/{block_hash}", as_json=True, not_found_ok=True
            )
            try:
                return await self._with_coinbase(header, block_hash)
            except MalformedBlock as exc:
                self.health.malformed("block", str(exc))
                await self.http.backoff.wait()
        raise SourceUnavailable(f"block {block_hash}: malformed answers")

    async def blocks(self, start: int, end: int) -> list[ChainBlock]:
        """Headers ten at a time (``GET /blocks/:height``, newest first), then each
        coinbase: about 2.1 requests per block instead of 4 for a backfill."""
        out: list[ChainBlock] = []
        height = start
        while height <= end:
            top = min(end, height + 9)
            headers = await self._headers(top)
            for h in range(height, top + 1):
                header = headers.get(h)
                if header is None:
                    return out  # the tip moved below ``top``: the caller resyncs
                try:
                    out.append(await self._with_coinbase(header, str(header.get("id"))))
                except MalformedBlock as exc:
                    self.health.malformed("block", str(exc))
                    out.append(await self.block(await self.block_hash(h)))
            height = top + 1
        return out

    async def _headers(self, top: int) -> dict[int, dict[str, Any]]:
        try:
            docs = await self.http.request(
                "GET", f"{self.base}/blocks/{top}", as_json=True, not_found_ok=True
            )
        except BlockNotFound:
            return {}
        if not isinstance(docs, list):
            self.health.malformed("blocks", str(docs)[:200])
            return {}
        return {
            d["height"]: d for d in docs
            if isinstance(d, dict) and isinstance(d.get("height"), int)
            and isinstance(d.get("id"), str)
        }

    async def watch(self, wake: asyncio.Event) -> None:
        """Follow ``/api/v1/ws``; returns when the connection closes."""
        if not self.ws_url:
            await asyncio.Event().wait()
            return
        async with self.http.session.ws_connect(self.ws_url, heartbeat=25.0) as ws:
            await ws.send_json({"action": "want", "data": ["blocks"]})
            await self.health.connected("websocket")
            wake.set()  # catch up on anything announced while we were away
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    if msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE):
                        break
                    continue
                try:
                    doc = json.loads(msg.data)
                except ValueError:
                    self.health.malformed("ws", str(msg.data)[:200])
                    continue
                if isinstance(doc, dict) and isinstance(doc.get("block"), dict):
                    wake.set()

    async def close(self) -> None:
        await self.http.close()


class BitcoindSource:
    """Bitcoin Core JSON-RPC, with ZMQ ``hashblock`` pushes when pyzmq is installed."""

    name = "bitcoind"

    def __init__(
        self, rpc_url: str, zmq_endpoint: str | None, health: CollectorHealth,
        limiter: RateLimiter, *, attempts: int = 5, backoff: Backoff | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = rpc_url
        self.zmq_endpoint = zmq_endpoint
        self.health = health
        self.http = _Http(
            health, limiter, attempts=attempts,
            backoff=backoff or Backoff(0.5, 30.0), timeout_s=timeout_s,
        )
        self._id = 0

    async def call(self, method: str, *params: Any) -> Any:
        for _ in range(self.http.attempts):
            self._id += 1
            doc = await self.http.request(
                "POST", self.url, as_json=True,
                body={"jsonrpc": "1.0", "id": self._id, "method": method, "params": list(params)},
            )
            if not isinstance(doc, dict) or "result" not in doc:
                self.health.malformed("rpc", str(doc)[:200])
                await self.http.backoff.wait()
                continue
            error = doc.get("error")
            if error:
                code = error.get("code") if isinstance(error, dict) else None
                if code in (-8, -5):  # height out of range / block not found
                    raise BlockNotFound(f"{method}: {error}")
                raise SourceUnavailable(f"{method}: {error}")
            return doc["result"]
        raise SourceUnavailable(f"{method}: malformed answers")

    async def tip_height(self) -> int:
        info = await self.call("getblockchaininfo")
        if not isinstance(info, dict) or not isinstance(info.get("blocks"), int):
            raise SourceUnavailable("getblockchaininfo: no blocks field")
        return int(info["blocks"])

    async def block_hash(self, height: int) -> str:
        result = await self.call("getblockhash", height)
        if not isinstance(result, str) or len(result) != 64:
            raise SourceUnavailable("getblockhash: not a hash")
        return result.lower()

    async def block(self, block_hash: str) -> ChainBlock:
        for _ in range(self.http.attempts):
            doc = await self.call("getblock", block_hash, 2)
            try:
                return from_bitcoind(doc)
            except MalformedBlock as exc:
                self.health.malformed("block", str(exc))
                await self.http.backoff.wait()
        raise SourceUnavailable(f"getblock {block_hash}: malformed answers")

    async def blocks(self, start: int, end: int) -> list[ChainBlock]:
        return [await self.block(await self.block_hash(h)) for h in range(start, end + 1)]

    async def watch(self, wake: asyncio.Event) -> None:
        """Wait for ZMQ ``hashblock`` (topic, 32-byte hash, uint32 sequence)."""
        try:
            import zmq
            import zmq.asyncio
        except ImportError:
            zmq = None  # type: ignore[assignment]
        if self.zmq_endpoint is None or zmq is None:
            if self.zmq_endpoint is not None:
                log.warning("pyzmq is not installed; following bitcoind by polling")
            await asyncio.Event().wait()
            return
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"hashblock")
        sock.connect(self.zmq_endpoint)
        try:
            while True:
                frames = await sock.recv_multipart()
                if len(frames) != 3 or frames[0] != b"hashblock" or len(frames[1]) != 32:
                    self.health.malformed("zmq", repr(frames[:1]))
                    continue
                wake.set()
        finally:
            with contextlib.suppress(Exception):
                sock.close(linger=0)

    async def close(self) -> None:
        await self.http.close()
