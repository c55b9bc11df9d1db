"""The outside world, imitated: local servers and simulated scenarios.

One module per protocol imitated: `bitcoin_node` (Esplora REST + websocket, Bitcoin Core
JSON-RPC and ZMQ over one simulated chain, built with `bitcoin_chain`), `solana_rpc`
(Solana JSON-RPC + websocket, with transactions authored by `solana_tx`), `exchanges`
(Coinbase and Kraken websocket feeds, CoinGecko REST), `anvil` (control of a real anvil
node with byte-identical token contracts at the real addresses). `scenarios` feed them for
``convmon demo`` (`demo`, `demoview`), and the tests and the chaos suite drive them with
faults: dropped connections, rate limits, reorgs, garbage.

Used by tests, benchmarks, the chaos suite and ``convmon demo``; production code never
imports this package (a test over the import graph checks it).
"""
