"""Stratum jobs from two wire formats, parsed into one `StratumJob`.

In:
1. mempool's websocket (``/api/v1/ws`` after ``{"track-stratum": "all"}``): first
   ``{"stratumJobs": "<a JSON string holding {pool unique id: job}>"}``, then
   ``{"stratumJob": job}`` per new job. A job has ``pool`` (the pools-v2 ``id``),
   ``height``, ``prevHash``, ``coinbase1``, ``coinbase2``, ``extraNonce``,
   ``extraNonce2Size``, ``merkleBranches``, ``version``, ``bits``, ``time``,
   ``timestamp``, ``cleanJobs``, ``received``, ``jobId`` (and ``coinbase``, ``scriptsig``,
   ``reward``, which we recompute).
2. Stratum v1 ``mining.notify`` params ``[job_id, prevhash, coinb1, coinb2, merkle_branch,
   version, nbits, ntime, clean_jobs]``, with the extranonce1 and extranonce2 size the
   ``mining.subscribe`` answer gave.

Out: `StratumJob`, the same for both; `prev_hash` is always the block hash in display
order (Stratum v1 sends it as the internal byte order with each 4-byte word swapped, and
that form is recognised wherever it appears), ``received`` is unix seconds. Anything
without the shape raises `MalformedJob` (a ``ValueError``): callers count and skip it.
The coinbase transaction is ``coinbase1 + extranonce1 + "00" * extranonce2_size +
coinbase2``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from convmon.collectors.bitcoin.coinbase import CoinbaseEvidence, bip34_height, decode_coinbase
from convmon.collectors.bitcoin.errors import MalformedJob

_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})*$")
_HASH = re.compile(r"^[0-9a-fA-F]{64}$")
_HEX_RUN = re.compile(r"^[0-9a-fA-F]*$")
MAX_BRANCHES = 32
MAX_COINBASE_HEX = 20_000


class StratumJob(msgspec.Struct, frozen=True, kw_only=True):
    pool: str
    """Who sent it: a pool slug once resolved (`templates.PoolNamer`), before that the
    mempool pool id as text, or the configured slug of a Stratum v1 endpoint."""
    height: int | None
    prev_hash: str
    coinbase1: str
    coinbase2: str
    extranonce1: str = ""
    extranonce2_size: int = 0
    merkle_branches: tuple[str, ...] = ()
    version: str = ""
    bits: str = ""
    ntime: str = ""
    clean_jobs: bool = False
    received: float
    job_id: str = ""

    @property
    def coinbase_hex(self) -> str:
        return self.coinbase1 + self.extranonce1 + "00" * self.extranonce2_size + self.coinbase2

    def coinbase(self) -> CoinbaseEvidence:
        """The decoded coinbase (raises `MalformedJob`)."""
        return decode_coinbase(self.coinbase_hex)


def display_prev_hash(value: str) -> str:
    """The previous block hash in display order. A display-order hash starts with the
    proof-of-work zeros; the Stratum v1 form ends with them (words swapped, then the
    whole reversed, gives display order)."""
    value = value.lower()
    if not _HASH.match(value):
        raise MalformedJob("prevhash is not 32 bytes of hex")
    if value.startswith("00000000") or not value.endswith("00000000"):
        return value
    words = bytes.fromhex(value)
    swapped = b"".join(words[i : i + 4][::-1] for i in range(0, 32, 4))
    return swapped[::-1].hex()


def stratum_prev_hash(display: str) -> str:
    """The Stratum v1 form of a display-order block hash (the inverse of the above)."""
    internal = bytes.fromhex(display)[::-1]
    return b"".join(internal[i : i + 4][::-1] for i in range(0, 32, 4)).hex()


def _hex(value: Any, what: str, *, limit: int = MAX_COINBASE_HEX) -> str:
    if not isinstance(value, str) or len(value) > limit or not _HEX.match(value):
        raise MalformedJob(f"{what} is not hex")
    return value.lower()


def _branches(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or len(value) > MAX_BRANCHES:
        raise MalformedJob("merkle branches are not a list of at most 32 hashes")
    try:
        joined = "".join(value)
    except TypeError:
        raise MalformedJob("a merkle branch is not text") from None
    # One regex over all branches (the hot path of every job), then the lengths.
    if not _HEX_RUN.match(joined) or any(len(b) != 64 for b in value):
        raise MalformedJob("a merkle branch is not 32 bytes of hex")
    if joined.islower() or not joined:
        return tuple(value)
    return tuple(b.lower() for b in value)


def _seconds(value: Any, default: float) -> float:
    """Unix seconds from a seconds or milliseconds number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value) / 1000.0 if value > 1e11 else float(value)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MalformedJob(f"{what} is not a non-negative integer")
    return value


def job_from_mempool(obj: Any, received: float) -> StratumJob:
    """One job of mempool's websocket; ``received`` (unix s) stands in when it has none."""
    if not isinstance(obj, Mapping):
        raise MalformedJob("a stratum job is not an object")
    pool = obj.get("pool")
    if isinstance(pool, bool) or not isinstance(pool, int | str) or pool == "":
        raise MalformedJob("stratum job without a pool id")
    height = obj.get("height")
    if height is not None:
        height = _int(height, "height")
    coinbase1 = _hex(obj.get("coinbase1"), "coinbase1")
    job = StratumJob(
        pool=str(pool),
        height=height,
        prev_hash=display_prev_hash(str(obj.get("prevHash", ""))),
        coinbase1=coinbase1,
        coinbase2=_hex(obj.get("coinbase2"), "coinbase2"),
        extranonce1=_hex(obj.get("extraNonce", ""), "extraNonce", limit=64),
        extranonce2_size=_int(obj.get("extraNonce2Size", 0), "extraNonce2Size"),
        merkle_branches=_branches(obj.get("merkleBranches")),
        version=str(obj.get("version", "")),
        bits=str(obj.get("bits", "")),
        ntime=str(obj.get("time", "")),
        clean_jobs=bool(obj.get("cleanJobs", False)),
        received=_seconds(obj.get("received"), received),
        job_id=str(obj.get("jobId", "")),
    )
    if job.extranonce2_size > 32:
        raise MalformedJob("extraNonce2Size above 32 bytes")
    if height is None:
        return msgspec.structs.replace(job, height=_height_from_coinbase1(coinbase1))
    return job


def jobs_from_frame(text: str | bytes, received: float) -> Iterator[StratumJob | MalformedJob]:
    """The jobs of one websocket frame: ``{"stratumJobs": "<JSON string>"}`` (or, as
    some servers send it, the object itself) or ``{"stratumJob": job}``. A frame that is
    not JSON yields one `MalformedJob`; a bad job among good ones yields its error in its
    place, so the caller counts it and keeps the rest. Other messages yield nothing."""
    try:
        doc = json.loads(text)
    except ValueError:
        yield MalformedJob("websocket frame is not JSON")
        return
    if not isinstance(doc, dict):
        yield MalformedJob("websocket frame is not a JSON object")
        return
    if "stratumJob" in doc:
        yield _try(doc["stratumJob"], received)
    if "stratumJobs" in doc:
        yield from jobs_from_snapshot(doc["stratumJobs"], received)


def jobs_from_snapshot(value: Any, received: float) -> Iterator[StratumJob | MalformedJob]:
    """The ``stratumJobs`` value: a JSON string (as mempool sends it) or an object, of
    pool unique id -> job."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            yield MalformedJob("stratumJobs is not a JSON string of an object")
            return
    if not isinstance(value, dict):
        yield MalformedJob("stratumJobs is not an object")
        return
    for job in value.values():
        yield _try(job, received)


def _try(obj: Any, received: float) -> StratumJob | MalformedJob:
    try:
        return job_from_mempool(obj, received)
    except MalformedJob as exc:
        return exc


def job_from_notify(
    params: Any, *, pool: str, extranonce1: str, extranonce2_size: int, received: float
) -> StratumJob:
    """A Stratum v1 ``mining.notify``; the height comes from coinbase1 (BIP34)."""
    if not isinstance(params, list) or len(params) < 9:
        raise MalformedJob("mining.notify params are not the 9 expected fields")
    job_id, prevhash, coinb1, coinb2, branches, version, nbits, ntime, clean = params[:9]
    coinbase1 = _hex(coinb1, "coinb1")
    return StratumJob(
        pool=pool,
        height=_height_from_coinbase1(coinbase1),
        prev_hash=display_prev_hash(str(prevhash)),
        coinbase1=coinbase1,
        coinbase2=_hex(coinb2, "coinb2"),
        extranonce1=extranonce1,
        extranonce2_size=extranonce2_size,
        merkle_branches=_branches(branches),
        version=str(version),
        bits=str(nbits),
        ntime=str(ntime),
        clean_jobs=bool(clean),
        received=received,
        job_id=str(job_id),
    )


def _height_from_coinbase1(coinbase1: str) -> int | None:
    """BIP34 height from the start of the scriptSig, which coinbase1 always holds:
    version (4) + input count (1) + null prevout (36) + scriptSig length (1 byte below
    253) + the height push."""
    raw = bytes.fromhex(coinbase1[: 2 * 51])
    if len(raw) < 43:
        return None
    return bip34_height(raw[42:])


def jobs_from_file(text: str, received: float) -> Iterator[StratumJob | MalformedJob]:
    """A recorded file: the ``stratumJobs`` object (or the whole websocket message, or
    the JSON string it carries), else JSON lines, each a job or a websocket message."""
    stripped = text.strip()
    try:
        doc = json.loads(stripped) if stripped else None
    except ValueError:
        doc = None
    if isinstance(doc, str):
        yield from jobs_from_snapshot(doc, received)
        return
    if isinstance(doc, dict):
        if "stratumJobs" in doc or "stratumJob" in doc:
            yield from jobs_from_frame(stripped, received)
        elif "coinbase1" in doc:
            yield _try(doc, received)
        else:
            yield from jobs_from_snapshot(doc, received)
        return
    for line in stripped.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            item = json.loads(line)
        except ValueError:
            yield MalformedJob("a line is not JSON")
            continue
        if isinstance(item, dict) and ("stratumJob" in item or "stratumJobs" in item):
            yield from jobs_from_frame(line, received)
        else:
            yield _try(item, received)
