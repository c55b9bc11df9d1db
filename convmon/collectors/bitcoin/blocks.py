"""Source-neutral blocks: Esplora or Bitcoin Core JSON in, `ChainBlock` and events out.

Both sources are untrusted: every parser raises `MalformedBlock` (counted by the collector
and skipped) instead of letting a KeyError or TypeError escape.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from convmon.collectors.bitcoin.attribution import (
    Attributor,
    block_subsidy_sats,
    payout_addresses,
)
from convmon.collectors.bitcoin.errors import MalformedBlock
from convmon.monitor.events import BitcoinBlock, Event


@dataclass(frozen=True, slots=True)
class ChainBlock:
    height: int
    hash: str
    prev_hash: str
    timestamp: int
    median_time: int | None
    bits: int | None
    difficulty: float
    tx_count: int
    size: int | None
    weight: int | None
    coinbase_hex: str
    outputs: tuple[tuple[str | None, int], ...]

    @property
    def coinbase_value(self) -> int:
        return sum(v for _, v in self.outputs)


def _int_field(doc: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = doc.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise MalformedBlock(f"{key}: expected an integer, got {type(value).__name__}")
    return value


def _hash_field(value: Any, what: str, allow_empty: bool = False) -> str:
    if value is None and allow_empty:
        return "0" * 64
    if not isinstance(value, str) or len(value) != 64:
        raise MalformedBlock(f"{what}: expected a 64-hex-digit hash")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise MalformedBlock(f"{what}: not hex") from None
    return value.lower()


def _number_field(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise MalformedBlock(f"{what}: expected a number")
    return float(value)


def _hex_field(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise MalformedBlock(f"{what}: expected hex text")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise MalformedBlock(f"{what}: not hex") from None
    return value


def from_esplora(block: Any, coinbase: Any) -> ChainBlock:
    """From ``GET /block/:hash`` and ``GET /tx/:txid`` of its first transaction."""
    if not isinstance(block, dict) or not isinstance(coinbase, dict):
        raise MalformedBlock("block and transaction must be JSON objects")
    vin = coinbase.get("vin")
    vout = coinbase.get("vout")
    if not isinstance(vin, list) or not vin or not isinstance(vin[0], dict):
        raise MalformedBlock("coinbase: no vin[0]")
    if not isinstance(vout, list):
        raise MalformedBlock("coinbase: no vout")
    if vin[0].get("is_coinbase") is False:
        raise MalformedBlock("first transaction is not a coinbase")
    outputs: list[tuple[str | None, int]] = []
    for out in vout:
        if not isinstance(out, dict):
            raise MalformedBlock("coinbase: vout entry is not an object")
        address = out.get("scriptpubkey_address")
        outputs.append((address if isinstance(address, str) else None, _int_field(out, "value")))
    return ChainBlock(
        height=_int_field(block, "height"),
        hash=_hash_field(block.get("id"), "id"),
        prev_hash=_hash_field(
            block.get("previousblockhash"), "previousblockhash", allow_empty=True
        ),
        timestamp=_int_field(block, "timestamp"),
        median_time=_int_field(block, "mediantime", optional=True),
        bits=_int_field(block, "bits", optional=True),
        difficulty=_number_field(block.get("difficulty"), "difficulty"),
        tx_count=_int_field(block, "tx_count"),
        size=_int_field(block, "size", optional=True),
        weight=_int_field(block, "weight", optional=True),
        coinbase_hex=_hex_field(vin[0].get("scriptsig", ""), "vin[0].scriptsig"),
        outputs=tuple(outputs),
    )


def _btc_to_sats(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise MalformedBlock("vout value: expected a number")
    try:
        return int((Decimal(str(value)) * 100_000_000).to_integral_value())
    except InvalidOperation:
        raise MalformedBlock("vout value: not a number") from None


def from_bitcoind(block: Any) -> ChainBlock:
    """From ``getblock <hash> 2`` (values in BTC, ``bits`` as hex text)."""
    if not isinstance(block, dict):
        raise MalformedBlock("getblock result must be an object")
    txs = block.get("tx")
    if not isinstance(txs, list) or not txs or not isinstance(txs[0], dict):
        raise MalformedBlock("getblock: no transactions (verbosity 2 needed)")
    cb = txs[0]
    vin = cb.get("vin")
    if not isinstance(vin, list) or not vin or not isinstance(vin[0], dict):
        raise MalformedBlock("coinbase: no vin[0]")
    if "coinbase" not in vin[0]:
        raise MalformedBlock("first transaction is not a coinbase")
    vout = cb.get("vout")
    if not isinstance(vout, list):
        raise MalformedBlock("coinbase: no vout")
    outputs: list[tuple[str | None, int]] = []
    for out in vout:
        if not isinstance(out, dict):
            raise MalformedBlock("coinbase: vout entry is not an object")
        spk = out.get("scriptPubKey")
        address = spk.get("address") if isinstance(spk, dict) else None
        address = address if isinstance(address, str) else None
        outputs.append((address, _btc_to_sats(out.get("value"))))
    bits_raw = block.get("bits")
    try:
        bits = int(bits_raw, 16) if isinstance(bits_raw, str) else None
    except ValueError:
        raise MalformedBlock("bits: not hex") from None
    return ChainBlock(
        height=_int_field(block, "height"),
        hash=_hash_field(block.get("hash"), "hash"),
        prev_hash=_hash_field(
            block.get("previousblockhash"), "previousblockhash", allow_empty=True
        ),
        timestamp=_int_field(block, "time"),
        median_time=_int_field(block, "mediantime", optional=True),
        bits=bits,
        difficulty=_number_field(block.get("difficulty"), "difficulty"),
        tx_count=_int_field(block, "nTx") if "nTx" in block else len(txs),
        size=_int_field(block, "size", optional=True),
        weight=_int_field(block, "weight", optional=True),
        coinbase_hex=_hex_field(vin[0].get("coinbase"), "vin[0].coinbase"),
        outputs=tuple(outputs),
    )


def block_payload(block: ChainBlock, attributor: Attributor) -> BitcoinBlock:
    """Attribute ``block`` and build its event payload (subsidy from height, fees = coinbase
    value minus subsidy, never negative: a miner may claim less than allowed)."""
    attr = attributor.attribute(
        block.coinbase_hex, payout_addresses(block.outputs), float(block.timestamp)
    )
    subsidy = block_subsidy_sats(block.height)
    value = block.coinbase_value
    return BitcoinBlock(
        height=block.height,
        hash=block.hash,
        prev_hash=block.prev_hash,
        timestamp=block.timestamp,
        median_time=block.median_time,
        bits=block.bits,
        difficulty=block.difficulty,
        tx_count=block.tx_count,
        size=block.size,
        weight=block.weight,
        pool=attr.pool,
        pool_name=attr.pool_name,
        entity=attr.entity,
        match=attr.match,
        coinbase_tag=attr.coinbase_tag,
        payout_addresses=attr.payout_addresses,
        coinbase_value_sats=value,
        subsidy_sats=subsidy,
        fees_sats=max(0, value - subsidy),
        registry_version=attributor.version,
    )


def block_event(
    payload: BitcoinBlock, source: str, observed_at: float, reorg_id: str | None = None
) -> Event:
    """The event for one block: ``btc:block:<hash>`` when first connected. A block connected
    by a reorg's new branch gets ``btc:block:<hash>:reorg:<reorg_id>``: after A -> B -> A the
    bus (and idempotent consumers) have already seen A's plain ids, so reusing them would
    drop A's blocks for good."""
    suffix = f":reorg:{reorg_id}" if reorg_id else ""
    return Event(
        id=f"btc:block:{payload.hash}{suffix}",
        chain="bitcoin",
        source=source,
        observed_at=observed_at,
        occurred_at=float(payload.timestamp),
        position=payload.height,
        payload=payload,
    )
