"""Errors of the market collector: one family under `MarketError`, itself a
`CollectorError`.

- `MalformedMessage` is a `MalformedPayload`: a frame or body that is not a message of the
  source's protocol is counted and skipped.
- `FeedError` is a `SourceUnavailable`: a price source misbehaved (timeout, closed
  connection, refused subscription, maintenance) and the feed reconnects with backoff.
"""

from __future__ import annotations

from convmon.collectors.errors import CollectorError, MalformedPayload, SourceUnavailable


class MarketError(CollectorError):
    """Base of the market collector's errors."""


class FeedError(MarketError, SourceUnavailable):
    """A price source misbehaved (timeout, closed connection, refused subscription);
    the feed reconnects."""


class MalformedMessage(MarketError, MalformedPayload):
    """A frame that is not a valid message of the source's protocol."""
