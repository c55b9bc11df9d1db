"""Composition root helpers: load the whole configuration (core + plugins) and open a
`Runtime` (Redis, bus, clock, metrics). Used by the daemon, the CLI and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import BaseModel
from redis.asyncio import Redis

from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.clock import Clock, SystemClock
from convmon.monitor.config import (
    ConfigSource,
    CoreSettings,
    RedisSettings,
    load_core,
    read_config_source,
)
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Plugin, Runtime, discover_plugins
from convmon.monitor.redisconn import (
    EmbeddedRedis,
    NoDaemonRunning,
    answers,
    embedded_dir,
    open_redis,
)
from convmon.monitor.runfile import find_running
from convmon.monitor.secrets import remember_all
from convmon.monitor.statemetrics import heartbeats
from convmon.monitor.yamlfile import FileError, FileErrors, dig, validate_model

log = logging.getLogger(__name__)


@dataclass
class LoadedConfig:
    """Validated configuration: the core settings and each plugin's section model."""

    source: ConfigSource
    core: CoreSettings
    plugins: list[Plugin]
    sections: dict[str, BaseModel] = field(default_factory=dict)

    def section(self, plugin_name: str) -> Any:
        return self.sections[plugin_name]

    def plugin(self, name: str) -> Plugin:
        for p in self.plugins:
            if p.name == name:
                return p
        raise KeyError(name)


def load_config(
    path: str | Path | None,
    environ: dict[str, str] | None = None,
    plugins: Sequence[Plugin] | None = None,
    overrides: Mapping[str, Any] | None = None,
    deep: bool = True,
) -> LoadedConfig:
    """Read and validate everything; raises `FileErrors` listing every problem found.

    ``overrides`` (used by the demo) are merged over the file and the environment.
    ``deep`` also runs the plugins' own checks (rule files load, secrets resolve): what
    ``run`` and ``check`` need, and commands that only read state can skip.
    """
    source = read_config_source(path, environ)
    if overrides:
        _deep_merge(source.data, overrides)
    errors: list[FileError] = []
    core: CoreSettings | None = None
    try:
        core = load_core(source)
    except FileErrors as exc:
        errors.extend(exc.errors)
    found = list(plugins) if plugins is not None else discover_plugins()
    loaded = LoadedConfig(source=source, core=core or CoreSettings(), plugins=found)
    known_collectors = {p.section[1] for p in found if p.section[:1] == ("collectors",)}
    for name in sorted(dig(source.data, ("collectors",)) or {}):
        if name not in known_collectors:
            errors.append(source.error(("collectors", name), "unknown collector"))
    for plugin in found:
        try:
            loaded.sections[plugin.name] = validate_model(
                plugin.config_model, dig(source.data, plugin.section), source, plugin.section
            )
        except FileErrors as exc:
            errors.extend(exc.errors)
            continue
        if deep and plugin.check is not None:
            errors.extend(plugin.check(loaded.sections[plugin.name], source))
    if errors:
        raise FileErrors(errors)
    remember_all((loaded.core, loaded.sections))
    return loaded


def _deep_merge(target: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_merge(target[key], value)
        else:
            target[key] = dict(value) if isinstance(value, Mapping) else value


@contextlib.asynccontextmanager
async def open_runtime(
    config: LoadedConfig,
    *,
    clock: Clock | None = None,
    registry: CollectorRegistry | None = None,
    extras: dict[str, Any] | None = None,
    start_embedded: bool = False,
    wait_until: asyncio.Event | None = None,
    require_daemon: bool = True,
) -> AsyncIterator[Runtime]:
    """Connect to Redis and yield the runtime every plugin receives.

    The daemon passes ``start_embedded=True`` (start or adopt its embedded server) and
    ``wait_until`` (an unreachable configured Redis is waited for until that event is set).
    Everyone else (CLI commands) reads a *running* daemon's state: without ``redis.url``
    they use the embedded server of the configured data dir or, if none answers there, the
    newest daemon that announced itself (`runfile`, e.g. ``convmon demo``); and, with
    ``require_daemon`` (read commands), they raise `NoDaemonRunning` when no live convmon
    process heartbeats in that Redis, rather than show an empty or stale picture. Commands
    that only add work for a daemon to pick up (a backfill into a configured Redis) pass
    ``require_daemon=False``.
    """
    core = config.core
    data_dir = core.data_dir.expanduser()
    redis_settings, prefix = core.redis, core.redis.prefix
    if not start_embedded and core.redis.url is None:
        data_dir, redis_settings, prefix = await _running_daemon(core, data_dir)
    async with open_redis(
        redis_settings, data_dir, start_embedded=start_embedded, until=wait_until,
        run_dir=core.run_dir,
    ) as redis:
        keys = Keys(prefix)
        if require_daemon and not start_embedded:
            await _require_live_process(redis, keys)
        reg = registry if registry is not None else CollectorRegistry()
        bus = EventBus(redis, keys, core.bus, BusMetrics(reg))
        yield Runtime(
            settings=core,
            redis=redis,
            keys=keys,
            bus=bus,
            clock=clock or SystemClock(),
            metrics=reg,
            instance=core.instance,
            data_dir=data_dir,
            extras={"config_file": config.source.file, **(extras or {})},
        )


async def _running_daemon(
    core: CoreSettings, data_dir: Path
) -> tuple[Path, RedisSettings, str]:
    """The data dir, Redis settings and key prefix of the daemon a CLI command should read:
    the configured data dir's if its embedded Redis answers, else the newest announced."""
    own = EmbeddedRedis(embedded_dir(core.redis, data_dir), binary="")
    if await answers(own.url):
        return data_dir, core.redis, core.redis.prefix
    for record in find_running(core.run_dir):
        if await answers(EmbeddedRedis(Path(record.redis_dir), binary="").url):
            log.info(
                "reading the running %s (pid %s, data dir %s)",
                "demo" if record.demo else "daemon", record.pid, record.data_dir,
            )
            settings = core.redis.model_copy(update={"data_dir": Path(record.redis_dir)})
            return Path(record.data_dir), settings, record.prefix
    raise NoDaemonRunning(
        f"no convmon daemon is running (none with data dir {data_dir}, and none announced "
        "itself); start one with `convmon run` or `make demo`, or set redis.url"
    )


async def _require_live_process(redis: Redis, keys: Keys) -> None:
    for beat in await heartbeats(redis, keys):
        if beat.get("stopping") != "1":
            return
    raise NoDaemonRunning(
        "no convmon daemon is running against this Redis (no live heartbeat); what it holds "
        "is the state a stopped daemon left behind"
    )
