"""The rules role's components: the event consumer and the evaluation timer.

`RuleConsumer` reads ``keys.events`` in the consumer group ``rules``: per batch the
aggregate store applies the events (idempotently) and the engine evaluates the event
rules and the window/absence rules those kinds concern. `RuleTimer` evaluates every
window and absence rule, and moves event alerts along their timers, every
``evaluation_interval_s``. Both are safe to run on any number of processes: all state is
in Redis and every write is a compare-and-set (see `convmon.rules.state`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from convmon.monitor.bus import Delivery, EventBus
from convmon.monitor.clock import Clock
from convmon.monitor.events import Event
from convmon.rules.engine import RuleEngine

log = logging.getLogger(__name__)

CONSUMER_GROUP = "rules"

EngineFactory = Callable[[], Awaitable[RuleEngine]]


class SharedEngine:
    """Builds the engine once (loading Lua scripts is async) for both components."""

    def __init__(self, factory: EngineFactory) -> None:
        self._factory = factory
        self._engine: RuleEngine | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> RuleEngine:
        async with self._lock:
            if self._engine is None:
                self._engine = await self._factory()
            return self._engine


class RuleConsumer:
    """Consumes the event stream and evaluates rules per batch."""

    def __init__(self, bus: EventBus, instance: str, engine: SharedEngine) -> None:
        self.name = "rules.consumer"
        self.bus = bus
        self.instance = instance
        self.engine = engine

    async def run(self) -> None:
        engine = await self.engine.get()

        async def handle(batch: Sequence[Delivery[Event]]) -> None:
            await engine.handle([d.value for d in batch])

        await self.bus.consumer(CONSUMER_GROUP, self.instance, handle).run()


class RuleTimer:
    """Evaluates window and absence rules every ``interval_s`` of the injected clock."""

    def __init__(self, clock: Clock, interval_s: float, engine: SharedEngine) -> None:
        self.name = "rules.timer"
        self.clock = clock
        self.interval_s = interval_s
        self.engine = engine

    async def run(self) -> None:
        engine = await self.engine.get()
        while True:
            await engine.evaluate_timer()
            await self.clock.sleep(self.interval_s)
