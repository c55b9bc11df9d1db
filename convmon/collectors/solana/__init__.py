"""Solana collectors: DePIN reward payouts and stablecoin mints/burns.

Both share the plumbing here: a JSON-RPC client with public-RPC rate limits
(`rpc`), a reconnecting ``logsSubscribe`` client (`ws`), a Redis-backed signature queue
(`sigqueue`) and the component that ties them together with gap recovery
(`collector`). `server` is a local JSON-RPC + websocket server used by tests and the demo.
"""
