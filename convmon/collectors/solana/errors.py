"""Errors of the Solana engine and the collectors built on it (DePIN payouts, Solana
stablecoins): one family under `SolanaCollectorError`, itself a `CollectorError`.

What the daemon does with each follows the collectors' base classes: a `MalformedTransaction`
is a `MalformedPayload` (counted and skipped), an `RpcTransportError` is a
`SourceUnavailable` (retried with backoff). An `RpcError` is the node's own JSON-RPC error
answer: the request reached it and was refused, so it is neither.
"""

from __future__ import annotations

from convmon.collectors.errors import CollectorError, MalformedPayload, SourceUnavailable


class SolanaCollectorError(CollectorError):
    """Base of every error raised by the Solana collectors."""


class RpcError(SolanaCollectorError):
    """The node answered a JSON-RPC error object."""

    def __init__(self, code: int, message: str, method: str = "") -> None:
        super().__init__(f"{method}: JSON-RPC error {code}: {message}" if method else message)
        self.code = code
        self.message = message
        self.method = method


class UnsupportedTransactionVersion(RpcError):
    """-32015: the transaction's version is above ``maxSupportedTransactionVersion``.

    Not retryable with the same configuration: raise ``max_supported_transaction_version``.
    """


class RpcTransportError(SolanaCollectorError, SourceUnavailable):
    """HTTP failure, timeout or an undecodable response (retryable)."""


class SubscriptionRefused(SolanaCollectorError, SourceUnavailable):
    """The websocket endpoint refused a ``logsSubscribe``: the connection is replaced."""


class MalformedTransaction(SolanaCollectorError, MalformedPayload):
    """A transaction payload does not have the jsonParsed shape we rely on."""
