"""One error family: what the rules room raises is a `RuleError` (and a `ValueError` where
it reports an invalid value), so the daemon and the CLI can catch the room's errors as one."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregateError, AggregatesConfig, AggregateStore
from convmon.rules.errors import EntityMapError, RuleError
from convmon.rules.expr import ExprError
from tests.aggregates import factories as f


@pytest.mark.parametrize("error", [AggregateError, EntityMapError, ExprError])
def test_every_rules_error_is_a_rule_error(error: type[Exception]) -> None:
    assert issubclass(error, RuleError)


async def test_the_store_raises_a_rule_error(redis: Redis, keys: Keys) -> None:
    store = AggregateStore(redis, keys, ManualClock(f.T0), AggregatesConfig())
    await store.load()
    with pytest.raises(RuleError, match="unknown aggregate roots: nope"):
        await store.snapshot(["btc", "nope"])
    with pytest.raises(ValueError, match="unknown aggregate roots"):
        await store.snapshot(["nope"])
