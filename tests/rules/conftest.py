"""Fixtures for the rule engine: the real aggregate store under the test's key prefix."""

from __future__ import annotations

from typing import Any

import pytest

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.engine import AggregateSource
from convmon.rules.ruletest import StoreFactory


async def _make_store(redis: Any, keys: Keys, clock: ManualClock) -> AggregateSource:
    store = AggregateStore(redis, keys, clock, AggregatesConfig())
    await store.load()
    return store


@pytest.fixture
def store_factory() -> StoreFactory:
    return _make_store
