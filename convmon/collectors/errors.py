"""The collectors' error family: every collector's errors derive from these, so the daemon,
the CLI and tests can tell a collector's failure from a library's and decide what to do.

- `MalformedPayload`: a source sent something that does not have the shape we rely on.
  Counted (``convmon_collector_malformed_payloads_total``) and skipped, never fatal.
- `SourceUnavailable`: the source cannot be reached or refuses us now (timeouts, HTTP
  errors, rate limits): retried with backoff, reported as disconnected meanwhile.
- Anything else deriving from `CollectorError` is a collector's own failure; the
  supervisor restarts the component.

Each source family keeps its specific errors in its own ``errors`` module, subclassing
these (``bitcoin.errors``, ``solana.errors``, ``stablecoins.evm.errors``,
``market.errors``).
"""

from __future__ import annotations


class CollectorError(Exception):
    """Base of every error a collector raises."""


class MalformedPayload(CollectorError, ValueError):
    """A payload from a source that cannot be parsed: counted and skipped."""


class SourceUnavailable(CollectorError):
    """The source cannot be reached or refuses requests now: retry with backoff."""
