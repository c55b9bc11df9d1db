"""Where the pool list comes from: a URL or path in pools-v2 format, a disk cache, or the
curated list shipped with convmon.

`curated_pools.json` (beside this module) is convmon's own small list of the largest pools,
written from public facts (the coinbase tags they write and a few payout addresses they
publicly use) in pools-v2 format. It is the fallback when no list is configured or the
configured one cannot be read; mempool's maintained pools-v2.json is the default source.
A list fetched from a URL is cached on disk (written atomically) and used when the URL is
unreachable at the next start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path

import aiohttp

from convmon.collectors.bitcoin.attribution import PoolRegistry, entities_from_parent_companies
from convmon.collectors.bitcoin.errors import RegistryError
from convmon.collectors.bitcoin.sources import describe_error, safe_url

log = logging.getLogger(__name__)

DEFAULT_POOLS_URL = "https://raw.githubusercontent.com/mempool/mining-pools/master/pools-v2.json"
BUILTIN = "builtin"
CURATED_PATH = Path(__file__).with_name("curated_pools.json")


def curated_registry() -> PoolRegistry:
    return PoolRegistry.from_bytes(CURATED_PATH.read_bytes(), origin=BUILTIN)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


async def fetch_registry_bytes(url: str, timeout_s: float = 20.0) -> bytes:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session,
        session.get(url) as resp,
    ):
        resp.raise_for_status()
        return await resp.read()


async def load_registry(
    source: str | None, cache_path: Path | None = None, timeout_s: float = 20.0
) -> PoolRegistry:
    """The configured list, else the cached copy, else the curated list. Never raises for
    an unreachable or broken source: attribution must keep working offline."""
    if source is None or source == BUILTIN:
        return curated_registry()
    if not source.startswith(("http://", "https://")):
        return await asyncio.to_thread(_load_path, source, cache_path)
    try:
        raw = await fetch_registry_bytes(source, timeout_s)
        registry = PoolRegistry.from_bytes(raw, origin=safe_url(source))
        if cache_path is not None:
            await asyncio.to_thread(_write_atomic, cache_path, raw)
        return registry
    except (OSError, aiohttp.ClientError, TimeoutError, RegistryError) as exc:
        # The URL may carry a key: log it redacted, and never the client error's text.
        error = str(exc) if isinstance(exc, RegistryError) else describe_error(exc)
        log.warning("pool list unavailable", extra={"source": safe_url(source), "error": error})
    return await asyncio.to_thread(_fallback, cache_path)


def _load_path(source: str, cache_path: Path | None) -> PoolRegistry:
    try:
        return PoolRegistry.from_bytes(Path(source).expanduser().read_bytes(), origin=source)
    except (OSError, RegistryError) as exc:
        log.warning("pool list unavailable", extra={"source": source, "error": str(exc)})
    return _fallback(cache_path)


def _fallback(cache_path: Path | None) -> PoolRegistry:
    if cache_path is not None and cache_path.exists():
        try:
            return PoolRegistry.from_bytes(cache_path.read_bytes(), origin=str(cache_path))
        except (OSError, RegistryError) as exc:
            log.warning("cached pool list unreadable", extra={"error": str(exc)})
    return curated_registry()


def load_entities(inline: Mapping[str, str], path: Path | None) -> dict[str, str]:
    """Pool slug -> entity: the file (parent-companies format) overlaid by inline entries."""
    out: dict[str, str] = {}
    if path is not None:
        try:
            out.update(entities_from_parent_companies(json.loads(path.read_bytes())))
        except (OSError, ValueError) as exc:
            raise RegistryError(f"{path}: {exc}") from None
    out.update(inline)
    return out

