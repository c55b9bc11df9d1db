"""Composition root helpers: load the whole configuration (core + plugins) and open a
`Runtime` (Redis, bus, clock, metrics). Used by the daemon, the CLI and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from convmon.monitor.bus import BusMetrics, EventBus
from convmon.monitor.clock import Clock, SystemClock
from convmon.monitor.config import ConfigSource, CoreSettings, load_core, read_config_source
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Plugin, Runtime, discover_plugins
from convmon.monitor.redisconn import open_redis
from convmon.monitor.secrets import remember_all
from convmon.monitor.yamlfile import FileError, FileErrors, dig, validate_model


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
    start_embedded: bool = True,
    wait_until: asyncio.Event | None = None,
) -> AsyncIterator[Runtime]:
    """Connect to (or start) Redis and yield the runtime every plugin receives. With
    ``wait_until``, an unreachable Redis is waited for until that event is set."""
    core = config.core
    data_dir = core.data_dir.expanduser()
    async with open_redis(
        core.redis, data_dir, start_embedded=start_embedded, until=wait_until
    ) as redis:
        keys = Keys(core.redis.prefix)
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
