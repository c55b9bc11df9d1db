"""The plugin registry: how the core finds collectors, the rule engine and receivers.

Every component, built-in or third-party, is a `Plugin` exposed under the entry-point
group ``convmon.plugins``. A plugin names its configuration section, validates it with its
own pydantic model, builds the long-running `Component`s for its role, and may contribute
gauges computed from Redis state at scrape time, a block of ``/api/v1/status``, and CLI
commands. Only the composition root (daemon and CLI) loads plugins; plugins never import
each other.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from pydantic import BaseModel

from convmon.monitor.clock import Clock
from convmon.monitor.keys import Keys

if TYPE_CHECKING:
    import typer
    from aiohttp import web
    from redis.asyncio import Redis

    from convmon.monitor.bus import EventBus
    from convmon.monitor.config import ConfigSource, CoreSettings
    from convmon.monitor.yamlfile import FileError

ENTRY_POINT_GROUP = "convmon.plugins"
Role = Literal["collectors", "rules", "alerts", "api"]
ROLES: tuple[Role, ...] = ("collectors", "rules", "alerts", "api")

log = logging.getLogger(__name__)


class Component(Protocol):
    """A long-running unit the supervisor runs as one task.

    ``run`` returns only when cancelled (then it must finish or release in-flight work and
    close what it opened) or raises on failure (the supervisor restarts it with backoff).
    A component that owns a collector's connection state exposes it as the attribute
    ``collector_health`` (a `CollectorHealth`): readiness, liveness and the supervisor's
    "disconnected on failure" follow it.
    """

    name: str

    async def run(self) -> None: ...


@dataclass
class Runtime:
    """What the composition root hands to every plugin: shared connections and settings.

    ``metrics`` is the process registry (counters of this process: errors, reconnects,
    latencies). Facts that must agree across replicas come from Redis state instead.
    """

    settings: CoreSettings
    redis: Redis
    keys: Keys
    bus: EventBus
    clock: Clock
    metrics: CollectorRegistry
    instance: str
    data_dir: Path
    extras: dict[str, Any] = field(default_factory=dict)
    """Composition-root extras (e.g. the demo's endpoints); plugins must not require them."""
    collector_healths: dict[str, Any] = field(default_factory=dict)
    """Collector name -> its `CollectorHealth` in this process (one per collector, shared
    by the collector's components)."""


StateMetrics = Callable[[Runtime, Any], Awaitable[Iterable[Metric]]]
StatusBlock = Callable[[Runtime, Any], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True)
class Plugin:
    """One pluggable part of convmon."""

    name: str
    role: Role
    section: tuple[str, ...]
    """Where its configuration lives, e.g. ``("collectors", "bitcoin")`` or ``("alerts",)``."""
    config_model: type[BaseModel]
    components: Callable[[Runtime, Any], Sequence[Component]]
    """Build the components to run (none when disabled in its config)."""
    state_metrics: StateMetrics | None = None
    """Gauges computed from Redis state at scrape time."""
    status: StatusBlock | None = None
    """A JSON-able block for ``/api/v1/status`` under the plugin's name."""
    cli: Callable[[typer.Typer], None] | None = None
    """Add commands or command groups to the ``convmon`` CLI."""
    http_routes: Callable[[Runtime, Any], Sequence[web.RouteDef]] | None = None
    """Extra aiohttp routes (under ``/api/v1/``), behind the API bearer token."""
    check: Callable[[Any, ConfigSource], Sequence[FileError]] | None = None
    """Extra validation for ``convmon check`` (e.g. rule files referenced by the config)."""
    description: str = ""


class PluginError(RuntimeError):
    """A plugin could not be loaded."""


def discover_plugins(names: Iterable[str] | None = None) -> list[Plugin]:
    """Load plugins from entry points (all, or only ``names``), sorted by name."""
    wanted = set(names) if names is not None else None
    found: list[Plugin] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if wanted is not None and ep.name not in wanted:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party plugin must name itself
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(obj, Plugin):
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) is not a convmon Plugin")
        found.append(obj)
    return sorted(found, key=lambda p: p.name)
