"""Errors of the Tron collector, under `TronCollectorError` (a `CollectorError`).

- `MalformedPage` / `MalformedEvent` are `MalformedPayload`s: counted and skipped. An
  unreadable page is asked for again (its events are never skipped unseen); an event that
  does not have the shape its name requires is skipped.
- `TronApiError` (an answer with ``success: false``, or an HTTP error), `RateLimited`
  (HTTP 429, with the server's ``Retry-After``) and `TronTransportError` (timeouts, dropped
  connections) are `SourceUnavailable`: retried with backoff, never advancing a checkpoint.
"""

from __future__ import annotations

from convmon.collectors.errors import CollectorError, MalformedPayload, SourceUnavailable


class TronCollectorError(CollectorError):
    """Base of the Tron collector's errors."""


class MalformedPage(TronCollectorError, MalformedPayload):
    """A page that is not the events API's JSON shape."""


class MalformedEvent(TronCollectorError, MalformedPayload):
    """One event of a page that lacks a field its event name requires."""


class TronApiError(TronCollectorError, SourceUnavailable):
    """The API refused the request: HTTP error status, or HTTP 200 with ``success: false``."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(TronApiError):
    """HTTP 429; ``retry_after`` is the server's ``Retry-After`` in seconds, if any."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__("rate limited (HTTP 429)", 429)
        self.retry_after = retry_after


class TronTransportError(TronCollectorError, SourceUnavailable):
    """The request did not complete (connection refused or dropped, timeout)."""
