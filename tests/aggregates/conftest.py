"""Fixtures: an `AggregateStore` on the real test Redis with a manual clock."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from tests.aggregates.factories import T0

MakeStore = Callable[..., Awaitable[AggregateStore]]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def make_store(redis: Redis, keys: Keys, clock: ManualClock) -> MakeStore:
    async def make(
        *, keys_: Keys | None = None, config: AggregatesConfig | None = None, **cfg: Any
    ) -> AggregateStore:
        store = AggregateStore(
            redis, keys_ or keys, clock, config or AggregatesConfig(**cfg)
        )
        await store.load()
        return store

    return make
