"""Embedded Redis: starts, persists with AOF across restarts, stops cleanly, is shared."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from convmon.monitor.config import RedisSettings
from convmon.monitor.redisconn import find_redis_server, open_redis
from tests.shared_data import require_binary


@pytest.fixture
def short_dir() -> Path:
    # unix socket paths are limited to ~107 bytes; pytest's tmp_path can exceed that.
    return Path(tempfile.mkdtemp(prefix="cm-"))


async def test_embedded_starts_persists_and_stops(short_dir: Path) -> None:
    require_binary("redis-server", find_redis_server())
    settings = RedisSettings()
    async with open_redis(settings, short_dir) as client:
        await client.set("k", "v")
        await client.xadd("s", {"a": "1"})
        sock = short_dir / "redis" / "redis.sock"
        assert sock.exists()
        # A second process on the same data dir shares the running server.
        async with open_redis(settings, short_dir) as second:
            assert await second.get("k") == b"v"
        assert await client.ping()
    assert not (short_dir / "redis" / "redis.sock").exists()
    assert (short_dir / "redis" / "appendonlydir").exists() or any(
        p.name.startswith("appendonly") for p in (short_dir / "redis").iterdir()
    )
    async with open_redis(settings, short_dir) as client:
        assert await client.get("k") == b"v"
        assert await client.xlen("s") == 1


async def test_read_only_commands_do_not_start_an_embedded_server(short_dir: Path) -> None:
    from convmon.monitor.redisconn import RedisSetupError

    with pytest.raises(RedisSetupError, match="no convmon daemon is running"):
        async with open_redis(RedisSettings(), short_dir, start_embedded=False):
            pass
    assert not (short_dir / "redis" / "redis.sock").exists()


async def test_the_last_user_stops_the_embedded_server_not_its_starter(short_dir: Path) -> None:
    require_binary("redis-server", find_redis_server())
    settings = RedisSettings()
    sock = short_dir / "redis" / "redis.sock"
    starter = open_redis(settings, short_dir)
    client = await starter.__aenter__()
    joined = open_redis(settings, short_dir)
    daemon = await joined.__aenter__()
    await client.set("k", "v")
    await starter.__aexit__(None, None, None)  # the starter leaves first
    assert await daemon.get("k") == b"v"  # the joined user still has its server
    await joined.__aexit__(None, None, None)
    for _ in range(100):
        if not sock.exists():
            break
        await asyncio.sleep(0.05)
    assert not sock.exists()
