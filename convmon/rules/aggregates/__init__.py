"""Aggregates and windows in Redis: the state the rule engine evaluates CEL rules against.

`AggregateStore.apply` folds events into block windows, time-bucketed sums, HyperLogLogs
and last values with Lua scripts (atomic, idempotent per event id); `snapshot` turns them
into the CEL roots ``btc``, ``stablecoin``, ``depin``, ``market``, ``miner``,
``collectors``, ``ops``; `state_metrics` into Prometheus families. Contract: CONTRACTS §3
and §5.

Use::

    store = AggregateStore(redis, keys, clock, AggregatesConfig())
    await store.load()                       # once per process
    changed = await store.apply(events)      # a whole delivery batch: one round trip
    roots = await store.snapshot({"btc", "miner"})
    event_var = await store.event_context(event)

Facts a caller can rely on:
- ``apply`` returns True only for the first application of an event id (the id is
  remembered for ``applied_ttl_s``); applying a batch again, on any worker, is a no-op.
- Block windows depend only on the best chain: blocks may arrive in any order, a
  ``bitcoin.reorg`` that arrives before the blocks it disconnects still wins, and a reorg
  reverts every window exactly (as long as it is shallower than ``block_history_margin``).
- Time windows slide on the injected clock; token sums are exact (see `encoding`).
- A figure whose inputs are missing (no price, no block) is None, never 0.
"""

from convmon.rules.aggregates.config import AggregatesConfig
from convmon.rules.aggregates.store import ROOTS, AggregateStore
from convmon.rules.errors import AggregateError

__all__ = ["ROOTS", "AggregateError", "AggregateStore", "AggregatesConfig"]
