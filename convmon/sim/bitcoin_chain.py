"""A simulated Bitcoin chain in Esplora's JSON shapes, for the local server, tests and demo.

Blocks carry real-looking coinbases: a BIP34 height push, the pool's coinbase tag, random
extranonce bytes, a payout output and the zero-value OP_RETURN witness commitment. Hashes
are sha256 of the block's content, so a replaced block gets a new hash. Nothing here is
real chain data.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any

from convmon.collectors.bitcoin.attribution import block_subsidy_sats

SimBlock = tuple[dict[str, Any], dict[str, Any]]
"""(block as ``GET /block/:hash``, coinbase as ``GET /tx/:txid``)."""

GENESIS_PREV = "0" * 64
# Bech32-looking payout addresses for simulated pools that have none in the curated list.
SIM_ADDRESS_PREFIX = "bc1qsim"


@dataclass(frozen=True)
class SimPool:
    tag: str
    address: str | None = None


def scriptsig_hex(height: int, tag: str, rng: random.Random) -> str:
    push = height.to_bytes(4, "little").rstrip(b"\x00") or b"\x00"
    body = bytes([len(push)]) + push
    tag_bytes = tag.encode("utf-8")
    n = len(tag_bytes)
    body += (bytes([n]) if n < 76 else bytes([0x4C, n & 0xFF])) + tag_bytes
    body += rng.randbytes(8)
    return body.hex()


def make_block(
    height: int,
    prev_hash: str,
    timestamp: int,
    pool: SimPool,
    *,
    salt: str = "",
    rng: random.Random | None = None,
    tx_count: int = 3000,
    difficulty: float = 1.4e14,
    fees_sats: int = 2_000_000,
) -> SimBlock:
    rng = rng or random.Random(f"{height}:{prev_hash}:{salt}")
    sig = scriptsig_hex(height, pool.tag, rng)
    value = block_subsidy_sats(height) + (fees_sats if tx_count > 1 else 0)
    payout = pool.address or f"{SIM_ADDRESS_PREFIX}{rng.getrandbits(100):030x}"
    block_hash = hashlib.sha256(f"{height}:{prev_hash}:{sig}:{salt}".encode()).hexdigest()
    txid = hashlib.sha256(f"cb:{block_hash}".encode()).hexdigest()
    tx = {
        "txid": txid,
        "version": 2,
        "locktime": 0,
        "vin": [
            {
                "txid": "0" * 64,
                "vout": 4294967295,
                "prevout": None,
                "scriptsig": sig,
                "is_coinbase": True,
                "sequence": 4294967295,
            }
        ],
        "vout": [
            {
                "scriptpubkey_type": "v0_p2wpkh",
                "scriptpubkey_address": payout,
                "value": value,
            },
            {
                "scriptpubkey": "6a24aa21a9ed" + hashlib.sha256(txid.encode()).hexdigest(),
                "scriptpubkey_type": "op_return",
                "value": 0,
            },
        ],
        "status": {"confirmed": True, "block_height": height, "block_hash": block_hash},
    }
    block = {
        "id": block_hash,
        "height": height,
        "version": 0x20000000,
        "timestamp": timestamp,
        "tx_count": tx_count,
        "size": 1_500_000,
        "weight": 3_990_000,
        "merkle_root": txid,
        "previousblockhash": prev_hash,
        "mediantime": timestamp - 3000,
        "nonce": rng.getrandbits(32),
        "bits": 386_000_000,
        "difficulty": difficulty,
    }
    return block, tx


def make_chain(
    start_height: int,
    pools: list[SimPool],
    *,
    start_time: int = 1_760_000_000,
    prev_hash: str = GENESIS_PREV,
    spacing_s: int = 600,
    salt: str = "",
) -> list[SimBlock]:
    """Consecutive blocks, one per entry of ``pools``."""
    out: list[SimBlock] = []
    for i, pool in enumerate(pools):
        block = make_block(start_height + i, prev_hash, start_time + i * spacing_s, pool, salt=salt)
        out.append(block)
        prev_hash = block[0]["id"]
    return out


def to_bitcoind(block: SimBlock) -> dict[str, Any]:
    """The same block as Bitcoin Core's ``getblock <hash> 2`` (values in BTC, bits hex)."""
    header, tx = block
    vout = []
    for n, out in enumerate(tx["vout"]):
        spk: dict[str, Any] = {"type": out["scriptpubkey_type"]}
        if "scriptpubkey_address" in out:
            spk["address"] = out["scriptpubkey_address"]
        vout.append({"value": out["value"] / 100_000_000, "n": n, "scriptPubKey": spk})
    return {
        "hash": header["id"],
        "height": header["height"],
        "version": header["version"],
        "time": header["timestamp"],
        "mediantime": header["mediantime"],
        "nonce": header["nonce"],
        "bits": format(header["bits"], "08x"),
        "difficulty": header["difficulty"],
        "nTx": header["tx_count"],
        "size": header["size"],
        "weight": header["weight"],
        "previousblockhash": header["previousblockhash"],
        "tx": [
            {
                "txid": tx["txid"],
                "vin": [{"coinbase": tx["vin"][0]["scriptsig"], "sequence": 4294967295}],
                "vout": vout,
            }
        ],
    }
