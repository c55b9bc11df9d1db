"""A component stops only when the daemon stops: every other end of a run is a failure
that is logged, counted and restarted, and liveness follows at once."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.monitor.bus import EventBus
from convmon.monitor.clock import SystemClock
from convmon.monitor.config import SupervisorSettings
from convmon.monitor.events import CollectorStatus, decode_event
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.monitor.statemetrics import collector_statuses
from convmon.monitor.supervisor import Supervisor
from convmon.monitor.tasks import TaskEnded, run_together
from tests.waiting import eventually

FAST = SupervisorSettings(
    restart_backoff_initial_s=0.01, restart_backoff_max_s=0.05, shutdown_timeout_s=5
)


class TaskGroupChildFails:
    """A component whose TaskGroup child fails after the ``async with`` body finished:
    on Python 3.11 that leaves the component's task with ``cancelling() == 1``."""

    name = "taskgroup"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1

        async def child() -> None:
            await asyncio.sleep(0.01)
            raise ConnectionError("redis went away")

        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())


class Returns:
    name = "returns"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1


class CancelledFromElsewhere:
    """A library cancelled the task running the component; nobody asked the daemon to stop."""

    name = "cancelled"

    def __init__(self) -> None:
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        await asyncio.sleep(1)


def state(sup: Supervisor, name: str) -> dict[str, object]:
    return next(s for s in sup.snapshot() if s["name"] == name)


@pytest.mark.parametrize("make", [TaskGroupChildFails, Returns, CancelledFromElsewhere])
async def test_every_end_of_a_run_that_is_not_a_shutdown_restarts(make: type) -> None:
    sup = Supervisor(FAST, CollectorRegistry())
    comp = make()
    sup.start([("collectors", comp)])
    try:
        await eventually(lambda: comp.runs >= 3, f"{comp.name} restarted twice")
        st = state(sup, comp.name)
        assert int(str(st["restarts"])) >= 2
        assert st["last_error"]
        assert st["state"] in ("running", "backoff")
    finally:
        await sup.stop()
    assert state(sup, comp.name)["state"] == "stopped"


async def test_component_metrics_exist_from_start_and_follow_state() -> None:
    registry = CollectorRegistry()
    sup = Supervisor(FAST, registry)

    class Idle:
        name = "idle"

        async def run(self) -> None:
            await asyncio.Event().wait()

    sup.start([("rules", Idle())])
    try:
        assert registry.get_sample_value(
            "convmon_component_restarts_total", {"component": "idle"}
        ) == 0.0
        await eventually(
            lambda: registry.get_sample_value(
                "convmon_component_up", {"component": "idle", "role": "rules"}
            ) == 1.0,
            "component up",
        )
    finally:
        await sup.stop()
    assert registry.get_sample_value(
        "convmon_component_up", {"component": "idle", "role": "rules"}
    ) == 0.0


class ConnectedThenFails:
    """Owns a collector's connection state, connects, then fails."""

    name = "owner"

    def __init__(self, health: CollectorHealth) -> None:
        self.collector_health = health
        self.fail = asyncio.Event()
        self.runs = 0

    async def run(self) -> None:
        self.runs += 1
        await self.collector_health.connected("subscribed")
        await self.fail.wait()
        self.fail.clear()
        raise ConnectionError("websocket closed")


async def test_a_failed_owner_reads_as_down_at_once(
    redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    health = CollectorHealth(
        "probe", redis=redis, keys=keys, bus=bus, clock=SystemClock(), registry=registry,
        instance="one", live_ttl_s=600,
    )
    sup = Supervisor(SupervisorSettings(restart_backoff_initial_s=30, shutdown_timeout_s=5))
    comp = ConnectedThenFails(health)
    sup.start([("collectors", comp)])
    try:
        async def up() -> str:
            return (await collector_statuses(redis, keys)).get("probe", {}).get("up", "")

        await eventually(lambda: _equals(up(), "1"), "collector up")
        comp.fail.set()
        # The liveness key had a 10-minute TTL: only the supervisor's report can clear it.
        await eventually(lambda: _equals(up(), "0"), "collector down after its owner failed")
        assert state(sup, "owner")["state"] == "backoff"
        events = [decode_event(f[b"data"]) for _, f in await redis.xrange(keys.events)]
        statuses = [e.payload for e in events if isinstance(e.payload, CollectorStatus)]
        assert [s.connected for s in statuses] == [True, False]
        assert "websocket closed" in statuses[-1].detail
    finally:
        await sup.stop()


async def _equals(value: object, expected: object) -> bool:
    return (await value if asyncio.iscoroutine(value) else value) == expected


async def test_run_together_raises_the_first_failure_and_cancels_the_rest() -> None:
    cancelled: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.append(name)

    async def fails() -> None:
        await asyncio.sleep(0.01)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await run_together({"a": forever("a"), "b": fails(), "c": forever("c")})
    assert sorted(cancelled) == ["a", "c"]
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_run_together_treats_a_return_as_an_end() -> None:
    async def quick() -> None:
        return None

    async def forever() -> None:
        await asyncio.Event().wait()

    with pytest.raises(TaskEnded, match="quick returned"):
        await run_together({"quick": quick(), "forever": forever()})


async def test_run_together_lets_siblings_finish_when_cancelled() -> None:
    finished: list[str] = []

    async def careful() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # in-flight work completes
            finished.append("careful")
            raise

    task = asyncio.create_task(run_together({"careful": careful()}))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["careful"]


class SwallowsFirstCancel:
    """A loop whose library swallows the first cancellation (as redis-py can under load)
    and would otherwise go on forever."""

    name = "swallows-once"

    def __init__(self) -> None:
        self.swallowed = 0
        self.started = False
        self.finished = False

    async def run(self) -> None:
        self.started = True
        try:
            while True:
                try:
                    await asyncio.sleep(0.01)
                except asyncio.CancelledError:
                    if self.swallowed:
                        raise
                    self.swallowed += 1
        finally:
            self.finished = True


async def test_a_swallowed_cancellation_does_not_cost_the_shutdown_budget() -> None:
    sup = Supervisor(SupervisorSettings(shutdown_timeout_s=120), CollectorRegistry())
    comp = SwallowsFirstCancel()
    sup.start([("rules", comp)])
    await eventually(lambda: state(sup, comp.name)["state"] == "running", "running")
    await sup.stop()
    assert comp.swallowed == 1 and comp.finished  # stopped, not abandoned


async def test_run_together_passes_a_repeated_cancellation_on_to_siblings() -> None:
    comp = SwallowsFirstCancel()

    async def sibling() -> None:
        await asyncio.Event().wait()

    sup = Supervisor(SupervisorSettings(shutdown_timeout_s=120), CollectorRegistry())

    class Together:
        name = "together"

        async def run(self) -> None:
            await run_together({"swallower": comp.run(), "sibling": sibling()})

    sup.start([("alerts", Together())])
    await eventually(lambda: state(sup, "together")["state"] == "running", "running")
    await eventually(lambda: comp.started, "the swallowing loop started")
    await sup.stop()
    assert comp.finished
