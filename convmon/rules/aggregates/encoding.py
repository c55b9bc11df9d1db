"""Events → arguments of the apply script, and exact token amounts as decimal strings.

Token amounts travel to Redis as non-negative integer strings in a fixed scale of 18
decimals (``units x 10^(18 - decimals)``), so every series sums exactly whatever the
token's decimals: the Lua side adds them as digit strings, never as doubles. Tokens with
more than 18 decimals are truncated to 18 (none of the tracked tokens has more).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import msgspec

from convmon.monitor.events import (
    Amount,
    BitcoinAttribution,
    BitcoinBlock,
    BitcoinReorg,
    CollectorStatus,
    DepinPayout,
    Event,
    MarketPrice,
    OpsSample,
    StablecoinBurn,
    StablecoinMint,
    StablecoinSupply,
)

SCALE = 18
UNKNOWN = "unknown"


def scaled_units(amount: Amount) -> str:
    """The amount in 10^-18 token units, as a decimal string (never negative)."""
    units = max(amount.units, 0)
    if amount.decimals <= SCALE:
        return str(units * 10 ** (SCALE - amount.decimals))
    return str(units // 10 ** (amount.decimals - SCALE))


def scaled_to_tokens(value: str | int | None) -> float:
    """A scaled integer (string or int) back to token units."""
    if value is None or value == "":
        return 0.0
    return float(Decimal(int(value)).scaleb(-SCALE))


SEP = "\x1f"
"""Separates the fields of one event in its script argument (one argument per event keeps
the command small to pack: redis-py packs each argument separately)."""


def _clean(text: str) -> str:
    """Field values are joined with ``|`` and ``,`` inside Lua records."""
    return text.replace("|", "/").replace(",", " ").replace(SEP, " ")


def _num(value: float) -> str:
    return repr(float(value))


def entity_of(pool: str, payload_entity: str | None, entities: dict[str, str]) -> str:
    """The configured override, else the entity the collector resolved at the block's
    timestamp, else the pool itself."""
    if pool == UNKNOWN:
        return UNKNOWN
    return entities.get(pool) or payload_entity or pool


def encode(event: Event, entities: dict[str, str]) -> str | None:
    """The apply script's argument for one event (code, id, fields joined by `SEP`);
    None for kinds the aggregates ignore."""
    p = event.payload
    args: list[str]
    if isinstance(p, BitcoinBlock):
        code = "B"
        pool = _clean(p.pool) or UNKNOWN
        args = [
            str(p.height), _clean(p.hash), pool, _clean(entity_of(pool, p.entity, entities)),
            str(p.tx_count), str(p.subsidy_sats), str(p.fees_sats), str(p.timestamp),
            _num(p.difficulty), _clean(p.registry_version),
            _clean(p.template_provider or "") if p.template_provider != pool else "",
            _clean(p.jurisdiction or UNKNOWN),
        ]
    elif isinstance(p, BitcoinReorg):
        code = "R"
        args = [str(p.depth), _num(event.occurred_at)]
        for ref in p.disconnected:
            args += [str(ref.height), _clean(ref.hash)]
    elif isinstance(p, BitcoinAttribution):
        code = "A"
        pool = _clean(p.pool) or UNKNOWN
        args = [
            str(p.height), _clean(p.hash), pool, _clean(entity_of(pool, p.entity, entities)),
            _clean(p.registry_version), _clean(p.jurisdiction or UNKNOWN),
        ]
    elif isinstance(p, StablecoinMint | StablecoinBurn):
        code = "M" if isinstance(p, StablecoinMint) else "U"
        meta = json.dumps({"token": p.token, "chain": p.chain, "track": p.track})
        args = [
            f"{_clean(p.token)}/{p.chain}", meta, scaled_units(p.amount),
            _num(event.occurred_at), p.chain,
        ]
    elif isinstance(p, StablecoinSupply):
        code = "S"
        meta = json.dumps({"token": p.token, "chain": p.chain, "track": p.track})
        args = [f"{_clean(p.token)}/{p.chain}", meta, scaled_units(p.amount),
                _num(event.occurred_at)]
    elif isinstance(p, DepinPayout):
        code = "D"
        when = p.block_time if p.block_time is not None else event.occurred_at
        fields: dict[str, Any] = {"network": p.network, "token": p.token}
        if p.expected_cadence_s is not None:
            fields["cadence_s"] = p.expected_cadence_s
        meta = json.dumps(fields)
        args = [_clean(p.network), _clean(p.token), meta, scaled_units(p.amount), _num(when)]
        args += [r.owner.replace(SEP, " ") for r in p.recipients]
    elif isinstance(p, MarketPrice):
        code = "P"
        args = [
            _clean(p.symbol), _num(event.occurred_at), _num(p.price_usd),
            ",".join(_clean(s) for s in p.sources), ",".join(_clean(s) for s in p.stale_sources),
        ]
    elif isinstance(p, CollectorStatus):
        code = "C"
        args = [_clean(p.collector), "1" if p.connected else "0", _num(event.occurred_at)]
    elif isinstance(p, OpsSample):
        code = "O"
        args = [_num(event.occurred_at), msgspec.json.encode(p).decode(), ops_history(p)]
        for proc in p.processes:
            ttl = _num(proc.ttl_s) if proc.ttl_s is not None else ""
            roles = " ".join(map(_clean, proc.roles))
            args.append(f"p|{_clean(proc.instance)}|{ttl}|{roles}|{int(proc.stopping)}")
        for comp in p.components:
            args.append(f"c|{ops_component_key(comp.instance, comp.name)}|{int(comp.up)}")
    else:
        return None
    return SEP.join((code, event.id.replace(SEP, " "), *args))


def ops_history(sample: OpsSample) -> str:
    """The figures of a sample whose trend the ``ops`` root reports, compactly: per
    consumer group ``[pending, lag, behind_s]``, dead-letter lengths, and restarts per
    component (keyed ``<instance>/<component>``)."""
    return json.dumps({
        "g": {f"{g.stream}/{g.group}": [g.pending, g.lag, g.behind_s] for g in sample.groups},
        "d": sample.dead_letters,
        "r": {ops_component_key(c.instance, c.name): c.restarts for c in sample.components},
    }, separators=(",", ":"))


def ops_component_key(instance: str, name: str) -> str:
    """How the ``ops`` root names a component: ``<instance>/<name>``."""
    return _clean(f"{instance}/{name}")
