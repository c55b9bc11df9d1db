"""The aggregates' scripts touch only the keys they declare, each call on one slot.

Every kind of event the aggregates take (blocks, a reorg, an attribution, stablecoin flows
and supplies, DePIN payouts with recipients, DePIN emissions, burns and supplies, prices,
statuses, ops samples, x402 payments) is applied, a window recount is forced, and every
root is read, under `tests.keyaudit.audit_keys` (MONITOR, ``COMMAND GETKEYS`` per
command). The audit must also have seen each of the aggregates' scripts run."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.rules.aggregates import AggregatesConfig, AggregateStore
from convmon.rules.aggregates.store import ROOTS
from tests.aggregates import factories as f
from tests.aggregates.test_depin_flows import flow
from tests.aggregates.test_depin_flows import supply as depin_supply
from tests.aggregates.test_migration import SMALL, history
from tests.aggregates.test_ops import sample
from tests.aggregates.test_x402 import payment
from tests.keyaudit import audit_keys


@pytest.fixture(scope="session")
def redis_url(tcp_redis_url: str) -> str:
    """MONITOR tells TCP clients apart (see `tests.keyaudit`)."""
    return tcp_redis_url


async def test_every_aggregate_script_declares_what_it_touches(
    redis: Redis, redis_url: str, keys: Keys, clock: ManualClock
) -> None:
    clock.advance(12 * 600)
    t = clock.now()
    store = AggregateStore(redis, keys, clock, AggregatesConfig(**SMALL))
    events = [
        *history(),
        sample(t - 30, processes=("a",), backlog=3, down=("rules",)),
        payment(1, t - 20, payer="0xa"), payment(2, t - 10, payer="0xb"),
        flow("emission", 1, t - 50, 10**9), flow("burn", 2, t - 40, 10**8, purpose="data"),
        depin_supply(3, t - 30, 5 * 10**17),
        f.block(13, "antpool"),
    ]
    async with audit_keys(redis_url, keys) as audit:
        await store.load()  # a first load recounts the block windows (the W event)
        await store.apply(events[:10])
        await store.apply_and_snapshot(events[10:], ["btc", "stablecoin", "depin"])
        await store.snapshot(sorted(ROOTS))
        await store.state_metrics()
    audit.assert_clean()
    ran = {call.sha for call in audit.scripts}
    for name, source in store._scripts.sources.items():
        assert audit.calls_of(source), f"the {name} script did not run"
    assert store._flows.sha in ran, "the DePIN flow script did not run"
    assert audit.calls_of(str(store._payments._apply.script))
    assert audit.calls_of(str(store._payments._window.script))
