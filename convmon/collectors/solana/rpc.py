"""Solana JSON-RPC over HTTP with the public endpoints' limits built in.

In: method calls (`get_transaction`, `get_signatures_for_address`, `get_token_supply`,
`get_slot`). Out: the ``result`` member, decoded with msgspec. Every request first takes a
token from a per-IP bucket (100 requests / 10 s on mainnet-beta) and from its method's bucket
(40 / 10 s); an HTTP 429 pauses both for ``Retry-After`` and the request is retried, so a
burst is slowed down, never dropped. A JSON-RPC error object raises `RpcError` (-32015 as
`UnsupportedTransactionVersion`, which no retry can fix).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import aiohttp
import msgspec
from pydantic import Field

from convmon.collectors.solana.errors import (
    RpcError,
    RpcTransportError,
    UnsupportedTransactionVersion,
)
from convmon.monitor.backoff import Backoff, RateLimiter
from convmon.monitor.config import Model
from convmon.monitor.secrets import Secret

Commitment = Literal["confirmed", "finalized"]
UNSUPPORTED_VERSION = -32015
_RETRYABLE_HTTP = frozenset({500, 502, 503, 504})


class RpcSettings(Model):
    """Where and how to talk to a Solana node (shared by the DePIN and stablecoin plugins)."""

    http_url: Secret = Secret("https://api.mainnet-beta.solana.com")
    ws_url: Secret = Secret("wss://api.mainnet-beta.solana.com")
    commitment: Commitment = "confirmed"
    max_supported_transaction_version: int = Field(default=1, ge=0)
    """Highest transaction version requested; too low and v1 transactions fail with -32015."""
    requests_per_10s: float = Field(default=100.0, gt=0)
    """Per-IP limit of the endpoint (mainnet-beta: 100 / 10 s)."""
    method_requests_per_10s: float = Field(default=40.0, gt=0)
    """Per-method limit of the endpoint (mainnet-beta: 40 / 10 s)."""
    timeout_s: float = Field(default=30.0, gt=0)
    max_retries: int = Field(default=8, ge=0)
    """Retries of one request after 429/5xx/timeouts before it is reported as failed."""
    ping_interval_s: float = Field(default=15.0, gt=0)
    """Websocket ping interval (public endpoints drop idle sockets after about 30 s)."""
    fetch_concurrency: int = Field(default=4, ge=1, le=64)
    signatures_page: int = Field(default=1000, ge=1, le=1000)
    initial_backfill: int = Field(default=0, ge=0)
    """Signatures to fetch per address on the very first start (0: start from now)."""


class EndpointLimits:
    """The token buckets of one endpoint: per IP and per method.

    Public limits are per client IP, so every `SolanaRpc` of this process talking to the
    same URL (the DePIN collector, the stablecoin collector, the supply poll) shares one
    set of buckets (per event loop, since the buckets hold asyncio locks).
    """

    _shared: ClassVar[
        weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, dict[tuple[str, float, float], EndpointLimits]
        ]
    ] = weakref.WeakKeyDictionary()

    def __init__(self, per_ip_per_10s: float, per_method_per_10s: float) -> None:
        self.ip = RateLimiter(per_ip_per_10s, 10.0)
        self.per_method_per_10s = per_method_per_10s
        self._methods: dict[str, RateLimiter] = {}

    def method(self, name: str) -> RateLimiter:
        limiter = self._methods.get(name)
        if limiter is None:
            limiter = self._methods[name] = RateLimiter(self.per_method_per_10s, 10.0)
        return limiter

    @classmethod
    def shared(cls, url: str, per_ip: float, per_method: float) -> EndpointLimits:
        by_endpoint = cls._shared.setdefault(asyncio.get_running_loop(), {})
        key = (url, per_ip, per_method)
        if key not in by_endpoint:
            by_endpoint[key] = cls(per_ip, per_method)
        return by_endpoint[key]


class _Response(msgspec.Struct):
    jsonrpc: str = "2.0"
    id: Any = None
    result: Any = None
    error: dict[str, Any] | None = None


_decode_response = msgspec.json.Decoder(_Response).decode
_encode = msgspec.json.Encoder().encode


class SolanaRpc:
    """An async JSON-RPC client honouring per-IP and per-method rate limits."""

    def __init__(
        self,
        settings: RpcSettings,
        *,
        session: aiohttp.ClientSession | None = None,
        on_rate_limited: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self._url = settings.http_url.reveal()
        self._session = session
        self._own_session = session is None
        self._limits: EndpointLimits | None = None
        self._on_rate_limited = on_rate_limited
        self._next_id = 0
        self.rate_limited = 0
        """How many 429 answers were received (each one paused the limiters)."""

    async def __aenter__(self) -> SolanaRpc:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None

    @property
    def limits(self) -> EndpointLimits:
        if self._limits is None:
            self._limits = EndpointLimits.shared(
                self._url, self.settings.requests_per_10s, self.settings.method_requests_per_10s
            )
        return self._limits

    def _limiter(self, method: str) -> RateLimiter:
        return self.limits.method(method)

    def _pause(self, method: str, seconds: float) -> None:
        self.rate_limited += 1
        self.limits.ip.pause(seconds)
        self._limiter(method).pause(seconds)
        if self._on_rate_limited is not None:
            self._on_rate_limited(seconds)

    async def call(self, method: str, params: list[Any] | None = None) -> Any:
        """One JSON-RPC call; returns ``result`` or raises `RpcError`/`RpcTransportError`."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout_s)
            )
        backoff = Backoff(initial=0.2, maximum=10.0)
        attempt = 0
        while True:
            attempt += 1
            await self._limiter(method).acquire()
            await self.limits.ip.acquire()
            self._next_id += 1
            body = _encode(
                {"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params or []}
            )
            try:
                async with self._session.post(
                    self._url, data=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    if resp.status == 429:
                        self._pause(method, _retry_after(resp.headers.get("Retry-After")))
                        if attempt > self.settings.max_retries + 1:
                            raise RpcTransportError(f"{method}: still rate limited (429)")
                        continue
                    if resp.status in _RETRYABLE_HTTP:
                        raise RpcTransportError(f"{method}: HTTP {resp.status}")
                    if resp.status != 200:
                        raise RpcError(resp.status, f"HTTP {resp.status}", method)
                    raw = await resp.read()
            except (aiohttp.ClientError, TimeoutError, RpcTransportError) as exc:
                if attempt > self.settings.max_retries:
                    raise RpcTransportError(f"{method}: {exc}") from exc
                await backoff.wait()
                continue
            try:
                response = _decode_response(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise RpcTransportError(f"{method}: undecodable response: {exc}") from exc
            if response.error is not None:
                code = int(response.error.get("code", 0))
                message = str(response.error.get("message", ""))
                if code == UNSUPPORTED_VERSION:
                    raise UnsupportedTransactionVersion(code, message, method)
                raise RpcError(code, message, method)
            return response.result

    async def get_transaction(self, signature: str) -> dict[str, Any] | None:
        """The jsonParsed transaction, or None when the node does not have it (yet)."""
        result = await self.call(
            "getTransaction",
            [
                signature,
                {
                    "encoding": "jsonParsed",
                    "maxSupportedTransactionVersion": (
                        self.settings.max_supported_transaction_version
                    ),
                    "commitment": self.settings.commitment,
                },
            ],
        )
        if result is None or isinstance(result, dict):
            return result
        raise RpcTransportError(f"getTransaction: unexpected result type {type(result).__name__}")

    async def get_signatures_for_address(
        self,
        address: str,
        *,
        before: str | None = None,
        until: str | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Signatures mentioning ``address``, newest first."""
        config: dict[str, Any] = {"limit": limit, "commitment": self.settings.commitment}
        if before:
            config["before"] = before
        if until:
            config["until"] = until
        result = await self.call("getSignaturesForAddress", [address, config])
        if not isinstance(result, list):
            raise RpcTransportError("getSignaturesForAddress: result is not a list")
        return [r for r in result if isinstance(r, dict) and isinstance(r.get("signature"), str)]

    async def get_token_supply(self, mint: str) -> tuple[int, int, int]:
        """(supply in base units, decimals, context slot)."""
        result = await self.call("getTokenSupply", [mint, {"commitment": self.settings.commitment}])
        try:
            value = result["value"]
            return int(value["amount"]), int(value["decimals"]), int(result["context"]["slot"])
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcTransportError(f"getTokenSupply: unexpected result: {exc}") from exc

    async def get_slot(self) -> int:
        return int(await self.call("getSlot", [{"commitment": self.settings.commitment}]))


def _retry_after(value: str | None) -> float:
    try:
        return max(0.0, float(value)) if value is not None else 1.0
    except ValueError:
        return 1.0


async def gather_limited(limit: int, coros: list[Any]) -> list[Any]:
    """Run coroutines with at most ``limit`` in flight; results in input order, exceptions
    returned in place."""
    in_flight = asyncio.Semaphore(limit)

    async def when_admitted(coro: Any) -> Any:
        async with in_flight:
            return await coro

    return await asyncio.gather(*(when_admitted(coro) for coro in coros), return_exceptions=True)
