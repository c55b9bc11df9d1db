"""The daemon: the composition root that wires plugins into running components.

``convmon run --role all|collectors|rules|alerts|api`` loads the configuration, opens
Redis (embedded if no URL), builds each plugin's components for the selected roles, adds
the HTTP server (role ``api``) and a heartbeat, runs them under the `Supervisor`, and on
SIGTERM/SIGINT stops them cleanly within ``supervisor.shutdown_timeout_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector

from convmon import __version__
from convmon.monitor import runfile
from convmon.monitor.app import LoadedConfig, open_runtime
from convmon.monitor.buslayout import LayoutMismatch, ensure_layout
from convmon.monitor.clock import Clock
from convmon.monitor.http import HttpServer, StateSource, StatusSource
from convmon.monitor.keymigration import migrate_legacy_keys
from convmon.monitor.plugins import ROLES, Component, Plugin, Role, Runtime
from convmon.monitor.redisconn import RedisWaitAborted, embedded_dir
from convmon.monitor.selfwatch import OpsSampler
from convmon.monitor.supervisor import Supervisor, collector_health_of

log = logging.getLogger(__name__)


class Heartbeat:
    """Writes this process's heartbeat hash with a TTL, so dead processes vanish. On a
    clean stop the hash is marked ``stopping`` and left to expire."""

    name = "heartbeat"

    def __init__(self, rt: Runtime, roles: Collection[str], supervisor: Supervisor) -> None:
        self.rt = rt
        self.roles = roles
        self.supervisor = supervisor
        self.started_at = rt.clock.now()

    async def beat(self) -> None:
        """Write this process's heartbeat and extend the liveness of every collector that
        a running component holds connected (the others expire within one TTL)."""
        ttl = self.rt.settings.supervisor.heartbeat_ttl_s
        key = self.rt.keys.heartbeat(self.rt.instance)
        async with self.rt.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    "instance": self.rt.instance,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "version": __version__,
                    "roles": ",".join(sorted(self.roles)),
                    "started_at": self.started_at,
                    "updated_at": self.rt.clock.now(),
                    # Readers elsewhere compute this process's "now" (the demo's clock
                    # runs fast) as updated_at + (their wall time - wall_at) * clock_rate.
                    "wall_at": time.time(),
                    "clock_rate": float(getattr(self.rt.clock, "speed", 1.0)),
                    "components": json.dumps(self.supervisor.snapshot(), default=str),
                },
            )
            pipe.expire(key, ttl)
            await pipe.execute()
        for health in self.supervisor.running_healths():
            await health.refresh_liveness(ttl)

    async def run(self) -> None:
        interval = self.rt.settings.supervisor.heartbeat_ttl_s / 3
        try:
            while True:
                await self.beat()
                await asyncio.sleep(interval)
        except asyncio.CancelledError:
            # Stopping, not dying: the mark stays until the TTL ends, so whoever samples
            # process state meanwhile tells a clean stop from a crash.
            key = self.rt.keys.heartbeat(self.rt.instance)
            await self.rt.redis.hset(
                key, mapping={"stopping": 1, "updated_at": self.rt.clock.now()}
            )
            for health in self.supervisor.owned_healths():
                await health.withdraw_liveness()
            raise


def select_plugins(config: LoadedConfig, roles: Collection[Role]) -> list[Plugin]:
    return [p for p in config.plugins if p.role in roles]


def build_components(
    rt: Runtime, config: LoadedConfig, roles: Collection[Role], supervisor: Supervisor
) -> tuple[list[tuple[str, Component]], HttpServer | None]:
    comps: list[tuple[str, Component]] = []
    for plugin in select_plugins(config, roles):
        built = list(plugin.components(rt, config.section(plugin.name)))
        comps.extend((plugin.role, c) for c in built)
    owned = [h for _, c in comps if (h := collector_health_of(c)) is not None]
    local_collectors = sorted({h.name for h in owned})
    http: HttpServer | None = None
    if "api" in roles and config.core.http.enabled:
        state: list[tuple[str, StateSource]] = []
        status: list[tuple[str, StatusSource]] = []
        routes: list[Any] = []
        for plugin in config.plugins:
            section = config.section(plugin.name)
            if plugin.state_metrics is not None:
                state.append((plugin.name, _bind_state(plugin, rt, section)))
            if plugin.status is not None:
                status.append((plugin.name, _bind_status(plugin, rt, section)))
            if plugin.http_routes is not None:
                routes.extend(plugin.http_routes(rt, section))
        http = HttpServer(
            rt,
            config.core.http,
            state_sources=state,
            status_sources=status,
            routes=routes,
            local_collectors=local_collectors,
            components=supervisor.snapshot,
        )
        comps.append(("api", http))
    comps.append(("core", Heartbeat(rt, roles, supervisor)))
    comps.append(("core", OpsSampler(rt, rt.settings.supervisor.ops_sample_interval_s)))
    return comps, http


def _bind_state(plugin: Plugin, rt: Runtime, section: Any) -> StateSource:
    fn = plugin.state_metrics
    assert fn is not None

    async def source() -> Any:
        return await fn(rt, section)

    return source


def _bind_status(plugin: Plugin, rt: Runtime, section: Any) -> StatusSource:
    fn = plugin.status
    assert fn is not None

    async def source() -> dict[str, Any]:
        return dict(await fn(rt, section))

    return source


async def run_daemon(
    config: LoadedConfig,
    roles: Collection[Role] = ROLES,
    *,
    clock: Clock | None = None,
    stop: asyncio.Event | None = None,
    extras: dict[str, Any] | None = None,
    install_signals: bool = True,
    started: asyncio.Event | None = None,
    demo: bool = False,
) -> int:
    """Run until ``stop`` is set or SIGTERM/SIGINT arrives. Returns the exit code.

    Raises `StartupError` when the HTTP address is in use or the ``bus`` settings are not
    the layout this Redis holds (`convmon.monitor.buslayout`), and `DataDirInUse` when
    another daemon runs on the same data dir: all are errors at start (the CLI exits 2),
    never a component restarting forever."""
    stop = stop or asyncio.Event()
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    loop = asyncio.get_running_loop()
    if install_signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    try:
        async with open_runtime(
            config, clock=clock, registry=registry, extras=extras, wait_until=stop,
            start_embedded=True,
        ) as rt:
            await migrate_legacy_keys(rt.redis, rt.keys)
            try:
                await ensure_layout(rt.redis, rt.keys, config.core.bus, config.source)
            except LayoutMismatch as exc:
                raise StartupError(str(exc)) from None
            await _serve(rt, config, roles, registry, stop, started=started, extras=extras,
                         demo=demo)
    except RedisWaitAborted:
        log.info("stopped before Redis answered")
    finally:
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
    log.info("convmon stopped")
    return 0


async def _serve(
    rt: Runtime,
    config: LoadedConfig,
    roles: Collection[Role],
    registry: CollectorRegistry,
    stop: asyncio.Event,
    *,
    started: asyncio.Event | None,
    extras: dict[str, Any] | None,
    demo: bool,
) -> None:
    supervisor = Supervisor(config.core.supervisor, registry)
    comps, http = build_components(rt, config, roles, supervisor)
    rt.extras["http"] = http
    if extras is not None:
        extras["runtime"] = rt
    if http is not None:
        try:
            await http.bind()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {config.core.http.host}:{config.core.http.port}: "
                f"{exc.strerror or exc} (is another convmon running? set http.port)"
            ) from None
    announced = _announce(config, rt, http, demo) if config.core.redis.url is None else None
    try:
        supervisor.start(comps)
        log.info(
            "convmon started",
            extra={"instance": rt.instance, "roles": sorted(roles),
                   "components": [c.name for _, c in comps]},
        )
        if started is not None:
            started.set()
        await stop.wait()
        log.info("shutting down", extra={"instance": rt.instance})
        await supervisor.stop()
    finally:
        if announced is not None:
            runfile.withdraw(announced)


def _announce(config: LoadedConfig, rt: Runtime, http: HttpServer | None, demo: bool) -> Path:
    """Tell CLI commands where this daemon on embedded Redis is (see `runfile`)."""
    address = f"{config.core.http.host}:{http.port}" if http is not None else ""
    return runfile.announce(runfile.RunRecord(
        pid=os.getpid(), instance=rt.instance, data_dir=str(rt.data_dir),
        redis_dir=str(embedded_dir(config.core.redis, rt.data_dir)),
        prefix=rt.keys.prefix, http=address, demo=demo, started_at=time.time(),
    ), config.core.run_dir)


class StartupError(RuntimeError):
    """The daemon cannot start as configured (e.g. its HTTP address is in use)."""
