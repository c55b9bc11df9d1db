"""The supervisor: runs components as tasks, restarts failed ones, stops them cleanly.

In: `Component`s (each an ``async run()`` that returns only when cancelled). Out: their
state (``starting``/``running``/``backoff``/``stopped``/``failed``) for ``/api/v1/status``
and the heartbeat, and a clean shutdown: on `stop`, every task is cancelled and given
``shutdown_timeout_s`` to finish its in-flight work (consumers finish and ack their
batch) before being abandoned.

A component that raises is restarted after a capped exponential backoff with full jitter,
reset once it has stayed up for a minute, so one flapping endpoint cannot spin the CPU and
a fleet restarting together does not stampede.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from prometheus_client import CollectorRegistry, Counter

from convmon.monitor.backoff import Backoff
from convmon.monitor.cancel import cancel_requested
from convmon.monitor.config import SupervisorSettings
from convmon.monitor.plugins import Component

log = logging.getLogger(__name__)

State = Literal["starting", "running", "backoff", "stopped"]
STABLE_AFTER_S = 60.0


@dataclass
class ComponentState:
    name: str
    role: str
    state: State = "starting"
    restarts: int = 0
    last_error: str = ""
    since: float = field(default_factory=time.time)


class Supervisor:
    def __init__(
        self, settings: SupervisorSettings, registry: CollectorRegistry | None = None
    ) -> None:
        self.settings = settings
        self.states: dict[str, ComponentState] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._restarts = Counter(
            "convmon_component_restarts",
            "Component restarts after a failure.",
            ["component"],
            registry=registry,
        )

    def start(self, components: Sequence[tuple[str, Component]]) -> None:
        """Start ``(role, component)`` pairs; names must be unique."""
        for role, comp in components:
            if comp.name in self._tasks:
                raise ValueError(f"duplicate component name {comp.name!r}")
            self.states[comp.name] = ComponentState(comp.name, role)
            self._tasks[comp.name] = asyncio.create_task(
                self._keep_running(comp), name=f"component:{comp.name}"
            )

    async def _keep_running(self, comp: Component) -> None:
        state = self.states[comp.name]
        backoff = Backoff(
            self.settings.restart_backoff_initial_s, self.settings.restart_backoff_max_s
        )
        while True:
            state.state, state.since = "running", time.time()
            started = time.monotonic()
            try:
                await comp.run()
                log.warning("component returned; restarting", extra={"component": comp.name})
                state.last_error = "returned"
            except asyncio.CancelledError:
                state.state, state.since = "stopped", time.time()
                raise
            except Exception as exc:
                if self._stopping or cancel_requested():
                    # A library turned our cancellation into another error (asyncio's
                    # timeouts can do that on 3.11): we are stopping, not failing.
                    state.state, state.since = "stopped", time.time()
                    return
                state.last_error = f"{type(exc).__name__}: {exc}"[:500]
                log.error(
                    "component failed",
                    extra={"component": comp.name, "error": state.last_error},
                    exc_info=True,
                )
            if self._stopping:
                state.state, state.since = "stopped", time.time()
                return
            if time.monotonic() - started > STABLE_AFTER_S:
                backoff.reset()
            state.restarts += 1
            self._restarts.labels(comp.name).inc()
            state.state, state.since = "backoff", time.time()
            await backoff.wait()

    async def stop(self) -> None:
        """Cancel every component and wait (bounded) for them to finish in-flight work."""
        self._stopping = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout_s)
            for task in pending:
                log.error(
                    "component did not stop in time; abandoning it",
                    extra={"component": task.get_name()},
                )
        for st in self.states.values():
            st.state = "stopped"
        self._tasks.clear()

    def snapshot(self) -> list[dict[str, object]]:
        """State of every component, for the heartbeat and ``/api/v1/status``."""
        return [
            {"name": s.name, "role": s.role, "state": s.state, "restarts": s.restarts,
             "last_error": s.last_error, "since": s.since}
            for s in self.states.values()
        ]
