"""The sender protocol and the HTTP call every HTTP receiver shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import aiohttp

from ..errors import DeliveryError
from ..notification import Notification


class Sender(Protocol):
    name: str

    async def send(self, notification: Notification) -> None: ...


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str],
    timeout_s: float,
) -> bytes:
    """POST and classify the outcome (see `request`)."""
    return await request(session, "POST", url, body, headers, timeout_s)


async def request(
    session: aiohttp.ClientSession, method: str, url: str, body: bytes | None,
    headers: Mapping[str, str], timeout_s: float,
) -> bytes:
    """Send and classify the outcome: 2xx returns the body; 429 and 5xx and network errors
    are retryable; other 4xx are not. Error messages never contain the URL (it may hold a
    secret)."""
    try:
        async with session.request(
            method, url, data=body, headers=dict(headers),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        ) as resp:
            payload = await resp.read()
            if resp.status == 429:
                raise DeliveryError(
                    "HTTP 429", retry_after=retry_after_seconds(resp.headers.get("Retry-After")),
                    reason="rate_limited",
                )
            if resp.status >= 500:
                raise DeliveryError(f"HTTP {resp.status}", reason="http_5xx")
            if resp.status >= 400:
                raise DeliveryError(f"HTTP {resp.status}", retryable=False, reason="http_4xx")
            return payload
    except TimeoutError:
        raise DeliveryError("timeout", reason="timeout") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"connection error: {type(exc).__name__}", reason="network") from None
