"""Aggregates and windows in Redis: the state the rule engine evaluates CEL rules against.

`AggregateStore.apply` folds events into block windows, time-bucketed sums, HyperLogLogs
and last values with Lua scripts (atomic, idempotent per event id); `snapshot` turns them
into the CEL roots ``btc``, ``stablecoin``, ``depin``, ``market``, ``miner``, ``collectors``;
`state_metrics` into Prometheus families. Contract: CONTRACTS §3 and §5.
"""

from convmon.rules.aggregates.config import AggregatesConfig
from convmon.rules.aggregates.store import ROOTS, AggregateError, AggregateStore

__all__ = ["ROOTS", "AggregateError", "AggregateStore", "AggregatesConfig"]
