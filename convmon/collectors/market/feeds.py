"""The connections to price sources: two websocket feeds and one REST poller.

`WebsocketFeed` connects, subscribes, reads frames until the link fails (closed, error,
no message at all for ``message_timeout_s``, a websocket ping unanswered, the venue
reporting maintenance) and then reconnects with `Backoff` and subscribes again: a new
connection has no subscriptions. A product the venue refuses (not listed there) is
dropped from the subscription and reported, rather than failing the whole feed.

`CoinGeckoPoller` fetches ``simple/price`` for the ids the collector asks for (which
depend on which websockets are up) and honours 429 ``Retry-After``.

Both hand ``(symbol, price)`` pairs and up/down transitions to a `FeedListener`;
garbage is counted through `CollectorHealth.malformed` and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import aiohttp

from convmon.collectors.market.config import CoinGeckoConfig, WebsocketSourceConfig
from convmon.collectors.market.errors import FeedError, MalformedMessage
from convmon.collectors.market.parsing import FeedMessage, parse_coingecko
from convmon.monitor.backoff import Backoff
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)


class FeedListener(Protocol):
    async def on_prices(
        self, source: str, prices: Sequence[tuple[str, float]], at: float
    ) -> None: ...

    async def on_state(self, source: str, up: bool, detail: str) -> None: ...


class WebsocketFeed:
    """One exchange websocket: connect, subscribe, read, reconnect."""

    def __init__(
        self,
        source: str,
        config: WebsocketSourceConfig,
        *,
        products: dict[str, str],
        subscribe: Callable[[list[str]], list[str]],
        parse: Callable[[bytes | str], FeedMessage],
        listener: FeedListener,
        health: CollectorHealth,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        self.source = source
        self.name = f"market/{source}"
        self.config = config
        self.products = products
        self.subscribe = subscribe
        self.refused: set[str] = set()
        """Products the venue refused; not asked for again until restart."""
        self.parse = parse
        self.listener = listener
        self.health = health
        self.session = session
        self.clock = clock
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_max_s)
        self.connects = 0
        self.last_message_at: float | None = None
        self._up: bool | None = None
        """None until the first connect attempt ends: the first state, up or down, is news."""

    async def run(self) -> None:
        while True:
            reason = await self._session_once()
            honour_cancellation()
            await self._set_up(False, reason)
            await self.health.error(f"{self.source}_disconnected", reason)
            honour_cancellation()
            await asyncio.sleep(self.backoff.next_delay())

    async def _session_once(self) -> str:
        """One connection, from connect to failure; returns why it ended."""
        url = self.config.url.reveal()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that races with the connect completing, and the feed would never stop.
        try:
            async with asyncio.timeout(self.config.connect_timeout_s):
                ws = await self.session.ws_connect(url, heartbeat=self.config.ping_interval_s)
        except TimeoutError:
            return "connect timed out"
        except (aiohttp.ClientError, OSError) as exc:
            return f"connect failed: {self._describe(exc)}"
        self.connects += 1
        try:
            await self._subscribe(ws)
            return await self._read(ws)
        except TimeoutError:
            return f"no message for {self.config.message_timeout_s:g} s"
        except (aiohttp.ClientError, OSError, ConnectionError) as exc:
            return f"connection lost: {self._describe(exc)}"
        except FeedError as exc:
            return str(exc)
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await ws.close()

    def _describe(self, exc: BaseException) -> str:
        """The error without the URL: a websocket URL may carry an API key."""
        if isinstance(exc, aiohttp.ClientResponseError):
            return f"{type(exc).__name__}: HTTP {exc.status}"
        text = str(exc).replace(self.config.url.reveal(), self.config.url.redacted())
        return f"{type(exc).__name__}: {text}"

    async def _subscribe(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        wanted = sorted(set(self.products) - self.refused)
        if not wanted:
            raise FeedError("the venue refused every product")
        for message in self.subscribe(wanted):
            await ws.send_str(message)

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> str:
        # An outer deadline: aiohttp restarts its receive timeout on every pong, and a feed
        # that answers pings but sends nothing else is as dead as a closed one.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.message_timeout_s
        while True:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                msg = await ws.receive()
            if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                deadline = loop.time() + self.config.message_timeout_s
                if await self._handle(msg.data):
                    await self._subscribe(ws)
                honour_cancellation()
            elif msg.type == aiohttp.WSMsgType.ERROR:
                return f"websocket error: {ws.exception()}"
            else:
                return f"closed by server ({ws.close_code})"

    async def _handle(self, data: bytes | str) -> bool:
        """Handle one frame; True when the subscription must be sent again."""
        now = self.clock.now()
        try:
            msg = self.parse(data)
        except MalformedMessage as exc:
            self.health.malformed(self.source, str(exc))
            return False
        self.last_message_at = now
        if msg.kind == "status":
            if not msg.healthy:
                raise FeedError(f"venue status {msg.detail!r}")
            return False
        if msg.kind == "error":
            await self.health.error(f"{self.source}_refused", msg.detail)
            if msg.refused in self.products and msg.refused not in self.refused:
                self.refused.add(msg.refused)
                log.warning(
                    "product refused by the venue; dropped from the subscription",
                    extra={"collector": "market", "source": self.source,
                           "product": msg.refused, "detail": msg.detail[:200]},
                )
                return msg.request_refused
            return False
        if not self._up and msg.kind in ("subscribed", "ticker", "heartbeat"):
            self.backoff.reset()
            await self._set_up(True, "subscribed")
        if msg.kind == "ticker":
            known = [(self.products[p], price) for p, price in msg.prices if p in self.products]
            if known:
                await self.listener.on_prices(self.source, known, now)
        return False

    async def _set_up(self, up: bool, detail: str) -> None:
        if up != self._up:
            self._up = up
            await self.listener.on_state(self.source, up, detail)


class CoinGeckoPoller:
    """CoinGecko ``/api/v3/simple/price`` for the ids ``wanted()`` returns (id → symbol).

    Polls every ``poll_interval_s`` and at once when `wake` is set (a websocket went down).
    """

    source = "coingecko"

    def __init__(
        self,
        config: CoinGeckoConfig,
        *,
        wanted: Callable[[], dict[str, str]],
        listener: FeedListener,
        health: CollectorHealth,
        session: aiohttp.ClientSession,
        clock: Clock,
    ) -> None:
        self.name = "market/coingecko"
        self.config = config
        self.wanted = wanted
        self.listener = listener
        self.health = health
        self.session = session
        self.clock = clock
        self.wake = asyncio.Event()
        self.requests = 0
        self.last_message_at: float | None = None
        self._up: bool | None = None
        """None until the first connect attempt ends: the first state, up or down, is news."""

    async def run(self) -> None:
        while True:
            self.wake.clear()
            ids = self.wanted()
            delay = self.config.poll_interval_s
            if ids:
                retry_after = await self.poll(ids)
                honour_cancellation()
                if retry_after is not None:
                    await self.clock.sleep(retry_after)
                    continue
            await self._sleep_or_wake(delay)

    async def _sleep_or_wake(self, seconds: float) -> None:
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()

    async def poll(self, ids: dict[str, str]) -> float | None:
        """One request; returns a delay to wait first when rate limited."""
        url = self.config.url.rstrip("/") + "/api/v3/simple/price"
        params = {
            "ids": ",".join(sorted(ids)),
            "vs_currencies": "usd",
            "include_last_updated_at": "true",
        }
        headers = {"accept": "application/json"}
        if self.config.api_key is not None:
            headers[self.config.api_key_header] = self.config.api_key.reveal()
        self.requests += 1
        timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
        try:
            async with self.session.get(
                url, params=params, headers=headers, timeout=timeout
            ) as resp:
                body = await resp.read()
                if resp.status == 429:
                    await self._set_up(False, "rate limited")
                    await self.health.error("coingecko_rate_limited", f"HTTP 429 from {url}")
                    retry = resp.headers.get("Retry-After")
                    return _retry_after(retry, self.config.poll_interval_s)
                if resp.status != 200:
                    await self._set_up(False, f"HTTP {resp.status}")
                    await self.health.error("coingecko_http", f"HTTP {resp.status} from {url}")
                    return None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            await self._set_up(False, type(exc).__name__)
            await self.health.error("coingecko_unreachable", f"{type(exc).__name__}: {exc}")
            return None
        now = self.clock.now()
        try:
            msg = parse_coingecko(body)
        except MalformedMessage as exc:
            self.health.malformed(self.source, str(exc))
            return None
        self.last_message_at = now
        await self._set_up(True, "ok")
        for coin, price in msg.prices:
            symbol = ids.get(coin)
            if symbol is not None:
                # The API caches prices: a quote is as old as its last_updated_at says.
                at = min(now, msg.timestamps.get(coin, now))
                await self.listener.on_prices(self.source, [(symbol, price)], at)
        return None

    async def _set_up(self, up: bool, detail: str) -> None:
        if up != self._up:
            self._up = up
            await self.listener.on_state(self.source, up, detail)


def _retry_after(value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        return default
