"""A stratum job's coinbase transaction decoded into evidence about who built the job.

In: the coinbase as a stratum job lays it out, ``coinbase1 + extranonce1 + "00" *
extranonce2_size + coinbase2`` (the legacy serialization: no witness marker). Out: a
`CoinbaseEvidence`: BIP34 height, scriptSig (hex and printable tag), payout addresses of
outputs with a value, the witness commitment, OP_RETURN markers (merged mining and
sidechain commitments), the Stratum V2 coinbase tag and whether the job looks like an
OCEAN/DATUM template.

This is evidence shown beside the merkle-branch match of `templates`, never a replacement
for it: a proxy pool writes its own tag and pays its own addresses while mining on another
pool's transaction set.

Stratum V2 tags (pool-built and miner-declared jobs write slash-delimited tags into the
scriptSig): ``/pool_tag//`` is a pool-built job, ``//miner_tag/`` or ``/pool_tag/miner_tag/``
a miner-declared one and ``///`` both empty. The two-field form is ambiguous with older
free text of the same shape (``/ViaBTC/TATMAS Pool/``): it is reported, not trusted alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import base58
import bech32m  # type: ignore[import-untyped]

from convmon.collectors.bitcoin.attribution import coinbase_text
from convmon.collectors.bitcoin.errors import MalformedJob

Sv2Kind = Literal["pool", "miner", "empty"]
WITNESS_COMMITMENT = bytes.fromhex("aa21a9ed")
# OP_RETURN payload prefixes worth naming (commitments other chains put into coinbases).
OP_RETURN_MARKERS: tuple[tuple[bytes, str], ...] = (
    (WITNESS_COMMITMENT, "witness_commitment"),
    (b"RSKBLOCK:", "rsk"),
    (b"CORE", "coredao"),
    (b"\xfa\xbemm", "merged_mining"),
)
_SV2_TAG = re.compile(r"/([^/\x00-\x1f]{0,64})/([^/\x00-\x1f]{0,64})/")
_OCEAN = re.compile(r"ocean\.xyz|datum", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class CoinbaseOutput:
    value_sats: int
    address: str | None
    kind: str
    """p2pkh, p2sh, p2wpkh, p2wsh, p2tr, op_return or other."""
    marker: str | None = None
    """For OP_RETURN outputs: the named commitment (`OP_RETURN_MARKERS`) or ``unknown``."""
    commitment: str | None = None
    """For the witness commitment: the 32-byte commitment, hex."""


@dataclass(frozen=True, slots=True)
class Sv2Tag:
    kind: Sv2Kind
    pool_tag: str
    miner_tag: str


@dataclass(frozen=True, slots=True)
class CoinbaseEvidence:
    height: int | None
    scriptsig_hex: str
    tag: str
    outputs: tuple[CoinbaseOutput, ...] = field(default_factory=tuple)
    sv2: Sv2Tag | None = None
    ocean_datum: bool = False

    @property
    def payout_addresses(self) -> list[str]:
        """Addresses of outputs with a value, in output order, without repeats."""
        seen: list[str] = []
        for out in self.outputs:
            if out.value_sats > 0 and out.address and out.address not in seen:
                seen.append(out.address)
        return seen

    @property
    def witness_commitment(self) -> str | None:
        for out in self.outputs:
            if out.marker == "witness_commitment":
                return out.commitment
        return None

    @property
    def markers(self) -> list[str]:
        """Named OP_RETURN commitments, in output order (the witness commitment included)."""
        return [out.marker for out in self.outputs if out.marker is not None]

    @property
    def reward_sats(self) -> int:
        return sum(out.value_sats for out in self.outputs)


class _Reader:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.raw):
            raise MalformedJob(f"coinbase truncated at byte {self.pos} (wanted {n} more)")
        out = self.raw[self.pos : self.pos + n]
        self.pos += n
        return out

    def varint(self) -> int:
        first = self.take(1)[0]
        if first < 0xFD:
            return first
        size = {0xFD: 2, 0xFE: 4, 0xFF: 8}[first]
        return int.from_bytes(self.take(size), "little")


def script_address(script: bytes) -> tuple[str | None, str]:
    """Mainnet address and script kind of an output script (None for scripts without one)."""
    n = len(script)
    if n == 25 and script[:3] == b"\x76\xa9\x14" and script[23:] == b"\x88\xac":
        return base58.b58encode_check(b"\x00" + script[3:23]).decode(), "p2pkh"
    if n == 23 and script[:2] == b"\xa9\x14" and script[22] == 0x87:
        return base58.b58encode_check(b"\x05" + script[2:22]).decode(), "p2sh"
    if n == 22 and script[:2] == b"\x00\x14":
        return str(bech32m.encode("bc", 0, script[2:])), "p2wpkh"
    if n == 34 and script[:2] == b"\x00\x20":
        return str(bech32m.encode("bc", 0, script[2:])), "p2wsh"
    if n == 34 and script[:2] == b"\x51\x20":
        return str(bech32m.encode("bc", 1, script[2:])), "p2tr"
    if n >= 1 and script[0] == 0x6A:
        return None, "op_return"
    return None, "other"


def _op_return_marker(script: bytes) -> str:
    payload = _op_return_payload(script)
    for prefix, name in OP_RETURN_MARKERS:
        if payload.startswith(prefix):
            return name
    return "unknown"


def _op_return_payload(script: bytes) -> bytes:
    """The data after OP_RETURN and its push opcode (the raw rest when not a plain push)."""
    rest = script[1:]
    if not rest:
        return b""
    op = rest[0]
    if 1 <= op <= 75:
        return rest[1 : 1 + op]
    if op == 0x4C and len(rest) > 1:
        return rest[2 : 2 + rest[1]]
    return rest


def bip34_height(scriptsig: bytes) -> int | None:
    """The block height a coinbase scriptSig starts with (BIP34), None when absent."""
    if not scriptsig:
        return None
    size = scriptsig[0]
    if 0x51 <= size <= 0x60:  # OP_1..OP_16 (heights 1..16)
        return size - 0x50
    if not 1 <= size <= 8 or len(scriptsig) < 1 + size:
        return None
    return int.from_bytes(scriptsig[1 : 1 + size], "little")


def sv2_tag(text: str) -> Sv2Tag | None:
    """The Stratum V2 coinbase tag in a printable scriptSig, or None."""
    found = _SV2_TAG.search(text)
    if found is None:
        return None
    pool, miner = found.group(1), found.group(2)
    if not pool and not miner:
        return Sv2Tag("empty", "", "")
    if not miner:
        return Sv2Tag("pool", pool, "")
    return Sv2Tag("miner", pool, miner)


def latin1_text(scriptsig: bytes) -> str:
    """The scriptSig one character per byte (how tags are matched, see `attribution`)."""
    return scriptsig.decode("latin-1")


def decode_coinbase(tx_hex: str) -> CoinbaseEvidence:
    """Decode a legacy-serialized coinbase transaction; raises `MalformedJob`."""
    try:
        raw = bytes.fromhex(tx_hex)
    except ValueError:
        raise MalformedJob("coinbase is not hex") from None
    reader = _Reader(raw)
    reader.take(4)  # version
    if reader.varint() != 1:
        raise MalformedJob("a coinbase has exactly one input")
    reader.take(36)  # null prevout
    scriptsig = reader.take(reader.varint())
    reader.take(4)  # sequence
    outputs: list[CoinbaseOutput] = []
    for _ in range(reader.varint()):
        value = int.from_bytes(reader.take(8), "little")
        script = reader.take(reader.varint())
        address, kind = script_address(script)
        marker = _op_return_marker(script) if kind == "op_return" else None
        commitment = (
            _op_return_payload(script)[4:36].hex() if marker == "witness_commitment" else None
        )
        outputs.append(CoinbaseOutput(value, address, kind, marker, commitment))
    reader.take(4)  # locktime
    text = latin1_text(scriptsig)
    tag = coinbase_text(scriptsig)
    return CoinbaseEvidence(
        height=bip34_height(scriptsig),
        scriptsig_hex=scriptsig.hex(),
        tag=tag,
        outputs=tuple(outputs),
        sv2=sv2_tag(tag),
        ocean_datum=bool(_OCEAN.search(text)),
    )
