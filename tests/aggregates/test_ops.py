"""The ``ops`` root from ``ops.sample`` events: idempotent and order-proof, trends over the
history window, processes that died, came back or are forgotten."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from convmon.monitor.clock import ManualClock
from convmon.monitor.events import (
    Event,
    OpsComponent,
    OpsGroup,
    OpsProcess,
    OpsRedisMemory,
    OpsSample,
    decode_event,
    encode_event,
)
from tests.aggregates.conftest import MakeStore
from tests.aggregates.factories import T0

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too


def sample(t: float, *, processes: tuple[str, ...] = (), backlog: int | None = None,
           behind_s: float | None = None, dead: int = 0, ttl_s: float = 25.0,
           down: tuple[str, ...] = (), up: tuple[str, ...] = ()) -> Event:
    groups = []
    if backlog is not None or behind_s is not None:
        groups.append(OpsGroup(stream="events", group="rules", pending=0, lag=backlog,
                               behind_s=behind_s or 0.0))
    payload = OpsSample(
        interval_s=15,
        processes=[OpsProcess(instance=p, roles=["rules"], ttl_s=ttl_s) for p in processes],
        groups=groups,
        dead_letters={"events": dead, "alerts": 0},
        components=[
            OpsComponent(instance="a", name=name, state="running" if ok else "backoff", up=ok,
                         since=0.0)  # a process clock far from the engine's: not used
            for names, ok in ((down, False), (up, True)) for name in names
        ],
    )
    return Event(id=f"ops:sample:{int(t * 1000)}", chain="convmon", source="ops/test",
                 observed_at=t, occurred_at=t, position=int(t * 1000), payload=payload)


async def ops_root(store: Any) -> dict[str, Any]:
    return dict((await store.snapshot({"ops"}))["ops"])


async def test_nothing_sampled_yet(make_store: MakeStore) -> None:
    ops = await ops_root(await make_store())
    assert ops == {"sampled_at": None, "sample_age_s": None, "interval_s": None,
                   "processes": {}, "components": {}, "groups": {}, "dead_letters": {},
                   "redis": {}, "redis_max_used_ratio": None}


async def test_a_sample_applies_once_and_a_late_one_does_not_win(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    newer, older = sample(T0 + 15, backlog=1), sample(T0, backlog=9)
    assert await store.apply([newer]) == [True]
    assert await store.apply([newer, older]) == [False, True]
    clock.advance(30)
    ops = await ops_root(store)
    assert ops["sampled_at"] == T0 + 15 and ops["sample_age_s"] == 15
    assert ops["groups"]["events/rules"]["backlog"] == 1


async def test_backlog_growth_counts_from_where_it_last_fell(make_store: MakeStore) -> None:
    store = await make_store()
    for k, backlog in enumerate([0, 5, 3, 4, 4, 8]):
        await store.apply([sample(T0 + 15 * k, backlog=backlog)])
    group = (await ops_root(store))["groups"]["events/rules"]
    assert (group["growing_for_s"], group["growth"]) == (45.0, 5.0)
    await store.apply([sample(T0 + 90, backlog=2)])
    group = (await ops_root(store))["groups"]["events/rules"]
    assert (group["growing_for_s"], group["growth"]) == (0.0, 0.0)


async def test_without_lag_growth_is_in_seconds_behind(make_store: MakeStore) -> None:
    store = await make_store()
    for k in range(4):
        await store.apply([sample(T0 + 15 * k, behind_s=15.0 * k)])
    group = (await ops_root(store))["groups"]["events/rules"]
    assert group["lag"] is None and group["backlog"] is None
    assert (group["growing_for_s"], group["growth"]) == (45.0, 45.0)


async def test_the_history_keeps_only_its_window(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store(ops_history_s=60)
    lengths = [0, 2, 2, 2, 2, 2]  # two dead letters at T0 + 30, then none
    for k, dead in enumerate(lengths):
        await store.apply([sample(T0 + 30 * k, dead=dead)])
    clock.advance(150)
    dead_letters = (await ops_root(store))["dead_letters"]
    assert dead_letters["events"] == {"length": 2, "added": 0}
    assert dead_letters["alerts"] == {"length": 0, "added": 0}
    await store.apply([sample(T0 + 180, dead=5)])
    assert (await ops_root(store))["dead_letters"]["events"] == {"length": 5, "added": 3}


async def test_a_process_that_comes_back_is_alive_and_a_lost_one_is_forgotten(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store(ops_forget_process_after_s=600)
    await store.apply([sample(T0, processes=("a", "b"))])
    await store.apply([sample(T0 + 60, processes=("a",))])
    clock.advance(60)
    procs = (await ops_root(store))["processes"]
    assert {k: v["state"] for k, v in procs.items()} == {"a": "alive", "b": "died"}
    assert procs["b"]["gone_for_s"] == 0 and procs["b"]["roles"] == ["rules"]
    await store.apply([sample(T0 + 120, processes=("a", "b"))])
    procs = (await ops_root(store))["processes"]
    assert procs["b"]["state"] == "alive" and procs["b"]["gone_for_s"] is None
    await store.apply([sample(T0 + 135, processes=("a",))])
    await store.apply([sample(T0 + 135 + 601, processes=("a",))])
    assert sorted((await ops_root(store))["processes"]) == ["a"]


async def test_a_component_is_down_since_the_first_sample_that_saw_it_down(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    await store.apply([sample(T0, down=("depin",), up=("bitcoin",))])
    await store.apply([sample(T0 + 15, down=("depin",), up=("bitcoin",))])
    clock.advance(100)
    components = (await ops_root(store))["components"]
    assert components["a/depin"]["down_for_s"] == 100
    assert components["a/bitcoin"]["down_for_s"] is None
    # A late sample changes nothing; back up, then down again: counted afresh.
    await store.apply([sample(T0 - 15, up=("depin", "bitcoin"))])
    assert (await ops_root(store))["components"]["a/depin"]["down_for_s"] == 100
    await store.apply([sample(T0 + 30, up=("depin", "bitcoin"))])
    await store.apply([sample(T0 + 45, down=("depin",), up=("bitcoin",))])
    assert (await ops_root(store))["components"]["a/depin"]["down_for_s"] == 55
    # Its process is gone, then returns with depin down: counted from its return.
    await store.apply([sample(T0 + 60)])
    await store.apply([sample(T0 + 90, down=("depin",))])
    assert (await ops_root(store))["components"]["a/depin"]["down_for_s"] == 10


async def test_a_process_that_said_it_was_stopping_stopped_however_long_it_took(
    make_store: MakeStore,
) -> None:
    store = await make_store()
    stopping = sample(T0, processes=("a",))
    assert isinstance(stopping.payload, OpsSample)
    payload = msgspec.structs.replace(
        stopping.payload, processes=[OpsProcess(instance="a", ttl_s=5.0, stopping=True)]
    )
    await store.apply([msgspec.structs.replace(stopping, payload=payload)])
    await store.apply([sample(T0 + 60)])
    assert (await ops_root(store))["processes"]["a"]["state"] == "stopped"


async def test_redis_memory_of_the_latest_sample_per_primary(make_store: MakeStore) -> None:
    store = await make_store()
    memory = [OpsRedisMemory(node="10.0.0.1:6379", used_memory=900, maxmemory=1000),
              OpsRedisMemory(node="10.0.0.2:6379", used_memory=300, maxmemory=1000),
              OpsRedisMemory(node="10.0.0.3:6379", used_memory=5000, maxmemory=0)]
    event = sample(T0)
    assert isinstance(event.payload, OpsSample)
    payload = msgspec.structs.replace(event.payload, redis=memory)
    await store.apply([msgspec.structs.replace(event, payload=payload)])
    ops = await ops_root(store)
    assert ops["redis"] == {
        "10.0.0.1:6379": {"node": "10.0.0.1:6379", "used_memory": 900, "maxmemory": 1000,
                          "used_ratio": 0.9},
        "10.0.0.2:6379": {"node": "10.0.0.2:6379", "used_memory": 300, "maxmemory": 1000,
                          "used_ratio": 0.3},
        # No maxmemory: nothing to be near.
        "10.0.0.3:6379": {"node": "10.0.0.3:6379", "used_memory": 5000, "maxmemory": 0,
                          "used_ratio": None},
    }
    assert ops["redis_max_used_ratio"] == 0.9
    # The next sample without memory (Redis refused INFO) leaves nothing to alert on.
    await store.apply([sample(T0 + 15)])
    ops = await ops_root(store)
    assert ops["redis"] == {} and ops["redis_max_used_ratio"] is None


async def test_a_sample_of_an_older_release_without_redis_memory_still_decodes(
    make_store: MakeStore,
) -> None:
    raw = msgspec.json.decode(encode_event(sample(T0, backlog=1)))
    del raw["payload"]["redis"]
    event = decode_event(msgspec.json.encode(raw))
    assert isinstance(event.payload, OpsSample) and event.payload.redis == []
    store = await make_store()
    assert await store.apply([event]) == [True]
    ops = await ops_root(store)
    assert ops["redis"] == {} and ops["groups"]["events/rules"]["backlog"] == 1
