"""Errors of the Solana collectors (one hierarchy for the package)."""

from __future__ import annotations


class SolanaCollectorError(Exception):
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


class RpcTransportError(SolanaCollectorError):
    """HTTP failure, timeout or an undecodable response (retryable)."""


class MalformedTransaction(SolanaCollectorError):
    """A transaction payload does not have the jsonParsed shape we rely on."""
