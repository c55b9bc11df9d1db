"""A producer and a consumer group running through a fault: the shared harness of the
failover tests (Cluster and Sentinel).

The producer is a collector: every batch is retried until `publish` returns (at least
once). The consumer is a rules worker under the supervisor: restarted whenever it fails.
``fault`` runs once a third of the events has been handled; the run ends when every
event has been handled. Returns the ids the handler saw and how many deliveries it got.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from convmon.monitor.bus import Delivery, EventBus
from convmon.monitor.events import CollectorStatus, Event
from tests.waiting import eventually


def status_event(i: int) -> Event:
    return Event(
        id=f"test:status:{i}", chain="convmon", source="test", observed_at=1000.0 + i,
        occurred_at=1000.0 + i, position=i,
        payload=CollectorStatus(collector="test", connected=True, detail=str(i)),
    )


async def run_through_fault(
    bus: EventBus, total: int, fault: Callable[[], Awaitable[None]], batch: int = 20
) -> tuple[set[str], int]:
    handled: set[str] = set()
    deliveries = 0
    published = asyncio.Event()

    async def handle(entries: Sequence[Delivery[Event]]) -> None:
        nonlocal deliveries
        deliveries += len(entries)
        handled.update(d.value.id for d in entries)

    async def produce() -> None:
        for start in range(0, total, batch):
            events = [status_event(i) for i in range(start, start + batch)]
            while True:
                try:
                    await bus.publish(events, checkpoint=("test", str(start + batch - 1)))
                    break
                except Exception:
                    await asyncio.sleep(0.05)
        published.set()

    async def consume() -> None:
        while True:
            try:
                await bus.consumer("rules", "w1", handle).run()
            except Exception:
                await asyncio.sleep(0.05)

    tasks = [asyncio.create_task(produce()), asyncio.create_task(consume())]
    try:
        await eventually(lambda: len(handled) >= total // 3, "a third of the stream consumed")
        await fault()
        await eventually(published.is_set, "every batch published")
        await eventually(lambda: len(handled) >= total, "every event handled")
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return handled, deliveries
