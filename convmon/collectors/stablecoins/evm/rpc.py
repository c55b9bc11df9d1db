"""JSON-RPC calls the collector needs, over any web3.py provider, and adaptive
``eth_getLogs``.

Requests go through ``provider.make_request`` so results stay raw JSON (hex strings: cheap
to decode, no per-field formatting) and JSON-RPC errors arrive intact, which is how a
refused range is recognised. Providers cap ``eth_getLogs`` differently (10,000 results on
some, a few thousand blocks on others, a response size on a third), each with its own error
text; `get_logs_split` halves the range on any of them and grows it back after successes.

Provider plumbing lives here too: `retry_after` reads an HTTP 429/503's ``Retry-After``
and `drain_subscriptions` turns a websocket's subscription stream into a queue whose end
(or failure) arrives as an exception, so the collector can wait on messages and timers at
once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from convmon.collectors.stablecoins.evm.decode import RawLog
from convmon.collectors.stablecoins.evm.errors import RangeRefused, RpcError
from convmon.monitor.cancel import honour_cancellation

_RANGE_ERROR = re.compile(
    r"more than \d+ results|too many (results|logs|blocks)|range (is )?too (large|wide|big)"
    r"|block range|exceed(s|ed)? (the )?max|response size|limit exceeded|query timeout"
    r"|limited to (a )?[\d,]+",
    re.IGNORECASE,
)


def is_range_refusal(message: str) -> bool:
    """Whether an ``eth_getLogs`` error message means "ask for a smaller range"."""
    return _RANGE_ERROR.search(message) is not None


class EthRpc:
    """Raw JSON-RPC over a web3.py provider (HTTP or websocket)."""

    def __init__(self, provider: Any) -> None:
        self.provider = provider
        self.requests = 0

    async def call(self, method: str, params: Sequence[Any]) -> Any:
        self.requests += 1
        try:
            response = await self.provider.make_request(RPCEndpoint(method), list(params))
        finally:
            # web3's request path can swallow our cancellation (Python 3.11's wait_for
            # returns a result that raced with it) or turn it into another error: every
            # caller's loop stops here instead of calling the chain again.
            honour_cancellation()
        error = response.get("error")
        if error is not None:
            code = error.get("code") if isinstance(error, dict) else None
            message = str(error.get("message", error) if isinstance(error, dict) else error)
            if method == "eth_getLogs" and is_range_refusal(message):
                raise RangeRefused(method, code, message)
            raise RpcError(method, code, message)
        if "result" not in response:
            raise RpcError(method, None, "response without result")
        return response["result"]

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber", []), 16)

    async def block(self, tag: int | str) -> dict[str, Any] | None:
        ref = hex(tag) if isinstance(tag, int) else tag
        result = await self.call("eth_getBlockByNumber", [ref, False])
        return result if isinstance(result, dict) else None

    async def eth_call_uint(
        self, to: str, selector: str, block: int | str = "latest"
    ) -> int | None:
        """A no-argument view returning one uint256; None when the contract has no answer."""
        ref = hex(block) if isinstance(block, int) else block
        result = await self.call("eth_call", [{"to": to, "data": selector}, ref])
        if not isinstance(result, str) or len(result) < 66:
            return None
        return int(result[2:66], 16)

    async def get_logs(
        self, filters: Sequence[dict[str, object]], start: int, end: int
    ) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for flt in filters:
            params = dict(flt, fromBlock=hex(start), toBlock=hex(end))
            result = await self.call("eth_getLogs", [params])
            if not isinstance(result, list):
                raise RpcError("eth_getLogs", None, "result is not a list")
            out.extend(result)
        return out


async def get_logs_split(
    rpc: EthRpc,
    filters: Sequence[dict[str, object]],
    start: int,
    end: int,
    max_range: int,
) -> AsyncIterator[tuple[int, int, list[dict[str, Any]]]]:
    """Logs of blocks ``start..end`` as consecutive ``(lo, hi, logs)`` chunks in block
    order, halving the span whenever the provider refuses it and doubling it back (up to
    ``max_range``) after each accepted chunk."""
    span = max(1, max_range)
    lo = start
    while lo <= end:
        hi = min(end, lo + span - 1)
        try:
            logs = await rpc.get_logs(filters, lo, hi)
        except RangeRefused:
            if hi == lo:
                raise
            span = max(1, (hi - lo + 1) // 2)
            continue
        yield lo, hi, logs
        lo = hi + 1
        span = min(max_range, span * 2)


def sort_logs(logs: Sequence[RawLog]) -> list[RawLog]:
    return sorted(logs, key=lambda log: (log.block_number, log.log_index))


def retry_after(exc: BaseException) -> float | None:
    """The server's ``Retry-After`` (seconds) of an HTTP 429/503, None otherwise."""
    if not isinstance(exc, aiohttp.ClientResponseError) or exc.status not in (429, 503):
        return None
    value = exc.headers.get("Retry-After") if exc.headers is not None else None
    try:
        return min(600.0, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None


async def drain_subscriptions(w3: AsyncWeb3[Any], inbox: asyncio.Queue[Any]) -> None:
    """Move subscription notifications into ``inbox``; the end of the stream or its
    failure is queued as an exception."""
    try:
        async for message in w3.socket.process_subscriptions():
            inbox.put_nowait(message)
        inbox.put_nowait(ConnectionError("subscription stream ended"))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        inbox.put_nowait(exc)
