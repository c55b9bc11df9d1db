"""The Solana engine shared by the DePIN payouts (`convmon.collectors.depin`) and the Solana
stablecoins (`convmon.collectors.stablecoins.solana`).

A JSON-RPC client with public-RPC rate limits (`rpc`), a reconnecting ``logsSubscribe``
client (`ws`), a Redis-backed signature queue (`sigqueue`), transaction shape helpers
(`txshape`) and the component that ties them together with gap recovery (`collector`).
"""
