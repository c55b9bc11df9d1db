"""Errors of the EVM stablecoin collector: one family under `EvmCollectorError`, itself a
`CollectorError`, so the daemon and CLI can tell ours from a library's.

- `MalformedLog` is a `MalformedPayload`: counted and skipped, never fatal.
- `RpcError` is the node's JSON-RPC error answer; `RangeRefused` is the one the collector
  handles itself, by asking for a smaller ``eth_getLogs`` range. Transport failures stay the
  provider library's own exceptions: the collector reconnects on any of them.
"""

from __future__ import annotations

from convmon.collectors.errors import CollectorError, MalformedPayload


class EvmCollectorError(CollectorError):
    """Base of the EVM stablecoin collector's errors."""


class MalformedLog(EvmCollectorError, MalformedPayload):
    """A log (or head) of a watched token that does not have the shape its event requires;
    counted and skipped, never fatal."""


class RpcError(EvmCollectorError):
    """The node answered a JSON-RPC error object (or no result at all)."""

    def __init__(self, method: str, code: int | None, message: str) -> None:
        super().__init__(f"{method}: {code}: {message}")
        self.method = method
        self.code = code
        self.message = message


class RangeRefused(RpcError):
    """The provider refused an ``eth_getLogs`` range (too many results or blocks)."""


class ChainMismatch(EvmCollectorError):
    """The endpoint serves another chain than the configured ``chain_id``: nothing is
    read from it (its logs would be published under the wrong chain)."""
