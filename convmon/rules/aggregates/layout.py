"""Where each aggregate lives in Redis, and the keys each script call touches.

In: the key prefix (`Keys`), the aggregates' configuration and encoded events. Out: key
names, the aggregate group of an encoded event, and the complete list of keys one apply
call over a group's events touches (what it declares in KEYS).

Every aggregate belongs to one group, and a group's keys share its hash tag
(`Keys.aggregate_base`: ``<prefix>:rules:{agg:<group>}``), so one script call touches one
cluster slot and the groups spread over the cluster's nodes. The Lua scripts build the same
names from the base they are given (ARGV[1]); the calls declare every one of them, and
``tests/aggregates/test_declared_keys.py`` checks, command by command, that no script touches
a key it did not declare.

Keys under each group's base:

- ``btc``: ``btc:cand`` height -> that height's candidates (JSON: ``r`` hash -> record,
  ``s`` hash -> arrival order, ``a`` hash -> attribution); ``btc:active`` height -> record of
  the best block; ``btc:heights``/``btc:candh`` sorted sets of heights; ``btc:dead``
  disconnected hashes; ``btc:win:<N>`` counts per block window; ``btc:meta`` (version,
  reorgs, windows); ``btc:runs`` cache of consecutive-block runs; ``btc:providers`` pool ->
  template provider; ``miner:hashprice`` day -> hashprice.
- ``stable``: ``ts:b:<series>`` buckets (TTL), ``ts:w:<series>`` window sums and totals
  (series ``mint:<token>/<chain>`` and ``burn:<token>/<chain>``), ``ts:meta`` series ->
  labels, ``supply:<token>/<chain>`` last two supply samples, ``stable:last`` chain -> last
  flow time, ``ts:bucket_s`` the bucket size the series were built with.
- ``depin``: ``ts:b``/``ts:w``/``ts:meta`` of the payout series (``dp:<network>/<token>``,
  ``dpn:<network>``), ``hll:<network>:<hour>`` recipients, ``depin:last``.
- ``market``: ``prices``, ``price_sources``, and the DePIN supply flows valued at those
  prices (``depin:flows``, ``depin:flow:<series>``, ``depin:px:<symbol>``; `depinflow`).
- ``ops``: ``ops:last``, ``ops:hist``, ``ops:procs``, ``ops:down`` (the monitor's own
  samples) and ``collectors`` (latest collector status events).
- ``x402``: ``x402:*``, the machine-payment aggregates (`payments`).

Each group also holds ``done:<event id>``, the applied markers of its events.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from convmon.monitor.keys import AGGREGATE_GROUPS, Keys
from convmon.rules.aggregates.config import AggregatesConfig
from convmon.rules.aggregates.encoding import SEP

CODE_GROUP: dict[str, str] = {
    "B": "btc", "R": "btc", "A": "btc", "W": "btc",
    "M": "stable", "U": "stable", "S": "stable",
    "D": "depin",
    "P": "market",
    "C": "ops", "O": "ops",
}
"""The group of each apply-script event code (``encoding.encode``)."""


HLL_HORIZON_S = 86_400
"""Payout recipients older than this (plus one bucket) are not counted (``apply.lua``)."""


class Layout:
    """Key names of the aggregates under one prefix and configuration."""

    def __init__(self, keys: Keys, config: AggregatesConfig) -> None:
        self.config = config
        self.base: dict[str, str] = {g: keys.aggregate_base(g) for g in AGGREGATE_GROUPS}
        self.btc_fixed: list[str] = [
            self.key("btc", "btc", name)
            for name in ("meta", "active", "heights", "candh", "dead", "cand")
        ] + [self.key("btc", "btc", "win", str(n)) for n in config.block_windows]
        """Every key a bitcoin event can touch (windows of the configured sizes)."""

    def key(self, group: str, *parts: str) -> str:
        """``<group base>:<parts joined by ':'>``."""
        return ":".join((self.base[group], *parts))

    def done(self, group: str, event_id: str) -> str:
        return self.key(group, "done", event_id)

    def series_keys(self, group: str, series: str) -> list[str]:
        """The bucket and window hashes of one time series."""
        return [self.key(group, "ts", "b", series), self.key(group, "ts", "w", series)]

    def hll(self, network: str, bucket: int) -> str:
        return self.key("depin", "hll", network, str(bucket))

    def recipient_buckets(self, now: float) -> range:
        """The hourly recipient buckets of the 24-hour window ending at ``now``."""
        size = self.config.recipients_bucket_s
        last = math.floor(now / size)
        return range(last - self.config.time_windows["24h"] // size + 1, last + 1)

    def apply_keys(self, group: str, encoded: Iterable[str], now: float) -> list[str]:
        """Every key one ``apply.lua`` call over ``encoded`` (events of ``group``,
        as `encoding.encode` made them) touches, in first-use order."""
        out: dict[str, None] = {}

        def add(*names: str) -> None:
            for name in names:
                out[name] = None

        hll_bs = self.config.recipients_bucket_s
        for arg in encoded:
            code, event_id, *a = arg.split(SEP)
            add(self.done(group, event_id))
            if code in ("B", "R", "A", "W"):
                add(*self.btc_fixed)
            elif code in ("M", "U"):
                family = "mint" if code == "M" else "burn"
                add(*self.series_keys(group, f"{family}:{a[0]}"),
                    self.key(group, "ts", "meta"), self.key(group, "stable", "last"))
            elif code == "S":
                add(self.key(group, "supply", a[0]), self.key(group, "ts", "meta"),
                    self.key(group, "ts", "w", f"mint:{a[0]}"),
                    self.key(group, "ts", "w", f"burn:{a[0]}"))
            elif code == "D":
                add(*self.series_keys(group, f"dp:{a[0]}/{a[1]}"),
                    *self.series_keys(group, f"dpn:{a[0]}"),
                    self.key(group, "ts", "meta"), self.key(group, "depin", "last"))
                t = float(a[4])
                if len(a) > 5 and t > now - HLL_HORIZON_S - hll_bs:
                    add(self.hll(a[0], math.floor(min(t, now) / hll_bs)))
            elif code == "P":
                add(self.key(group, "prices"), self.key(group, "price_sources"))
            elif code == "C":
                add(self.key(group, "collectors"))
            elif code == "O":
                add(*(self.key(group, "ops", name) for name in ("last", "hist", "procs", "down")))
            else:
                raise ValueError(f"unknown aggregate event code {code!r}")
        return list(out)

    def btc_snapshot_keys(self) -> list[str]:
        return [*self.btc_fixed, self.key("btc", "btc", "runs")]

    def series_snapshot_keys(self, group: str, names: Iterable[str], now: float) -> list[str]:
        """Every key ``series_snapshot.lua`` touches reading ``names`` (series, and
        ``supply:<token>`` entries) of ``group``."""
        out: dict[str, None] = {self.key(group, "ts", "meta"): None}
        buckets = self.recipient_buckets(now)
        for name in names:
            if name.startswith("supply:"):
                out[self.key(group, name)] = None
                continue
            for key in self.series_keys(group, name):
                out[key] = None
            if name.startswith("dpn:"):
                network = name[len("dpn:"):]
                for b in buckets:
                    out[self.hll(network, b)] = None
        return list(out)
