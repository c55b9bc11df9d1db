"""Configuration and component of the stratum collector (``collectors.bitcoin.stratum``).

Off by default. When on, it follows mempool's websocket (``ws_url``, default: the Esplora
source's websocket) and any Stratum v1 ``endpoints`` (your own pool accounts, a watch-only
worker each), and runs as the supervised component ``bitcoin_stratum`` with its own
collector health.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from convmon.collectors.bitcoin.stratum_collector import StratumCollector, StratumSource
from convmon.collectors.bitcoin.stratum_sources import MempoolStratumSource, StratumV1Source
from convmon.collectors.bitcoin.templates import PoolNamer, TemplateSettings
from convmon.monitor.backoff import Backoff
from convmon.monitor.config import Model
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Runtime
from convmon.monitor.secrets import Secret

if TYPE_CHECKING:
    from convmon.collectors.bitcoin.plugin import BitcoinConfig


class StratumEndpoint(Model):
    pool: str
    """The pool's slug (mempool's convention), as its blocks are attributed."""
    url: str
    """``stratum+tcp://host:port`` (``stratum+ssl://`` or ``tls: true`` for TLS)."""
    worker: str
    """A watch-only worker of your account: convmon never submits shares."""
    password: Secret = Field(default_factory=lambda: Secret("x"))
    tls: bool = False
    ca_file: Path | None = None
    """A certificate (or private CA) to trust for TLS; default: the system's CAs."""

    @field_validator("url")
    @classmethod
    def _host_and_port(cls, value: str) -> str:
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or not port:
            raise ValueError("expected stratum+tcp://host:port (or stratum+ssl://host:port)")
        return value


class StratumSettings(Model):
    enabled: bool = False
    websocket: bool = True
    """Follow mempool's websocket (``track-stratum``)."""
    ws_url: str | None = None
    """Default: the Esplora source's websocket (``collectors.bitcoin.esplora``)."""
    endpoints: list[StratumEndpoint] = Field(default_factory=list)
    window_s: float = Field(default=90.0, ge=0)
    """Jobs with the same merkle branches match only when received this close together."""
    min_confidence: float = Field(default=0.6, gt=0, le=1)
    """Share of rounds a pool must match its provider in to be assigned to it."""
    min_heights: int = Field(default=3, ge=1)
    """Matched rounds (blocks) needed before a pool is assigned."""
    keep_heights: int = Field(default=144, ge=1)
    """Rounds of evidence kept (older ones fall out, so the mapping follows changes)."""
    sample_interval_s: float = Field(default=60.0, ge=0)
    """At most one ``bitcoin.stratum_job`` per pool and interval on the same block."""
    flush_interval_s: float = Field(default=5.0, gt=0)
    backoff_initial_s: float = Field(default=1.0, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)

    def template_settings(self) -> TemplateSettings:
        return TemplateSettings(
            window_s=self.window_s, min_confidence=self.min_confidence,
            min_heights=self.min_heights, keep_heights=self.keep_heights,
        )


def stratum_sources(cfg: BitcoinConfig, runtime: Runtime) -> list[StratumSource]:
    settings = cfg.stratum

    def backoff() -> Backoff:
        return Backoff(settings.backoff_initial_s,
                       max(settings.backoff_initial_s, settings.backoff_max_s))

    sources: list[StratumSource] = []
    ws_url = settings.ws_url or cfg.esplora.resolved_ws_url()
    if settings.websocket and ws_url:
        sources.append(MempoolStratumSource(ws_url, runtime.clock, backoff()))
    for endpoint in settings.endpoints:
        sources.append(StratumV1Source(
            pool=endpoint.pool, url=endpoint.url, worker=endpoint.worker,
            password=endpoint.password.reveal(), clock=runtime.clock, backoff=backoff(),
            tls=endpoint.tls, ca_file=str(endpoint.ca_file) if endpoint.ca_file else None,
        ))
    return sources


class StratumComponent:
    """Loads the pool list (for naming mempool's pool ids), then runs the collector."""

    name = "bitcoin_stratum"

    def __init__(self, runtime: Runtime, cfg: BitcoinConfig) -> None:
        self.runtime = runtime
        self.cfg = cfg
        self.collector_health = CollectorHealth.for_runtime(
            runtime, "bitcoin_stratum", "bitcoin/stratum"
        )

    async def run(self) -> None:
        from convmon.collectors.bitcoin.plugin import attributor_for

        attributor = await attributor_for(self.cfg, self.runtime.data_dir)
        settings = self.cfg.stratum
        collector = StratumCollector(
            bus=self.runtime.bus, health=self.collector_health, clock=self.runtime.clock,
            namer=PoolNamer(attributor), sources=stratum_sources(self.cfg, self.runtime),
            settings=settings.template_settings(),
            sample_interval_s=settings.sample_interval_s,
            flush_interval_s=settings.flush_interval_s,
        )
        await collector.run()
