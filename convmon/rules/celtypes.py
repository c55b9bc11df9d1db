"""Static types of CEL values, and the typed description of every variable a rule reads.

In: the aggregate views (`convmon.rules.aggregates.views`, run once on empty state with the
default configuration), the event payload structs (`convmon.monitor.events`) and a rule's
params. Out: a `CelType` per variable, which `convmon.rules.typecheck` checks expressions
against at load time.

Why derive instead of declare: the views are the one definition of what the roots hold, so
a field added there is known to the checker without a second list to keep in step. What an
empty state cannot tell is declared here: which dicts are maps keyed by data (pools, tokens,
collectors) rather than records, and the type of figures that are ``None`` until data
arrives. ``dyn`` (anything) is the answer wherever neither says more; the checker never
rejects what it cannot know.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from convmon.monitor import events as ev


@dataclass(frozen=True)
class CelType:
    """``kind`` is one of dyn, null, bool, number, string, bytes, list, map, record.

    ``nullable``: the value may also be null. ``elem``: list elements / map values.
    ``fields``: a record's fields (a record is a map whose keys are known).
    """

    kind: str
    nullable: bool = False
    elem: CelType | None = None
    fields: Mapping[str, CelType] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "list":
            inner = f"list({self.elem.describe()})" if self.elem else "list"
        elif self.kind == "map":
            inner = f"map(string, {self.elem.describe()})" if self.elem else "map"
        elif self.kind == "record":
            inner = "map"
        else:
            inner = self.kind
        return f"{inner} or null" if self.nullable and self.kind != "dyn" else inner

    def or_null(self) -> CelType:
        return CelType(self.kind, True, self.elem, self.fields)


DYN = CelType("dyn")
NULL = CelType("null")
BOOL = CelType("bool")
NUMBER = CelType("number")
STRING = CelType("string")
BYTES = CelType("bytes")


def list_of(elem: CelType) -> CelType:
    return CelType("list", elem=elem)


def map_of(elem: CelType) -> CelType:
    return CelType("map", elem=elem)


def record(fields: Mapping[str, CelType]) -> CelType:
    return CelType("record", fields=dict(fields))


def merge(types_: Iterable[CelType]) -> CelType:
    """The type of a value that is one of ``types_`` (dyn when they disagree)."""
    items = list(types_)
    if not items:
        return DYN
    nullable = any(t.nullable or t.kind == "null" for t in items)
    concrete = [t for t in items if t.kind != "null"]
    if not concrete:
        return NULL
    first = concrete[0]
    if any(t.kind != first.kind for t in concrete):
        return DYN
    if first.kind == "record":
        names = set().union(*(t.fields for t in concrete))
        fields = {n: merge(t.fields.get(n, NULL) for t in concrete) for n in names}
        return CelType("record", nullable, fields=fields)
    if first.kind in ("list", "map"):
        elem = merge(t.elem or DYN for t in concrete)
        return CelType(first.kind, nullable, elem=elem)
    return CelType(first.kind, nullable)


_MAPS = frozenset({
    "btc.windows", "btc.windows.*.pools", "btc.windows.*.entities",
    "btc.windows.*.providers",
    "btc.windows.*.jurisdictions",
    "stablecoin.tokens", "stablecoin.tracks", "stablecoin.last_event_time",
    "depin.networks", "depin.networks.*.tokens",
    "market.prices", "market.pegs", "market.sources",
    "miner.revenue_usd_per_mwh", "miner.revenue_to_ai_low_ratio",
    "miner.revenue_to_ai_high_ratio",
    "collectors",
    "ops.processes", "ops.components", "ops.groups", "ops.dead_letters", "ops.redis",
    "payments.x402", "payments.x402.*.volume_by_token", "payments.track_share",
    "payments.track_share.*",
    "depin_flows.tokens", "depin_flows.tokens.*.burned_by_purpose",
})
"""Dicts keyed by data (configured windows, pools, tokens, collectors...), not records."""

_NULL_TYPES: Mapping[str, CelType] = {
    "btc.tip_hash": STRING,
    "btc.current_run.pool": STRING,
    "collectors.*.connected": BOOL,
    "btc.windows.*.jurisdiction_top1": STRING,
}
"""Figures that are None on an empty state and are not numbers (every other one is)."""

_MAP_VALUES: Mapping[str, CelType] = {
    "btc.windows.*.pools": NUMBER,
    "btc.windows.*.entities": NUMBER,
    "btc.windows.*.providers": record({"blocks": NUMBER, "share": NUMBER, "pools": NUMBER}),
    "btc.windows.*.jurisdictions": record({"blocks": NUMBER, "share": NUMBER}),
    "stablecoin.last_event_time": NUMBER,
    "payments.x402.*.volume_by_token": NUMBER,
    "payments.track_share.*": NUMBER,
    "depin_flows.tokens.*.burned_by_purpose": NUMBER,
    "ops.redis": record({"node": STRING, "used_memory": NUMBER, "maxmemory": NUMBER,
                         "used_ratio": NUMBER.or_null()}),
}
"""Value types of maps that are empty on an empty state."""


def _from_sample(value: Any, path: str) -> CelType:
    if value is None:
        return _NULL_TYPES.get(path, NUMBER).or_null()
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return list_of(merge(_from_sample(v, path + ".*") for v in value))
    if isinstance(value, dict):
        if path in _MAPS:
            if not value:
                return map_of(_MAP_VALUES.get(path, DYN))
            return map_of(merge(_from_sample(v, path + ".*") for v in value.values()))
        return record({k: _from_sample(v, f"{path}.{k}") for k, v in value.items()})
    return DYN


@functools.cache
def root_types() -> Mapping[str, CelType]:
    """The aggregate roots, typed from the views of an empty state."""
    from convmon.rules.aggregates import depinflow, views
    from convmon.rules.aggregates.config import AggregatesConfig
    from convmon.rules.aggregates.payments import payment_item_sample

    cfg = AggregatesConfig()
    now = 0.0
    prices = views.Prices()
    btc = views.btc_view({}, cfg, now)
    sample: dict[str, Any] = {
        "btc": btc,
        "stablecoin": views.stablecoin_view({}, {}, prices, cfg, now),
        "depin": views.depin_view({}, {}, prices, cfg, now),
        "market": views.market_view(prices, {}, cfg, now),
        "miner": views.miner_view(btc, {}, prices, cfg, now, None),
        "collectors": views.collectors_view(["sample"], {}, {}, now),
        "ops": views.ops_view(None, [], {}, {}, now),
        "payments": {"x402": {"sample": payment_item_sample()},
                     "track_share": {"24h": {}}},
        "depin_flows": depinflow.empty_view(),
    }
    return {name: _from_sample(value, name) for name, value in sample.items()}


def _from_annotation(tp: Any) -> CelType:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return merge(_from_annotation(a) for a in typing.get_args(tp))
    if tp is type(None):
        return NULL
    if tp is bool:
        return BOOL
    if tp in (int, float):
        return NUMBER
    if tp is str:
        return STRING
    if tp is bytes:
        return BYTES
    if origin in (list, tuple, set, frozenset):
        args = typing.get_args(tp)
        return list_of(_from_annotation(args[0]) if args else DYN)
    if origin is dict:
        args = typing.get_args(tp)
        return map_of(_from_annotation(args[1]) if len(args) == 2 else DYN)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _struct_type(tp)
    return DYN


def _struct_type(struct: type[msgspec.Struct]) -> CelType:
    hints = typing.get_type_hints(struct)
    return record({name: _from_annotation(hints[name]) for name in struct.__struct_fields__})


_PAYLOADS: tuple[type[msgspec.Struct], ...] = typing.get_args(ev.Payload)

_ENVELOPE: Mapping[str, CelType] = {
    "kind": STRING, "id": STRING, "chain": STRING, "source": STRING,
    "position": NUMBER, "occurred_at": NUMBER, "observed_at": NUMBER,
}
_AMOUNT_EXTRAS: Mapping[str, CelType] = {
    "amount": NUMBER, "amount_units": STRING, "decimals": NUMBER,
    "usd": NUMBER.or_null(), "usd_source": STRING.or_null(),
}
"""What the aggregate store adds to token-moving events (see ``event_context``)."""


def event_type(kinds: Iterable[str]) -> CelType:
    """The ``event`` variable of a rule matching ``kinds``: payload fields of any of them,
    the envelope and the store's additions."""
    wanted = set(kinds)
    variants: list[CelType] = []
    for payload in _PAYLOADS:
        if payload.__struct_config__.tag not in wanted:
            continue
        rec = _struct_type(payload)
        fields = dict(rec.fields)
        if "amount" in fields:
            fields.update(_AMOUNT_EXTRAS)
        elif payload is ev.BitcoinBlock:
            fields.update({k: _AMOUNT_EXTRAS[k] for k in ("amount", "usd", "usd_source")})
        fields.update(_ENVELOPE)
        variants.append(record(fields))
    if not variants:
        return DYN
    if len(variants) == 1:
        return variants[0]
    # Several kinds: a field of any of them may be read (guarded by ``event.kind``).
    names = set().union(*(v.fields for v in variants))
    return record({
        n: merge(v.fields[n] for v in variants if n in v.fields) for n in sorted(names)
    })


def param_type(value: object) -> CelType:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, (int, float)):
        return NUMBER
    if isinstance(value, str):
        return STRING
    if isinstance(value, list):
        return list_of(STRING)
    if isinstance(value, dict):
        return map_of(NUMBER)
    return DYN


def params_type(params: Mapping[str, object]) -> CelType:
    return record({name: param_type(v) for name, v in params.items()})
