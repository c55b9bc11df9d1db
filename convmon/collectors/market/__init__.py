"""Market prices: exchange websocket tickers, a REST fallback, one sampled median per symbol.

In: Coinbase Exchange and Kraken v2 ``ticker`` websockets, CoinGecko ``simple/price`` over
HTTP (for symbols no live websocket covers, and for everything when no websocket is up).
Out: ``market.price`` events on the bus at a bounded rate (one per symbol per sample
interval, sooner on a large move), per-source health in Redis and `CollectorHealth`.

Miner economics and peg deviations are not computed here: the rule engine's aggregates
derive them from the ``market.price`` events.
"""
