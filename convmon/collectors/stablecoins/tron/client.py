"""A client of TronGrid's contract events endpoint, and the typed shape of its pages.

In: ``GET {api_url}/v1/contracts/{address}/events`` with ``event_name``,
``only_confirmed=true``, ``min_block_timestamp`` (ms, inclusive),
``order_by=block_timestamp,asc``, ``limit`` and the ``fingerprint`` cursor of the previous
page; the API key, when configured, in the ``TRON-PRO-API-KEY`` header. Out: an
`EventsPage`: the events that parse, how many did not, and the next cursor.

An answer is trusted only when it says so: HTTP 200 with ``success: false`` raises
`TronApiError` like an HTTP error does, 429 raises `RateLimited` with ``Retry-After``, and a
body that is not the page shape raises `MalformedPage`. Pages are decoded with msgspec into
structs; each event is decoded on its own so one bad event costs only itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
import msgspec

from convmon.collectors.stablecoins.tron.errors import (
    MalformedPage,
    RateLimited,
    TronApiError,
    TronTransportError,
)
from convmon.monitor.secrets import Secret, scrub

API_KEY_HEADER = "TRON-PRO-API-KEY"


class TronEvent(msgspec.Struct, frozen=True):
    transaction_id: str
    block_number: int
    block_timestamp: int
    """Milliseconds since the epoch."""
    event_name: str
    result: dict[str, Any]
    event_index: int | None = None
    contract_address: str | None = None
    unconfirmed: bool = msgspec.field(default=False, name="_unconfirmed")


class _Meta(msgspec.Struct):
    at: int | None = None
    page_size: int | None = None
    fingerprint: str | None = None
    links: dict[str, Any] | None = None


class _Page(msgspec.Struct):
    success: bool
    data: list[msgspec.Raw] = msgspec.field(default_factory=list)
    meta: _Meta = msgspec.field(default_factory=_Meta)
    error: str | None = None


_decode_page = msgspec.json.Decoder(_Page).decode
_decode_event = msgspec.json.Decoder(TronEvent).decode


@dataclass(slots=True)
class EventsPage:
    events: list[TronEvent]
    fingerprint: str | None
    malformed: list[str] = field(default_factory=list)
    """Why each event that did not parse was skipped."""
    size: int = 0
    """Entries in ``data``, parsed or not."""


def parse_page(body: bytes) -> EventsPage:
    """Decode one answer. Raises `MalformedPage`, or `TronApiError` for ``success: false``."""
    try:
        page = _decode_page(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise MalformedPage(f"not an events page: {exc}") from None
    if not page.success:
        raise TronApiError(f"API answered success=false: {page.error or 'no reason'}", 200)
    events: list[TronEvent] = []
    malformed: list[str] = []
    for raw in page.data:
        try:
            events.append(_decode_event(raw))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            malformed.append(str(exc))
    fingerprint = page.meta.fingerprint or None
    return EventsPage(events, fingerprint, malformed, len(page.data))


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class TronGridClient:
    """Fetches event pages; one aiohttp session, closed by `close`."""

    def __init__(
        self, api_url: Secret, api_key: Secret | None, *, timeout_s: float = 30.0,
    ) -> None:
        self._api_url = api_url
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def events(
        self, contract: str, event_name: str, *, min_block_timestamp: int, limit: int,
        fingerprint: str | None = None,
    ) -> EventsPage:
        params = {
            "event_name": event_name,
            "only_confirmed": "true",
            "min_block_timestamp": str(min_block_timestamp),
            "order_by": "block_timestamp,asc",
            "limit": str(limit),
        }
        if fingerprint:
            params["fingerprint"] = fingerprint
        url = f"{self._api_url.reveal().rstrip('/')}/v1/contracts/{contract}/events"
        headers = {"Accept": "application/json"}
        if self._api_key is not None:
            headers[API_KEY_HEADER] = self._api_key.reveal()
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url, params=params, headers=headers) as resp:
                body = await resp.read()
                if resp.status == 429:
                    raise RateLimited(_retry_after(resp.headers.get("Retry-After")))
                if resp.status != 200:
                    raise TronApiError(
                        f"HTTP {resp.status}: {scrub(body[:200].decode('utf-8', 'replace'))}",
                        resp.status,
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TronTransportError(scrub(f"{type(exc).__name__}: {exc}")) from None
        return parse_page(body)
