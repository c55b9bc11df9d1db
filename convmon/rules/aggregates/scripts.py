"""The Lua scripts of the aggregates, loaded once and called with EVALSHA.

Each script is ``lib.lua`` + ``series.lua`` + its own file, so helpers are shared without
Redis Functions (Redis ≥ 6.2 has EVALSHA; Functions need 7.0). A server that forgot the
scripts (restart, ``SCRIPT FLUSH``) answers NOSCRIPT; callers reload and retry, which is
safe because every script is idempotent.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from redis.asyncio import Redis

_SHARED = ("lib.lua", "series.lua")
SCRIPT_NAMES = ("apply", "btc_snapshot", "series_snapshot")


def _read(name: str) -> str:
    return resources.files(__package__).joinpath("lua", name).read_text(encoding="utf-8")


class Scripts:
    """Script sources and their SHA1s; `load` registers them on the server."""

    def __init__(self) -> None:
        shared = "\n".join(_read(n) for n in _SHARED)
        self.sources: dict[str, str] = {
            name: f"{shared}\n{_read(name + '.lua')}" for name in SCRIPT_NAMES
        }
        self.sha: dict[str, str] = {
            name: hashlib.sha1(src.encode("utf-8")).hexdigest()
            for name, src in self.sources.items()
        }

    async def load(self, redis: Redis) -> None:
        for name, src in self.sources.items():
            sha: Any = await redis.script_load(src)
            if isinstance(sha, bytes):
                sha = sha.decode()
            if sha != self.sha[name]:
                raise RuntimeError(f"Redis returned an unexpected SHA1 for script {name}")
