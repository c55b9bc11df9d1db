"""Configuration of the aggregates: window sizes, label caps, pool entities, economics.

In: the ``rules.aggregates`` part of the ``rules`` section (the engine nests this model).
Out: a frozen `AggregatesConfig` that `AggregateStore` and the metrics read.

Entities: each block is counted under the entity its payload carries. The bitcoin collector
is the one source of truth for it: it resolves the pool's parent company from dated links
(convmon's curated file, the user's, ``collectors.bitcoin.pools``) at the block's
timestamp. ``entities`` and ``entities_file`` here are optional overrides that apply at
every date (a file in the ``pool-parent-companies.json`` shape: only its current links,
empty ``to``, count); empty by default.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import Field, field_validator, model_validator

from convmon.monitor.config import Model
from convmon.rules.errors import EntityMapError

DEFAULT_PEGS: tuple[str, ...] = ("USDC", "USDT", "USD1", "PYUSD", "RLUSD", "FDUSD")

DEFAULT_COLLECTORS: tuple[str, ...] = (
    "bitcoin",
    "stablecoins_ethereum",
    "stablecoins_base",
    "stablecoins_solana",
    "depin",
    "market",
)

DEFAULT_CADENCE_S: dict[str, int] = {
    "helium": 86_400,
    "hivemapper": 7 * 86_400,
    "nosana": 3_600,
}

REQUIRED_TIME_WINDOWS = ("1h", "24h", "7d")


def pool_slug(name: str) -> str:
    """mempool's slug: the pool name without non-alphanumerics, lower-cased."""
    return re.sub(r"[^0-9a-zA-Z]", "", name).lower()


def load_entity_file(path: Path) -> dict[str, str]:
    """Read a ``pool-parent-companies.json``-style file into pool slug → entity."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise EntityMapError(f"{path}: cannot read the entity map: {exc}") from exc
    if not isinstance(raw, dict):
        raise EntityMapError(f"{path}: expected an object of entity -> list of pools")
    out: dict[str, str] = {}
    for entity, pools in raw.items():
        if not isinstance(pools, list):
            raise EntityMapError(f"{path}: {entity!r} must map to a list of pools")
        for item in pools:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise EntityMapError(f"{path}: {entity!r} has a pool entry without a name")
            if item.get("to", ""):
                continue
            out[pool_slug(item["name"])] = str(entity)
    return out


class AggregatesConfig(Model):
    """Windows and figures the rule engine and the metrics read from Redis."""

    bitcoin_windows: list[int] = Field(default_factory=lambda: [144, 1008, 2016])
    """Block windows (last N blocks)."""
    block_history_margin: int = Field(default=144, ge=6)
    """Per-height records kept beyond the largest window, so a reorg can restore them."""
    pool_label_cap: int = Field(default=12, ge=1, le=100)
    """Pools keeping their own metric label (by blocks in the largest window); the rest fold
    into ``other``."""
    entities: dict[str, str] = Field(default_factory=dict)
    """Pool slug → parent entity at every date, over the entity each block payload carries
    (the collector's dated links). Empty by default."""
    entities_file: Path | None = None
    """A ``pool-parent-companies.json``-style file; its current links override ``entities``
    (and the payloads' entities) at every date."""
    time_windows: dict[str, int] = Field(
        default_factory=lambda: {"1h": 3_600, "24h": 86_400, "7d": 604_800}
    )
    """Named time windows in seconds; ``1h``, ``24h`` and ``7d`` are required."""
    bucket_s: int = Field(default=300, ge=1)
    """Time bucket size; every time window must be a multiple of it."""
    recipients_bucket_s: int = Field(default=3_600, ge=60)
    """HyperLogLog bucket for unique DePIN recipients (24 h = union of the last buckets)."""
    applied_ttl_s: int = Field(default=7 * 86_400 + 7_200, ge=3_600)
    """How long an applied event id is remembered: it must exceed the largest time window
    (an event applied again inside it would count twice); the default is that window and
    two hours. Markers are a large part of Redis's memory (deploy/README.md)."""
    applied_ttl_latest_s: int = Field(default=3_600, ge=60)
    """How long the id of an applied price, collector status, ops sample or stablecoin
    supply is remembered: they only replace a latest value when newer, so a redelivery
    changes nothing without the marker; it only saves the work (and most events are prices:
    this is most of the markers)."""
    hashprice_window: int = Field(default=144, ge=1)
    fleet_efficiencies_j_per_th: list[float] = Field(default_factory=lambda: [15.0, 20.0, 25.0])
    ai_benchmark_low_usd_per_mwh: float = Field(default=200.0, gt=0)
    ai_benchmark_high_usd_per_mwh: float = Field(default=500.0, gt=0)
    price_staleness_s: float = Field(default=600.0, gt=0)
    """A price older than this is not used (valuations say None, pegs fall back)."""
    btc_symbol: str = "BTC"
    peg_symbols: list[str] = Field(default_factory=lambda: list(DEFAULT_PEGS))
    """Stablecoins pegged to 1 USD."""
    collectors: list[str] = Field(default_factory=lambda: list(DEFAULT_COLLECTORS))
    """Collectors expected to report (listed even before their first status)."""
    depin_cadence_s: dict[str, int] = Field(default_factory=lambda: dict(DEFAULT_CADENCE_S))
    """Expected payout cadence per DePIN network, for payouts whose event does not carry
    the cadence of the collector's network registry (which takes precedence)."""
    ops_history_s: int = Field(default=1_800, ge=60, le=86_400)
    """How far back the ``ops`` root looks for trends (backlog growth, restarts, dead
    letters) in the ``ops.sample`` history."""
    ops_forget_process_after_s: int = Field(default=6 * 3_600, ge=60)
    """A process whose heartbeat vanished and that never came back is listed in
    ``ops.processes`` (and alerted on) for this long, then forgotten."""

    @field_validator("bitcoin_windows")
    @classmethod
    def _windows(cls, v: list[int]) -> list[int]:
        if not v or any(n < 1 for n in v):
            raise ValueError("bitcoin_windows must be positive block counts")
        if len(set(v)) != len(v):
            raise ValueError("bitcoin_windows must not repeat")
        return sorted(v)

    @field_validator("fleet_efficiencies_j_per_th")
    @classmethod
    def _efficiencies(cls, v: list[float]) -> list[float]:
        if any(e <= 0 for e in v):
            raise ValueError("fleet efficiencies must be positive J/TH")
        return v

    @model_validator(mode="after")
    def _check(self) -> AggregatesConfig:
        missing = [w for w in REQUIRED_TIME_WINDOWS if w not in self.time_windows]
        if missing:
            raise ValueError(f"time_windows must define {', '.join(missing)}")
        for name, seconds in self.time_windows.items():
            if seconds <= 0 or seconds % self.bucket_s:
                raise ValueError(
                    f"time window {name!r} ({seconds} s) must be a positive multiple of "
                    f"bucket_s ({self.bucket_s} s)"
                )
        if len(set(self.time_windows.values())) != len(self.time_windows):
            raise ValueError("time_windows must have distinct lengths")
        if self.ai_benchmark_low_usd_per_mwh > self.ai_benchmark_high_usd_per_mwh:
            raise ValueError("ai_benchmark_low_usd_per_mwh exceeds the high bound")
        if self.applied_ttl_s <= max(self.time_windows.values()):
            raise ValueError("applied_ttl_s must exceed the largest time window")
        return self

    @property
    def block_windows(self) -> list[int]:
        """Windows kept in Redis: the configured ones plus the hashprice window."""
        return sorted({*self.bitcoin_windows, self.hashprice_window})

    def entity_map(self) -> dict[str, str]:
        mapping = dict(self.entities)
        if self.entities_file is not None:
            mapping.update(load_entity_file(self.entities_file))
        return mapping
