"""The ``bitcoin`` collector plugin: configuration section ``collectors.bitcoin``, the
collector component, a few collector-side gauges, and the ``pools``/``backfill`` CLI.

Defaults follow the public mempool.space API, so with internet and no configuration the
collector follows mainnet. Window metrics (shares, HHI, ...) are the rule engine's
aggregates, not produced here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from pydantic import Field

from convmon.collectors.bitcoin.attribution import Attributor
from convmon.collectors.bitcoin.collector import BitcoinCollector
from convmon.collectors.bitcoin.entities import EntityMap, load_entity_map
from convmon.collectors.bitcoin.jurisdictions import JurisdictionMap
from convmon.collectors.bitcoin.production import production_metrics
from convmon.collectors.bitcoin.record import BlockRecord
from convmon.collectors.bitcoin.registry import (
    DEFAULT_POOLS_URL,
    configured_origin,
    load_pool_list,
    load_registry,
)
from convmon.collectors.bitcoin.sources import BitcoindSource, ChainSource, EsploraSource
from convmon.collectors.bitcoin.stratum_plugin import StratumComponent, StratumSettings
from convmon.collectors.bitcoin.stratum_state import read_state
from convmon.monitor.backoff import Backoff, RateLimiter
from convmon.monitor.config import Model
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component, Plugin, Runtime
from convmon.monitor.secrets import Secret


class EsploraSettings(Model):
    base_url: str = "https://mempool.space/api"
    ws_url: str | None = None
    """Default: derived from base_url (``https://x/api`` -> ``wss://x/api/v1/ws``)."""
    websocket: bool = True

    def resolved_ws_url(self) -> str | None:
        if not self.websocket:
            return None
        if self.ws_url:
            return self.ws_url
        base = self.base_url.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base[len("https://") :] + "/v1/ws"
        if base.startswith("http://"):
            return "ws://" + base[len("http://") :] + "/v1/ws"
        return None


class BitcoindSettings(Model):
    rpc_url: Secret = Field(default_factory=lambda: Secret("http://127.0.0.1:8332"))
    """``http://user:password@host:8332`` (a secret: it carries the RPC password)."""
    zmq_endpoint: str | None = None
    """e.g. ``tcp://127.0.0.1:28332`` (``zmqpubhashblock``); needs the ``zmq`` extra."""


class PoolsSettings(Model):
    source: str = DEFAULT_POOLS_URL
    """pools-v2.json URL or path; ``builtin`` for convmon's curated list only."""
    refresh_interval_s: float = Field(default=6 * 3600.0, gt=0)
    cache_path: Path | None = None
    """Default: ``<data_dir>/bitcoin/pools-v2.json``."""
    curated_entities: bool = True
    """Use convmon's curated parent-company links (``entities.json``, each with its source
    and dates); false: only ``entities_file`` and ``entities``."""
    entities_file: Path | None = None
    """Your links: ``[{pool, entity, from, to, source}]`` or the ``pool-parent-companies.json``
    shape ``{entity: [{name, from, to, source}]}``; they replace the curated links of the
    pools they name. A link applies only between its dates, at each block's timestamp."""
    entities: dict[str, str] = Field(default_factory=dict)
    """Pool slug -> parent entity at every date (overrides the files)."""


class BitcoinConfig(Model):
    enabled: bool = True
    source: Literal["esplora", "bitcoind"] = "esplora"
    esplora: EsploraSettings = EsploraSettings()
    bitcoind: BitcoindSettings = BitcoindSettings()
    poll_interval_s: float = Field(default=30.0, gt=0)
    backfill_blocks: int = Field(default=2016, ge=1)
    """Blocks fetched on first start (and after a downtime longer than that)."""
    requests_per_s: float = Field(default=5.0, gt=0)
    request_burst: float = Field(default=10.0, ge=1)
    request_attempts: int = Field(default=5, ge=1)
    backoff_initial_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=60.0, gt=0)
    publish_batch: int = Field(default=50, ge=1)
    windows: list[int] = Field(default_factory=lambda: [144, 1008, 2016])
    """Analytics windows the Redis block record must cover (the largest + reorg_margin)."""
    reorg_margin: int = Field(default=144, ge=6)
    pools: PoolsSettings = PoolsSettings()
    stratum: StratumSettings = StratumSettings()
    """Stratum jobs -> template providers (`stratum_plugin`); off by default."""

    @property
    def keep_blocks(self) -> int:
        return max(self.windows or [2016]) + self.reorg_margin


def cache_path(runtime_data_dir: Path, cfg: BitcoinConfig) -> Path:
    return cfg.pools.cache_path or runtime_data_dir / "bitcoin" / "pools-v2.json"


def entity_map(cfg: BitcoinConfig) -> EntityMap:
    """The configured pool -> parent entity links (raises `RegistryError` on a bad file)."""
    pools = cfg.pools
    return load_entity_map(pools.entities, pools.entities_file, curated=pools.curated_entities)


async def attributor_for(cfg: BitcoinConfig, data_dir: Path) -> Attributor:
    entities = entity_map(cfg)
    return Attributor(await load_registry(cfg.pools.source, cache_path(data_dir, cfg)), entities)


def build_source(cfg: BitcoinConfig, health: CollectorHealth) -> ChainSource:
    limiter = RateLimiter(cfg.requests_per_s, burst=cfg.request_burst)
    backoff = Backoff(cfg.backoff_initial_s, max(cfg.backoff_initial_s, cfg.backoff_max_s))
    if cfg.source == "bitcoind":
        return BitcoindSource(
            cfg.bitcoind.rpc_url.reveal(), cfg.bitcoind.zmq_endpoint, health, limiter,
            attempts=cfg.request_attempts, backoff=backoff,
        )
    return EsploraSource(
        cfg.esplora.base_url, cfg.esplora.resolved_ws_url(), health, limiter,
        attempts=cfg.request_attempts, backoff=backoff,
    )


def make_collector(
    runtime: Runtime, cfg: BitcoinConfig, attributor: Attributor
) -> BitcoinCollector:
    health = CollectorHealth.for_runtime(runtime, "bitcoin", f"bitcoin/{cfg.source}")

    async def reload() -> Attributor | None:
        fresh = await load_pool_list(cfg.pools.source, cache_path(runtime.data_dir, cfg))
        if fresh.fallback:
            # The configured list is unavailable: keep the one in use (the start-up warning
            # and the fallback gauge already say which one that is).
            return None
        return Attributor(fresh.registry, entity_map(cfg))

    return BitcoinCollector(
        source=build_source(cfg, health),
        bus=runtime.bus,
        record=BlockRecord(runtime.redis, runtime.keys, cfg.keep_blocks),
        attributor=attributor,
        health=health,
        clock=runtime.clock,
        backfill_blocks=cfg.backfill_blocks,
        poll_interval_s=cfg.poll_interval_s,
        publish_batch=cfg.publish_batch,
        backoff=Backoff(cfg.backoff_initial_s, max(cfg.backoff_initial_s, cfg.backoff_max_s)),
        registry_loader=reload,
        registry_refresh_s=cfg.pools.refresh_interval_s,
        configured_origin=configured_origin(cfg.pools.source),
    )


class BitcoinComponent:
    """Loads the pool list (network I/O belongs in ``run``), then runs the collector."""

    name = "bitcoin"

    def __init__(self, runtime: Runtime, cfg: BitcoinConfig) -> None:
        self.runtime = runtime
        self.cfg = cfg
        self.collector_health = CollectorHealth.for_runtime(
            runtime, "bitcoin", f"bitcoin/{cfg.source}"
        )

    async def run(self) -> None:
        attributor = await attributor_for(self.cfg, self.runtime.data_dir)
        await make_collector(self.runtime, self.cfg, attributor).run()


def _components(runtime: Runtime, cfg: BitcoinConfig) -> Sequence[Component]:
    components: list[Component] = [BitcoinComponent(runtime, cfg)] if cfg.enabled else []
    if cfg.stratum.enabled:
        components.append(StratumComponent(runtime, cfg))
    return components


async def _state_metrics(runtime: Runtime, cfg: BitcoinConfig) -> Iterable[Metric]:
    info = registry_info(await runtime.redis.hgetall(runtime.keys.btc_registry))
    size = GaugeMetricFamily(
        "convmon_btc_pool_registry_pools", "Pools in the pool list used for attribution."
    )
    fallback = GaugeMetricFamily(
        "convmon_btc_pool_registry_fallback",
        "1 while the configured pool list is unavailable and a fallback list (the cached "
        "copy or convmon's curated list) is used for attribution.",
    )
    since = GaugeMetricFamily(
        "convmon_btc_pool_registry_fallback_since_timestamp_seconds",
        "Since when the fallback pool list has been in use (absent while it is not).",
    )
    record = GaugeMetricFamily(
        "convmon_btc_recorded_blocks", "Blocks held in the collector's recent-block record."
    )
    if info:
        size.add_metric([], float(info["pools"]))
        fallback.add_metric([], 1.0 if info["fallback"] else 0.0)
        if info["fallback_since"] is not None:
            since.add_metric([], info["fallback_since"])
    record.add_metric([], float(await runtime.redis.hlen(runtime.keys.btc_blocks)))
    windows = cfg.windows or [144, 1008, 2016]
    recorded = await BlockRecord(runtime.redis, runtime.keys, cfg.keep_blocks).latest(
        max(windows)
    )
    production = production_metrics(
        [r.block for r in recorded], windows, JurisdictionMap.curated()
    )
    return [size, fallback, since, record, *production]


def registry_info(raw: Mapping[bytes | str, bytes | str]) -> dict[str, Any]:
    """The stored pool-list info, typed: ``version``, ``origin``, ``configured``, ``pools``,
    ``fallback``, ``fallback_since`` (unix seconds or None); empty before the collector
    has stored any."""
    if not raw:
        return {}
    text = {_text(k): _text(v) for k, v in raw.items()}
    since = text.get("fallback_since")
    return {
        "version": text.get("version", ""),
        "origin": text.get("origin", ""),
        "configured": text.get("configured", text.get("origin", "")),
        "pools": int(text.get("pools", "0")),
        "fallback": text.get("fallback") == "1",
        "fallback_since": float(since) if since else None,
    }


async def _status(runtime: Runtime, cfg: BitcoinConfig) -> dict[str, Any]:
    info = await runtime.redis.hgetall(runtime.keys.btc_registry)
    checkpoint = await runtime.bus.get_checkpoint("bitcoin")
    out: dict[str, Any] = {
        "source": cfg.source,
        "checkpoint": checkpoint,
        "registry": registry_info(info),
    }
    if cfg.stratum.enabled:
        state = await read_state(runtime.redis, runtime.keys)
        out["stratum"] = {
            "jobs": state.get("jobs", 0), "malformed": state.get("malformed", 0),
            "clusters": [c.get("pools", []) for c in state.get("clusters", [])],
            "updated_at": state.get("updated_at"),
        }
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _cli(app: Any) -> None:
    from convmon.collectors.bitcoin.cli import register

    register(app)


PLUGIN = Plugin(
    name="bitcoin",
    role="collectors",
    section=("collectors", "bitcoin"),
    config_model=BitcoinConfig,
    components=_components,
    state_metrics=_state_metrics,
    status=_status,
    cli=_cli,
    description="Bitcoin blocks from Esplora/mempool or Bitcoin Core, attributed to pools.",
)
