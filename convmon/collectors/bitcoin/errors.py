"""The bitcoin collector's errors: one family, so the daemon, the CLI and tests can tell a
bitcoin failure from a library's and decide what to do with it.

Everything derives from `BitcoinCollectorError`, itself a `CollectorError`:

- `MalformedBlock`: a block or transaction document without the shape we rely on (a
  `MalformedPayload`: counted and skipped).
- `SourceUnavailable`: the Esplora API or Bitcoin Core failed after retries (the shared
  `SourceUnavailable`: retried with backoff). `BlockNotFound`: the source does not know
  a height or hash (yet).
- `ReorgTooDeep`: the fork point lies deeper than the block record reaches.
- `MalformedJob`: a stratum job without the shape we rely on (counted and skipped).
- `RegistryError`, `LabelError`: a pool list or a labels file a user gave us is not in the
  expected format. Both are `MalformedPayload`s, hence `ValueError`s: the CLI and the pool
  list loader catch them as such.
"""

from __future__ import annotations

from convmon.collectors import errors as collector_errors


class BitcoinCollectorError(collector_errors.CollectorError):
    """Base of the bitcoin collector's errors."""


class MalformedBlock(BitcoinCollectorError, collector_errors.MalformedPayload):
    """A block or transaction document that does not have the expected shape."""


class SourceUnavailable(BitcoinCollectorError, collector_errors.SourceUnavailable):
    """The source failed (network, HTTP errors, garbage) after retries."""


class BlockNotFound(BitcoinCollectorError):
    """The source does not know this height or hash (yet)."""


class ReorgTooDeep(BitcoinCollectorError):
    """The fork point lies deeper than the record reaches."""


class RegistryError(BitcoinCollectorError, collector_errors.MalformedPayload):
    """A pool list (or entity file) is not in pools-v2 format."""


class LabelError(BitcoinCollectorError, collector_errors.MalformedPayload):
    """A labels file line is not ``height,pool_slug[,timestamp]``."""


class MalformedJob(BitcoinCollectorError, collector_errors.MalformedPayload):
    """A stratum job (websocket frame, Stratum v1 line, or a recorded job) that does not
    have the expected shape."""
