"""Collector health: the one way collectors report connection state, progress and errors.

In: calls from a collector (`connected`, `disconnected`, `progress`, `malformed`,
`error`). Out: the collector's status hash in Redis (what ``/readyz``, ``/api/v1/status``
and ``convmon status`` show, the same from every replica), a ``collector.status`` event on
every connect/disconnect transition (what absence rules such as "collector disconnected
for 5 minutes" watch), and process counters.

"Connected" in the status hash is what the collector last said; whether it is *up* is its
liveness key (`Keys.collector_live`), which has a TTL and is refreshed (`refresh_liveness`)
by the heartbeat of a process whose collector is connected and whose component is running.
A process that died or a task that stopped therefore reads as down within one TTL, even
though nobody cleared the flag. Error text is scrubbed of secret values before it is
stored, because library messages often carry the URL they failed on.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, Self

from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from convmon.monitor.bus import EventBus
from convmon.monitor.clock import Clock
from convmon.monitor.events import CollectorStatus, Event
from convmon.monitor.keys import Keys
from convmon.monitor.secrets import scrub

if TYPE_CHECKING:
    from convmon.monitor.plugins import Runtime

log = logging.getLogger(__name__)

# One set of counters per registry (a registry refuses a second metric of the same name).
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, tuple[Counter, Counter, Counter]] = (
    weakref.WeakKeyDictionary()
)


def _counters(registry: CollectorRegistry) -> tuple[Counter, Counter, Counter]:
    key = registry
    if key not in _METRICS:
        _METRICS[key] = (
            Counter(
                "convmon_collector_malformed_payloads",
                "Payloads from a source that could not be parsed (counted and skipped).",
                ["collector", "what"],
                registry=registry,
            ),
            Counter(
                "convmon_collector_errors",
                "Errors talking to a source (timeouts, HTTP errors, rate limits).",
                ["collector", "kind"],
                registry=registry,
            ),
            Counter(
                "convmon_collector_reconnects",
                "Reconnections to a source.",
                ["collector"],
                registry=registry,
            ),
        )
    return _METRICS[key]


_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class CollectorHealth:
    """Status reporter for one collector (``name`` such as ``bitcoin`` or ``depin``)."""

    def __init__(
        self,
        name: str,
        *,
        redis: Redis,
        keys: Keys,
        bus: EventBus,
        clock: Clock,
        registry: CollectorRegistry,
        source: str | None = None,
        instance: str = "",
        live_ttl_s: int = 30,
    ) -> None:
        self.name = name
        self.source = source or name
        self.instance = instance or "-"
        self.live_ttl_s = live_ttl_s
        """TTL of the liveness key set on connect, until the heartbeat refreshes it."""
        self.redis = redis
        self.keys = keys
        self.bus = bus
        self.clock = clock
        self._malformed, self._errors, self._reconnects = _counters(registry)
        self._connected: bool | None = None
        self._ever_connected = False
        self._release = redis.register_script(_RELEASE_LUA)

    @classmethod
    def for_runtime(cls, runtime: Runtime, name: str, source: str | None = None) -> Self:
        """The reporter for collector ``name`` wired to the runtime's Redis, bus, clock
        and metrics registry. Components of one collector share one reporter."""
        found = runtime.collector_healths.get(name)
        if isinstance(found, cls):
            return found
        health = cls(
            name, redis=runtime.redis, keys=runtime.keys, bus=runtime.bus, clock=runtime.clock,
            registry=runtime.metrics, source=source, instance=runtime.instance,
            live_ttl_s=runtime.settings.supervisor.heartbeat_ttl_s,
        )
        runtime.collector_healths[name] = health
        return health

    @property
    def is_connected(self) -> bool:
        return bool(self._connected)

    async def connected(self, detail: str = "") -> None:
        if self._ever_connected and not self._connected:
            self._reconnects.labels(self.name).inc()
            await self.redis.hincrby(self.keys.collector_status(self.name), "reconnects", 1)
        self._ever_connected = True
        await self._transition(True, detail)

    async def disconnected(self, detail: str = "") -> None:
        await self._transition(False, detail)

    async def withdraw_liveness(self) -> None:
        """Drop this process's claim that the collector is up (a clean shutdown)."""
        await self._release(keys=[self.keys.collector_live(self.name)], args=[self.instance])

    async def refresh_liveness(self, ttl_s: int) -> bool:
        """Extend this collector's liveness key while it is connected; returns whether it
        is. Called by the process heartbeat, only for components that are running."""
        if not self._connected:
            return False
        await self.redis.set(self.keys.collector_live(self.name), self.instance, ex=ttl_s)
        return True

    async def progress(self, position: int | str, event_time: float | None = None) -> None:
        """Record that the collector processed up to ``position`` (height, slot, block)."""
        now = self.clock.now()
        mapping: dict[Any, Any] = {
            "last_event_at": now,
            "last_position": str(position),
            "updated_at": now,
        }
        if event_time is not None:
            mapping["last_event_time"] = event_time
        await self.redis.hset(self.keys.collector_status(self.name), mapping=mapping)

    def malformed(self, what: str, detail: str = "") -> None:
        """Count a payload that was skipped because it could not be parsed."""
        self._malformed.labels(self.name, what).inc()
        log.warning(
            "malformed payload skipped",
            extra={"collector": self.name, "what": what, "detail": scrub(detail)[:300]},
        )

    async def error(self, kind: str, detail: str = "") -> None:
        self._errors.labels(self.name, kind).inc()
        await self.redis.hset(
            self.keys.collector_status(self.name),
            mapping={"last_error": scrub(f"{kind}: {detail}")[:500],
                     "last_error_at": self.clock.now()},
        )

    async def _transition(self, connected: bool, detail: str) -> None:
        changed = self._connected is not connected
        self._connected = connected
        detail = scrub(detail)
        now = self.clock.now()
        key = self.keys.collector_status(self.name)
        mapping: dict[Any, Any] = {
            "connected": int(connected),
            "detail": detail[:500],
            "updated_at": now,
        }
        if changed:
            mapping["since"] = now
        live = self.keys.collector_live(self.name)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=mapping)
            pipe.sadd(self.keys.collectors, self.name)
            if connected:
                pipe.set(live, self.instance, ex=self.live_ttl_s)
            await pipe.execute()
        if not connected:
            # Another replica may still be connected: only withdraw our own claim.
            await self._release(keys=[live], args=[self.instance])
        if changed:
            state = "up" if connected else "down"
            await self.bus.publish(
                [
                    Event(
                        id=f"collector:{self.name}:{state}:{int(now * 1000)}",
                        chain="convmon",
                        source=self.source,
                        observed_at=now,
                        occurred_at=now,
                        position=int(now * 1000),
                        payload=CollectorStatus(
                            collector=self.name, connected=connected, detail=detail[:200]
                        ),
                    )
                ]
            )
            log.info(
                "collector connected" if connected else "collector disconnected",
                extra={"collector": self.name, "detail": detail[:200]},
            )
