"""SIMULATED stratum jobs: pools that build their own block templates and proxy pools that
relay another pool's template under their own coinbase tag and payout address.

Used by the local stratum server (`convmon.sim.stratum`), tests, the benchmark and the
demo; production code never imports it. Jobs are built like real ones: a legacy coinbase
split around the extranonces (BIP34 height, the pool's tag, a payout output and the
witness commitment), merkle branches per template (a builder's branches change with every
refresh, its proxies repeat them), in mempool's websocket job shape (`as_mempool`) or as
Stratum v1 ``mining.notify`` params (`as_notify`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import bech32m  # type: ignore[import-untyped]

from convmon.collectors.bitcoin.attribution import block_subsidy_sats
from convmon.collectors.bitcoin.stratum import stratum_prev_hash

EXTRANONCE1 = "f000000d"
EXTRANONCE2_SIZE = 8


@dataclass(frozen=True)
class SimStratumPool:
    pool_id: int
    """mempool's pool unique id (pools-v2 ``id``)."""
    slug: str
    tag: str
    """Coinbase tag text, e.g. ``/AntPool/``."""
    provider: str | None = None
    """Slug of the pool whose template this one relays; None: builds its own."""
    branches: int = 11
    """Merkle branches of its own templates (about log2 of the transactions)."""

    @property
    def payout_address(self) -> str:
        program = hashlib.sha256(f"payout:{self.slug}".encode()).digest()[:20]
        return str(bech32m.encode("bc", 0, program))


def _h(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


def template_branches(builder: SimStratumPool, height: int, refresh: int) -> list[str]:
    """The merkle branches of ``builder``'s template at ``height`` after ``refresh``
    refreshes (deterministic, different for every builder, height and refresh)."""
    return [_h("branch", builder.slug, height, refresh, i) for i in range(builder.branches)]


def _push(data: bytes) -> bytes:
    assert len(data) < 76
    return bytes([len(data)]) + data


def coinbase_parts(pool: SimStratumPool, height: int, fees_sats: int = 12_345_678) -> tuple[
    str, str
]:
    """coinbase1 and coinbase2 around the extranonces, as a pool sends them."""
    height_bytes = height.to_bytes((height.bit_length() + 8) // 8, "little")
    head = _push(height_bytes)
    tail = pool.tag.encode("latin-1")
    script_len = len(head) + len(bytes.fromhex(EXTRANONCE1)) + EXTRANONCE2_SIZE + len(tail)
    coinbase1 = (
        (1).to_bytes(4, "little") + b"\x01" + b"\x00" * 32 + b"\xff\xff\xff\xff"
        + bytes([script_len]) + head
    )
    _, program = bech32m.decode("bc", pool.payout_address)
    payout_script = b"\x00\x14" + bytes(program)
    commitment = b"\x6a\x24\xaa\x21\xa9\xed" + bytes.fromhex(_h("wc", pool.slug, height))
    value = block_subsidy_sats(height) + fees_sats
    outputs = (
        b"\x02"
        + value.to_bytes(8, "little") + bytes([len(payout_script)]) + payout_script
        + (0).to_bytes(8, "little") + bytes([len(commitment)]) + commitment
    )
    coinbase2 = tail + b"\xff\xff\xff\xff" + outputs + b"\x00\x00\x00\x00"
    return coinbase1.hex(), coinbase2.hex()


@dataclass(frozen=True)
class SimJob:
    """One job as a pool sends it; ``received`` is unix seconds."""

    pool: SimStratumPool
    height: int
    prev_hash: str
    """Display order."""
    coinbase1: str
    coinbase2: str
    merkle_branches: tuple[str, ...]
    received: float
    job_id: str
    clean_jobs: bool

    def as_mempool(self) -> dict[str, Any]:
        """mempool's websocket job (``prevHash`` as the pool's notify carried it)."""
        coinbase = self.coinbase1 + EXTRANONCE1 + "00" * EXTRANONCE2_SIZE + self.coinbase2
        return {
            "pool": self.pool.pool_id, "height": self.height,
            "prevHash": stratum_prev_hash(self.prev_hash),
            "coinbase1": self.coinbase1, "coinbase2": self.coinbase2,
            "extraNonce": EXTRANONCE1, "extraNonce2Size": EXTRANONCE2_SIZE,
            "merkleBranches": list(self.merkle_branches), "version": "20000000",
            "bits": "17025105", "time": f"{int(self.received):08x}",
            "timestamp": int(self.received * 1000), "cleanJobs": self.clean_jobs,
            "received": int(self.received * 1000), "jobId": self.job_id,
            "coinbase": coinbase, "scriptsig": "", "reward": 0,
        }

    def as_notify(self) -> list[Any]:
        """Stratum v1 ``mining.notify`` params."""
        return [
            self.job_id, stratum_prev_hash(self.prev_hash), self.coinbase1, self.coinbase2,
            list(self.merkle_branches), "20000000", "17025105", f"{int(self.received):08x}",
            self.clean_jobs,
        ]


def round_jobs(
    pools: Sequence[SimStratumPool], height: int, prev_hash: str, refresh: int, now: float,
    *, relay_delay_s: float = 0.4,
) -> list[SimJob]:
    """Every pool's job at ``height`` after ``refresh`` refreshes (0: the new tip, sent
    with ``clean_jobs``). A proxy relays its provider's current branches a little later."""
    by_slug = {p.slug: p for p in pools}
    out: list[SimJob] = []
    for i, pool in enumerate(pools):
        builder = by_slug.get(pool.provider or pool.slug, pool)
        delay = relay_delay_s if pool.provider else 0.0
        branches = tuple(template_branches(builder, height, refresh))
        coinbase1, coinbase2 = coinbase_parts(pool, height)
        out.append(SimJob(
            pool, height, prev_hash, coinbase1, coinbase2, branches,
            now + delay + i * 0.001, f"{height:x}{refresh:02x}", refresh == 0,
        ))
    out.sort(key=lambda j: j.received)
    return out


def job_stream(
    pools: Sequence[SimStratumPool], heights: range, t0: float, *, refreshes: int = 2,
    block_interval_s: float = 600.0, refresh_s: float = 30.0,
) -> Iterator[SimJob]:
    """Every pool's jobs over ``heights``: a new tip every ``block_interval_s`` and
    ``refreshes`` jobs per pool on each, ``refresh_s`` apart."""
    for i, height in enumerate(heights):
        prev = block_hash(height - 1)
        for refresh in range(refreshes):
            now = t0 + block_interval_s * i + refresh_s * refresh
            yield from round_jobs(pools, height, prev, refresh, now)


def block_hash(height: int, salt: str = "") -> str:
    """A display-order block hash with proof-of-work zeros."""
    return "00000000" + _h("block", height, salt)[8:]


DEMO_POOLS: tuple[SimStratumPool, ...] = (
    SimStratumPool(111, "foundryusa", "/Foundry USA Pool #dropgold/"),
    SimStratumPool(44, "antpool", "/AntPool/"),
    SimStratumPool(2, "ultimuspool", "/ultimus/", provider="antpool"),
    SimStratumPool(43, "braiinspool", "/slush/", provider="antpool"),
    SimStratumPool(94, "poolin", "/poolin.com/", provider="antpool"),
    SimStratumPool(105, "binancepool", "/Binance/", provider="antpool"),
    SimStratumPool(161, "miningsquared", "/MiningSquared/", provider="antpool"),
    SimStratumPool(141, "secpool", "/SecPool/"),
    SimStratumPool(4, "luxor", "/LUXOR/", provider="secpool"),
    SimStratumPool(36, "f2pool", "/F2Pool/"),
    SimStratumPool(73, "viabtc", "/ViaBTC/"),
)
"""mempool ids and tags of real pools; the relays are the ones seen in real jobs."""
