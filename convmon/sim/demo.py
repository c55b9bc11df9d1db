"""``convmon demo``: the real daemon, offline, against the project's local servers.

Each collector family contributes a demo source under the entry-point group
``convmon.demos``: an async factory ``start_demo(clock, speed)`` that starts its local
server(s) (Esplora, Solana RPC+WS, exchange feeds, anvil when available) and returns a
`DemoSource` whose ``run`` feeds a SIMULATED scenario on the accelerated clock, and whose
``config`` points the collector(s) at those servers. The demo then runs the daemon with an
embedded Redis in a temporary directory, the default rule pack and a console receiver
(plus any receivers from ``--config``), serves ``/metrics``, shows a live view, and prints
which alerts fired and resolved.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import tempfile
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

from redis.asyncio import Redis

from convmon.monitor.alerting import decode_transition
from convmon.monitor.app import LoadedConfig, load_config
from convmon.monitor.clock import Clock, ScaledClock
from convmon.monitor.daemon import run_daemon
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import ROLES, Runtime
from convmon.monitor.redisconn import open_redis

log = logging.getLogger(__name__)

DEMO_GROUP = "convmon.demos"


class DemoSource(Protocol):
    config: dict[str, Any]

    async def run(self) -> None: ...

    async def close(self) -> None: ...


DemoFactory = Callable[[Clock, float], Awaitable[DemoSource | None]]


@dataclass
class DemoResult:
    transitions: list[dict[str, Any]] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        tally: Tally[tuple[str, str]] = Tally(
            (t["labels"].get("alertname", t["rule"]), t["state"]) for t in self.transitions
        )
        by_alert: dict[str, dict[str, int]] = {}
        for (name, state), n in sorted(tally.items()):
            by_alert.setdefault(name, {})[state] = n
        return {"sources": self.sources, "alerts": by_alert}


def discover_demos() -> dict[str, DemoFactory]:
    """Demo sources by name; one that fails to import is reported and left out."""
    found: dict[str, DemoFactory] = {}
    for ep in entry_points(group=DEMO_GROUP):
        try:
            found[ep.name] = ep.load()
        except Exception as exc:
            log.warning("demo source failed to load", extra={"source": ep.name, "error": str(exc)})
    return found


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    cur = data
    for part in path[:-1]:
        cur = cur.setdefault(part, {})
    existing = cur.get(path[-1])
    if isinstance(existing, dict) and isinstance(value, dict):
        existing.update(value)
    else:
        cur[path[-1]] = value


def demo_overrides(
    config: LoadedConfig, sources: dict[str, DemoSource], data_dir: Path, port: int | None,
    speed: float = 1.0,
) -> dict[str, Any]:
    """Configuration for the demo run: collectors at the local servers, the others off."""
    data: dict[str, Any] = {
        "data_dir": str(data_dir),
        "redis": {"url": None, "data_dir": str(data_dir / "redis")},
        **({"http": {"port": port}} if port is not None else {}),
        # Self-monitoring samples every 15 wall-clock seconds, whatever the demo's speed.
        "supervisor": {"ops_sample_interval_s": min(86400.0, 15.0 * max(1.0, speed))},
    }
    sections: dict[str, Any] = {}
    plugin_names = {p.name for p in config.plugins}
    for name, source in sources.items():
        if name in plugin_names:
            sections[name] = source.config
        else:
            sections.update(source.config)
    for plugin in config.plugins:
        if plugin.role == "collectors":
            _set(data, plugin.section, sections.get(plugin.name, {"enabled": False}))
        elif plugin.name in sections:
            # e.g. the compressed payout cadences of the simulated DePIN networks
            _set(data, plugin.section, sections[plugin.name])
    # A price is fresh for a few wall-clock seconds, whatever the speed: at 1200x the default
    # ten minutes would be half a second, and one stall of a loaded machine would blank it.
    _set(data, ("rules", "aggregates"), {"price_staleness_s": max(600.0, 3.0 * speed)})
    alerts = config.source.data.get("alerts") or {}
    receivers = alerts.get("receivers") or []
    if not any(r.get("name") == "console" for r in receivers if isinstance(r, dict)):
        data["alerts"] = {"demo_console": True}
    return data


async def run_demo(
    config_path: Path | None,
    *,
    speed: float,
    duration: float,
    port: int | None,
    live: bool,
    observer: Callable[[Runtime, asyncio.Event], Awaitable[None]] | None = None,
) -> DemoResult:
    """Run the demo for ``duration`` wall-clock seconds; returns the alert transitions.

    ``observer(runtime, ending)`` runs beside the demo from the start (e.g. a Prometheus
    scraping ``/metrics``); ``ending`` is set when the duration is over, and the daemon
    stops once the observer returns.
    """
    base = load_config(config_path)
    clock = ScaledClock(speed)
    result = DemoResult()
    sources: dict[str, DemoSource] = {}
    for name, factory in sorted(discover_demos().items()):
        try:
            source = await factory(clock, speed)
        except Exception as exc:
            log.warning("demo source unavailable", extra={"source": name, "error": str(exc)})
            continue
        if source is not None:
            sources[name] = source
            result.sources.append(name)
    feeders: list[asyncio.Task[None]] = []
    with tempfile.TemporaryDirectory(prefix="convmon-demo-") as tmp:
        overrides = demo_overrides(base, sources, Path(tmp), port, speed)
        config = load_config(config_path, overrides=overrides)
        # The demo holds the embedded Redis itself, so it outlives the daemon: the summary
        # reads the alerts stream after the daemon stopped, and the server stops last.
        async with open_redis(
            config.core.redis, config.core.data_dir, start_embedded=True
        ) as redis:
            stop = asyncio.Event()
            started = asyncio.Event()
            extras: dict[str, Any] = {"demo": True}
            daemon = asyncio.create_task(
                run_daemon(config, ROLES, clock=clock, stop=stop, extras=extras,
                           started=started, demo=True)
            )
            try:
                await asyncio.wait_for(started.wait(), 60)
                rt: Runtime = extras["runtime"]
                feeders = [asyncio.create_task(s.run(), name=f"demo:{n}")
                           for n, s in sources.items()]
                view = asyncio.create_task(_view(rt)) if live else None
                ending = asyncio.Event()
                watcher: asyncio.Future[None] | None = (
                    asyncio.ensure_future(observer(rt, ending)) if observer else None
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(daemon), duration)
                ending.set()
                if watcher is not None:
                    await watcher
                if view is not None:
                    view.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await view
            finally:
                for task in feeders:
                    task.cancel()
                await asyncio.gather(*feeders, return_exceptions=True)
                stop.set()
                await daemon
                for source in sources.values():
                    await source.close()
            result.transitions = await _transitions(redis, Keys(config.core.redis.prefix))
    return result


async def _transitions(redis: Redis, keys: Keys) -> list[dict[str, Any]]:
    out = []
    entries: Any = await redis.xrange(keys.alerts)
    for _eid, fields in entries:
        try:
            t = decode_transition(fields[b"data"])
        except Exception:
            continue
        out.append({"rule": t.rule, "state": t.state, "labels": t.labels,
                    "at": t.evaluated_at})
    return out


async def _view(rt: Runtime) -> None:
    """The live terminal view (rich)."""
    from convmon.sim.demoview import DemoView

    await DemoView(rt).run()


def print_summary(result: DemoResult, as_json: bool) -> None:
    summary = result.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    print(f"demo sources: {', '.join(result.sources) or 'none'}")
    for name, states in summary["alerts"].items():
        parts = ", ".join(f"{s} {n}" for s, n in states.items())
        print(f"  {name}: {parts}")
