"""A ``logsSubscribe`` client that stays subscribed.

In: a websocket URL and the addresses to watch. Out: ``(address, signature, slot, skip)``
for every ``logsNotification``, handed to ``on_signature``: ``skip`` when the transaction
failed, or when ``wanted_logs`` is given and its complete logs show nothing wanted (a
collector of mints and burns needs no transfer of the same mint); ``on_session`` runs when a
connection opens (before subscribing) and ``on_connected`` after every (re)subscription, so
the caller can recover the gap with ``getSignaturesForAddress``.

``logsSubscribe`` accepts exactly one address in ``mentions``, so each address gets its own
subscription on one socket. Public endpoints drop idle sockets after about 30 s: aiohttp
pings every ``ping_interval_s``. solana-py's websocket client neither reconnects nor
resubscribes, which is the reason this small client exists: on any drop it reconnects with
`Backoff` and subscribes again. Malformed frames are counted and skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
import msgspec

from convmon.collectors.solana.errors import SubscriptionRefused
from convmon.monitor.backoff import Backoff
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)

OnSignature = Callable[[str, str, int, bool], Awaitable[None]]
"""(address, signature, slot, skip): ``skip`` means there is nothing to fetch."""
WantedLogs = Callable[[Sequence[str]], bool]
OnConnected = Callable[[], Awaitable[None]]


class LogsSubscriber:
    """One websocket, one ``logsSubscribe`` per address, reconnecting forever."""

    def __init__(
        self,
        url: str,
        addresses: Sequence[str],
        *,
        commitment: str,
        health: CollectorHealth,
        on_signature: OnSignature,
        on_connected: OnConnected,
        on_session: OnConnected | None = None,
        ping_interval_s: float = 15.0,
        backoff: Backoff | None = None,
        wanted_logs: WantedLogs | None = None,
    ) -> None:
        if not addresses:
            raise ValueError("LogsSubscriber needs at least one address")
        self.url = url
        self.addresses = list(dict.fromkeys(addresses))
        self.commitment = commitment
        self.health = health
        self.on_signature = on_signature
        self.on_connected = on_connected
        self.on_session = on_session
        """Runs when a connection opens, before any subscription is requested."""
        self.ping_interval_s = ping_interval_s
        self.wanted_logs = wanted_logs
        self.backoff = backoff or Backoff(initial=0.5, maximum=30.0)
        self.connections = 0

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                honour_cancellation()
                try:
                    await self._session(session)
                    detail = "websocket closed by server"
                except (aiohttp.ClientError, OSError, TimeoutError, SubscriptionRefused) as exc:
                    detail = f"websocket: {type(exc).__name__}: {exc}"
                    await self.health.error("websocket", detail)
                await self.health.disconnected(detail)
                await self.backoff.wait()

    async def _session(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(
            self.url, heartbeat=self.ping_interval_s, max_msg_size=64 * 1024 * 1024
        ) as ws:
            self.connections += 1
            if self.on_session is not None:
                await self.on_session()
            by_request: dict[int, str] = {}
            for i, address in enumerate(self.addresses, start=1):
                by_request[i] = address
                await ws.send_bytes(
                    msgspec.json.encode(
                        {
                            "jsonrpc": "2.0",
                            "id": i,
                            "method": "logsSubscribe",
                            "params": [{"mentions": [address]}, {"commitment": self.commitment}],
                        }
                    )
                )
            by_subscription: dict[int, str] = {}
            async for msg in ws:
                honour_cancellation()
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                try:
                    frame = msgspec.json.decode(msg.data)
                except msgspec.DecodeError:
                    self.health.malformed("ws_frame", str(msg.data)[:200])
                    continue
                if not isinstance(frame, dict):
                    self.health.malformed("ws_frame", "not an object")
                    continue
                if "id" in frame and frame.get("id") in by_request:
                    address = by_request.pop(frame["id"])
                    if "error" in frame or not isinstance(frame.get("result"), int):
                        raise SubscriptionRefused(f"logsSubscribe {address}: {frame.get('error')}")
                    by_subscription[frame["result"]] = address
                    if not by_request:
                        await self.health.connected(f"subscribed to {len(by_subscription)}")
                        self.backoff.reset()
                        await self.on_connected()
                        honour_cancellation()
                    continue
                await self._notification(frame, by_subscription)
                honour_cancellation()

    async def _notification(self, frame: dict[str, Any], subs: dict[int, str]) -> None:
        if frame.get("method") != "logsNotification":
            return
        try:
            params = frame["params"]
            address = subs[params["subscription"]]
            result = params["result"]
            value = result["value"]
            signature = value["signature"]
            slot = int(result["context"]["slot"])
            if not isinstance(signature, str) or not signature:
                raise TypeError("signature is not a string")
        except (KeyError, TypeError, ValueError) as exc:
            self.health.malformed("logs_notification", f"{exc!r}: {str(frame)[:200]}")
            return
        skip = value.get("err") is not None
        logs = value.get("logs")
        if not skip and self.wanted_logs is not None and isinstance(logs, list) and logs:
            skip = not self.wanted_logs(logs)
        await self.on_signature(address, signature, slot, skip)
