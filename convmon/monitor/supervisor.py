"""The supervisor: runs components, restarts them after any failure, stops them cleanly.

In: `Component`s (each an ``async run()`` that returns only when cancelled). Out: their
state (``starting``/``running``/``backoff``/``stopped``) for ``/api/v1/status``, the
process heartbeat and ``/metrics`` (``convmon_component_up``,
``convmon_component_restarts_total``), and a clean shutdown: on `stop`, every component
is cancelled and given ``shutdown_timeout_s`` to finish its in-flight work (consumers
finish and ack their batch) before being abandoned.

A component stops only when the daemon stops. Whatever else ends a run — an exception,
a return, a cancellation nobody asked for — is a failure: it is logged, counted, and the
component is restarted after a capped exponential backoff with full jitter (reset once it
has stayed up for a minute), so one flapping endpoint cannot spin the CPU and a fleet
restarting together does not stampede. Whether the daemon is stopping is this object's
own flag, never read from ``Task.cancelling()``: each run happens in a fresh task that
only `stop` cancels, so a library that leaves a task's cancellation count raised (Python
3.11's ``TaskGroup`` does) cannot make a failure look like a shutdown.

A component may own a collector's connection state (attribute ``collector_health``, a
`CollectorHealth`): when its run fails, that collector is reported disconnected at once,
because whatever connection the failed run held is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from convmon.monitor.backoff import Backoff
from convmon.monitor.config import SupervisorSettings
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component
from convmon.monitor.secrets import scrub

log = logging.getLogger(__name__)

State = Literal["starting", "running", "backoff", "stopped"]
STABLE_AFTER_S = 60.0
RECANCEL_AFTER_S = 1.0


@dataclass
class ComponentState:
    name: str
    role: str
    state: State = "starting"
    restarts: int = 0
    last_error: str = ""
    since: float = field(default_factory=time.time)

    @property
    def up(self) -> bool:
        return self.state == "running"


def collector_health_of(comp: Component) -> CollectorHealth | None:
    """The collector whose connection state ``comp`` owns, if any."""
    health = getattr(comp, "collector_health", None)
    return health if isinstance(health, CollectorHealth) else None


class Supervisor:
    def __init__(
        self, settings: SupervisorSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.states: dict[str, ComponentState] = {}
        self.components: dict[str, Component] = {}
        self._keepers: dict[str, asyncio.Task[None]] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._restarts = Counter(
            "convmon_component_restarts",
            "Component restarts after a failure.",
            ["component"],
            registry=registry,
        )
        if registry is not None:
            registry.register(_ComponentUp(self))

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def start(self, components: Sequence[tuple[str, Component]]) -> None:
        """Start ``(role, component)`` pairs; names must be unique."""
        for role, comp in components:
            if comp.name in self._keepers:
                raise ValueError(f"duplicate component name {comp.name!r}")
            self.states[comp.name] = ComponentState(comp.name, role)
            self.components[comp.name] = comp
            self._restarts.labels(comp.name).inc(0)
            self._keepers[comp.name] = asyncio.create_task(
                self._keep_running(comp), name=f"supervise:{comp.name}"
            )

    async def _keep_running(self, comp: Component) -> None:
        state = self.states[comp.name]
        backoff = Backoff(
            self.settings.restart_backoff_initial_s, self.settings.restart_backoff_max_s
        )
        while not self.stopping:
            state.state, state.since = "running", time.time()
            started = time.monotonic()
            run = asyncio.create_task(comp.run(), name=f"component:{comp.name}")
            self._runs[comp.name] = run
            await asyncio.wait({run})
            failure = _failure_text(run)
            if self.stopping:
                break
            state.last_error = scrub(failure)[:500]
            log.error(
                "component failed; restarting",
                extra={"component": comp.name, "error": state.last_error},
                exc_info=_exc_info(run),
            )
            await self._report_disconnected(comp, state.last_error)
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff.reset()
            state.restarts += 1
            self._restarts.labels(comp.name).inc()
            state.state, state.since = "backoff", time.time()
            await self._sleep_unless_stopping(backoff.next_delay())
        state.state, state.since = "stopped", time.time()

    async def _report_disconnected(self, comp: Component, error: str) -> None:
        health = collector_health_of(comp)
        if health is None:
            return
        try:
            await health.disconnected(f"component {comp.name} failed: {error}"[:200])
        except Exception as exc:  # Redis may be what failed; the state in memory is set
            log.warning(
                "could not record the collector as disconnected",
                extra={"collector": health.name, "error": scrub(repr(exc))[:300]},
            )

    async def _sleep_unless_stopping(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), delay)

    async def stop(self) -> None:
        """Cancel every component and wait (bounded) for them to finish in-flight work.

        A run still going a moment after its cancellation is cancelled again, and again:
        library code can swallow a cancellation that races with its own cleanup (seen with
        redis-py under load), and one swallowed request must not cost the whole budget."""
        self._stopping.set()
        for run in self._runs.values():
            run.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout_s
        pending: set[asyncio.Task[None]] = set(self._keepers.values())
        while pending and loop.time() < deadline:
            wait = min(RECANCEL_AFTER_S, deadline - loop.time())
            _done, pending = await asyncio.wait(pending, timeout=wait)
            for run in self._runs.values():
                if not run.done():
                    run.cancel()
        if pending:
            for task in pending:
                log.error(
                    "component did not stop in time; abandoning it",
                    extra={"component": task.get_name().removeprefix("supervise:")},
                )
                task.cancel()
        for st in self.states.values():
            st.state = "stopped"
        self._keepers.clear()
        self._runs.clear()

    def snapshot(self) -> list[dict[str, object]]:
        """State of every component, for the heartbeat and ``/api/v1/status``."""
        return [
            {"name": s.name, "role": s.role, "state": s.state, "up": s.up,
             "restarts": s.restarts, "last_error": s.last_error, "since": s.since}
            for s in self.states.values()
        ]

    def owned_healths(self) -> list[CollectorHealth]:
        """Collector reporters owned by this process's components."""
        found = (collector_health_of(c) for c in self.components.values())
        return list({id(h): h for h in found if h is not None}.values())

    def running_healths(self) -> list[CollectorHealth]:
        """Collector reporters owned by components that are running now."""
        out = []
        for name, comp in self.components.items():
            health = collector_health_of(comp)
            if health is not None and self.states[name].up:
                out.append(health)
        return out


class _ComponentUp(Collector):
    """``convmon_component_up{component,role}``: 1 while the component runs."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "convmon_component_up",
            "1 while the supervised component is running in this process, 0 while it is "
            "backing off after a failure or stopped.",
            labels=["component", "role"],
        )
        for st in self.supervisor.states.values():
            gauge.add_metric([st.name, st.role], 1.0 if st.up else 0.0)
        return [gauge]


def _failure_text(run: asyncio.Task[None]) -> str:
    if run.cancelled():
        return "cancelled without a shutdown"
    exc = run.exception()
    if exc is None:
        return "returned"
    return f"{type(exc).__name__}: {exc}"


def _exc_info(run: asyncio.Task[None]) -> BaseException | None:
    if run.cancelled():
        return None
    return run.exception()
