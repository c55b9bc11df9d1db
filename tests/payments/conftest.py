"""The Solana fixtures (a local Solana RPC + websocket node, the engine's collector)."""

from tests.solana.conftest import make_collector, server

__all__ = ["make_collector", "server"]
