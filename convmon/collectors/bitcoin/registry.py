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
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from convmon.collectors.bitcoin.attribution import PoolRegistry
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


@dataclass(frozen=True)
class LoadedPoolList:
    """The pool list a load produced, and why it is not the configured one (if it is not)."""

    registry: PoolRegistry
    source: str
    """The configured source (a URL redacted)."""
    error: str | None = None
    """Why the configured list could not be used; None when it is the list in use."""

    @property
    def fallback(self) -> bool:
        return self.error is not None


def configured_origin(source: str | None) -> str:
    """The origin a list read from ``source`` carries: ``builtin``, the path, or the URL
    redacted. A list whose origin differs is a fallback."""
    if source is None or source == BUILTIN:
        return BUILTIN
    return safe_url(source) if source.startswith(("http://", "https://")) else source


async def load_pool_list(
    source: str | None, cache_path: Path | None = None, timeout_s: float = 20.0
) -> LoadedPoolList:
    """The configured list, else the cached copy, else the curated list, and why. Never
    raises for an unreachable or broken source: attribution must keep working offline.
    Logs nothing: `load_registry` (at start) says it once, loudly."""
    configured = configured_origin(source)
    if source is None or source == BUILTIN:
        return LoadedPoolList(curated_registry(), configured)
    if not source.startswith(("http://", "https://")):
        try:
            raw = await asyncio.to_thread(_read_path, source)
            return LoadedPoolList(PoolRegistry.from_bytes(raw, origin=source), configured)
        except (OSError, RegistryError) as exc:
            error = str(exc)
    else:
        try:
            raw = await fetch_registry_bytes(source, timeout_s)
            registry = PoolRegistry.from_bytes(raw, origin=configured)
            if cache_path is not None:
                await asyncio.to_thread(_write_atomic, cache_path, raw)
            return LoadedPoolList(registry, configured)
        except (OSError, aiohttp.ClientError, TimeoutError, RegistryError) as exc:
            # The URL may carry a key: never the client error's text, which may quote it.
            error = str(exc) if isinstance(exc, RegistryError) else describe_error(exc)
    registry, cache_error = await asyncio.to_thread(_fallback, cache_path)
    if cache_error:
        error = f"{error}; {cache_error}"
    return LoadedPoolList(registry, configured, error)


async def load_registry(
    source: str | None, cache_path: Path | None = None, timeout_s: float = 20.0
) -> PoolRegistry:
    """`load_pool_list`, with one warning naming the list used instead and its size when
    the configured list is unavailable (fewer pools: smaller ones turn ``unknown``)."""
    loaded = await load_pool_list(source, cache_path, timeout_s)
    if loaded.fallback:
        log.warning(
            "pool list unavailable: using %s (%d pools)",
            loaded.registry.origin, len(loaded.registry.pools),
            extra={"source": loaded.source, "error": loaded.error,
                   "origin": loaded.registry.origin, "pools": len(loaded.registry.pools)},
        )
    return loaded.registry


def _read_path(source: str) -> bytes:
    return Path(source).expanduser().read_bytes()


def _fallback(cache_path: Path | None) -> tuple[PoolRegistry, str | None]:
    if cache_path is not None and cache_path.exists():
        try:
            return PoolRegistry.from_bytes(cache_path.read_bytes(), origin=str(cache_path)), None
        except (OSError, RegistryError) as exc:
            return curated_registry(), f"cached pool list unreadable: {exc}"
    return curated_registry(), None
