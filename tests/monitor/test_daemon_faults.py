"""The whole daemon under faults: it never goes deaf without saying so.

- A Redis ``kill -9`` (back after a while, from its AOF): every component comes back by
  itself, and while it is away readiness and liveness say so.
- ``/readyz`` turns ready with the shipped collectors: readiness follows what runs.
- A configured Redis that is not there at start is waited for.
- A collector of a process killed with -9 reads as down within one heartbeat TTL.
- A secret URL (an API key in its path) never appears in logs or API answers, whatever
  library produced the text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from convmon.monitor.app import LoadedConfig, load_config
from convmon.monitor.daemon import run_daemon
from convmon.monitor.http import HttpServer
from convmon.monitor.keys import Keys
from convmon.monitor.redisconn import EmbeddedRedis, find_redis_server
from convmon.monitor.statemetrics import collector_statuses
from convmon.sim.bitcoin_chain import SimPool, make_block
from convmon.sim.bitcoin_node import BitcoinNodeServer
from convmon.sim.exchanges import CoinbaseFeedServer
from convmon.sim.solana_rpc import LocalSolanaServer
from tests.shared_data import require_binary
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
SUPERVISION = {
    "restart_backoff_initial_s": 0.2,
    "restart_backoff_max_s": 1.0,
    "heartbeat_ttl_s": 3,
    "shutdown_timeout_s": 10,
}


def solana_overrides(server: LocalSolanaServer) -> dict[str, Any]:
    rpc = {"http_url": server.http_url, "ws_url": server.ws_url, "ping_interval_s": 1.0}
    return {
        "collectors": {
            "bitcoin": {"enabled": False},
            "market": {"enabled": False},
            "stablecoins": {"evm": {"enabled": False}, "solana": {"rpc": rpc},
                            "tron": {"enabled": False}},
            "depin": {"rpc": rpc},
            "payments": {"solana": {"rpc": rpc}},
        },
    }


@contextlib.asynccontextmanager
async def running_daemon(config: LoadedConfig) -> AsyncIterator[HttpServer]:
    stop = asyncio.Event()
    started = asyncio.Event()
    extras: dict[str, Any] = {}
    task = asyncio.create_task(
        run_daemon(config, stop=stop, install_signals=False, started=started, extras=extras)
    )
    try:
        await eventually(lambda: started.is_set() or task.done(), "daemon started")
        assert not task.done(), task
        http = extras["runtime"].extras["http"]
        assert isinstance(http, HttpServer)
        await eventually(lambda: http.port is not None, "http listening")
        yield http
    finally:
        stop.set()
        assert await asyncio.wait_for(task, 60) == 0


async def get_json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.json()


def states(http: HttpServer) -> dict[str, dict[str, object]]:
    return {str(c["name"]): c for c in http.components()}


@pytest.fixture
async def own_redis() -> AsyncIterator[EmbeddedRedis]:
    binary = require_binary("redis-server", find_redis_server())
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="cm-f-")), binary=binary)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_redis_kill9_stops_nothing_for_good(own_redis: EmbeddedRedis) -> None:
    async with LocalSolanaServer() as solana:
        config = load_config(
            None,
            environ={"CONVMON_REDIS__URL": own_redis.url, "CONVMON_HTTP__PORT": "0",
                     "CONVMON_INSTANCE": "faults", "CONVMON_REDIS__SOCKET_TIMEOUT_S": "2"},
            overrides={**solana_overrides(solana), "supervisor": SUPERVISION},
        )
        async with running_daemon(config) as http:
            base = f"http://127.0.0.1:{http.port}"
            expected = {"depin", "stablecoins_solana", "stablecoins_solana-supply",
                        "alerts-dispatcher", "rules.consumer", "rules.timer", "heartbeat", "http"}
            assert expected <= set(states(http))

            async def ready() -> bool:
                return (await get_json(f"{base}/readyz"))[0] == 200

            await eventually(ready, "ready with the shipped Solana collectors")

            assert own_redis.process is not None
            own_redis.process.kill()
            own_redis.process.wait()
            own_redis.process = None
            await eventually(
                lambda: all(int(str(states(http)[n]["restarts"])) >= 1
                            for n in ("depin", "stablecoins_solana", "alerts-dispatcher")),
                "components that use Redis failed and were counted",
            )
            status, body = await get_json(f"{base}/readyz")
            assert status == 503, body
            await asyncio.sleep(2)  # Redis stays away for a while: restarts back off
            await own_redis.start()

            await eventually(
                lambda: all(c["state"] == "running" for c in states(http).values()),
                "every component running again",
            )
            await eventually(ready, "ready again after Redis came back")
            status, doc = await get_json(f"{base}/api/v1/status")
            assert status == 200
            assert doc["collectors"]["depin"]["connected"] is True
            stopped = [c for c in doc["components"] if c["state"] == "stopped"]
            assert stopped == []
            async with aiohttp.ClientSession() as s, s.get(f"{base}/metrics") as r:
                text = await r.text()
            assert 'convmon_component_up{component="alerts-dispatcher",role="alerts"} 1.0' in text
            assert 'convmon_collector_up{collector="depin"} 1.0' in text


async def test_readiness_follows_the_components_that_run(redis_url: str, keys: Keys) -> None:
    async with LocalSolanaServer() as solana:
        config = load_config(
            None,
            environ={"CONVMON_REDIS__URL": redis_url, "CONVMON_REDIS__PREFIX": keys.prefix,
                     "CONVMON_HTTP__PORT": "0", "CONVMON_INSTANCE": "ready"},
            overrides=solana_overrides(solana),
        )
        async with running_daemon(config) as http:
            assert http.local_collectors == [
                "depin", "depin_supply", "payments_solana", "stablecoins_solana"]
            base = f"http://127.0.0.1:{http.port}"

            async def ready() -> bool:
                return (await get_json(f"{base}/readyz"))[0] == 200

            await eventually(ready, "ready")


def fixture_env(url: str, prefix: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "CONVMON_REDIS__URL": url,
            "CONVMON_REDIS__PREFIX": prefix, "CONVMON_HTTP__PORT": "0",
            "CONVMON_SUPERVISOR__HEARTBEAT_TTL_S": "3", "CONVMON_LOG__FORMAT": "json"}


async def test_a_dead_process_reads_as_down_within_one_ttl(
    redis_url: str, redis: Redis, keys: Keys
) -> None:
    env = fixture_env(redis_url, keys.prefix)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.monitor.liveness_fixture",
        cwd=ROOT, env=env, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async def up() -> str:
            return (await collector_statuses(redis, keys)).get("probe", {}).get("up", "")

        await eventually(lambda: _is(up(), "1"), "the fixture's collector is up")
        doc = json.loads(await convmon_cli("status", "--json", env=env))
        [process] = doc["processes"]
        assert [(c["name"], c["state"], c["restarts"]) for c in process["components"]
                if c["name"] == "probe"] == [("probe", "running", 0)]
        assert doc["collectors"]["probe"]["connected"] is True
        proc.kill()
        await proc.wait()
        status = await redis.hgetall(keys.collector_status("probe"))
        assert status[b"connected"] == b"1"  # the flag nobody cleared
        await eventually(lambda: _is(up(), "0"), "down once the heartbeat expired", limit_s=10)
        assert not await redis.exists(keys.heartbeat("liveness"))
        # No process is left: status says so plainly instead of showing the stale state.
        code, shown = await convmon_cli_result("status", env=env)
        assert code == 1 and "no convmon daemon is running" in shown
    finally:
        if proc.returncode is None:
            proc.kill()


async def convmon_cli_result(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Exit code and output (stdout and stderr) of a ``convmon`` command."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convmon", *args, cwd=ROOT,
        env={**env, "COLUMNS": "200"}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def convmon_cli(*args: str, env: dict[str, str]) -> str:
    """Standard output of a ``convmon`` command that must succeed."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convmon", *args, cwd=ROOT,
        env={**env, "COLUMNS": "200"}, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err
    return out.decode()


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def test_the_daemon_waits_for_redis_at_start() -> None:
    binary = require_binary("redis-server", find_redis_server())
    server = EmbeddedRedis(Path(tempfile.mkdtemp(prefix="cm-w-")), binary=binary)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convmon", "run", "--role", "rules",
        cwd=ROOT, env={**fixture_env(server.url, "wait"), "CONVMON_INSTANCE": "waiter"},
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert "waiting for it" in json.loads(line)["msg"]
        await server.start()
        client: Redis = Redis.from_url(server.url)
        try:
            await eventually(lambda: client.exists("wait:heartbeat:waiter"), "daemon started")
        finally:
            await client.aclose()
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await server.stop()


async def test_a_secret_url_never_leaks(redis_url: str, keys: Keys) -> None:
    key = "k3yInThePath0123456789abcdef"
    env = {
        **fixture_env(redis_url, keys.prefix),
        "CONVMON_INSTANCE": "leak",
        # Nothing listens on port 9 (discard): every connection attempt fails, and the
        # libraries quote the URL in their errors.
        "ETH_WS": f"ws://127.0.0.1:9/v2/{key}",
        "ETH_HTTP": f"http://127.0.0.1:9/v2/{key}",
        "CONVMON_COLLECTORS__STABLECOINS__EVM__CHAINS__ETHEREUM__WS_URL": "env:ETH_WS",
        "CONVMON_COLLECTORS__STABLECOINS__EVM__CHAINS__ETHEREUM__HTTP_URL": "env:ETH_HTTP",
        "CONVMON_COLLECTORS__STABLECOINS__EVM__CHAINS__BASE__ENABLED": "false",
        "CONVMON_COLLECTORS__BITCOIN__ENABLED": "false",
        "CONVMON_COLLECTORS__MARKET__ENABLED": "false",
        "CONVMON_COLLECTORS__DEPIN__ENABLED": "false",
        "CONVMON_COLLECTORS__STABLECOINS__SOLANA__ENABLED": "false",
        "CONVMON_COLLECTORS__PAYMENTS__SOLANA__ENABLED": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "convmon", "run", "--role", "collectors,api",
        cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE,
    )
    logs: list[str] = []
    port: list[int] = []

    async def read_logs() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace")
            logs.append(line)
            with contextlib.suppress(ValueError, KeyError):
                record = json.loads(line)
                if record["msg"] == "http listening":
                    port.append(int(record["port"]))

    reader = asyncio.create_task(read_logs())
    try:
        await eventually(lambda: port, "http listening")
        base = f"http://127.0.0.1:{port[0]}"

        async def errored() -> bool:
            status, doc = await get_json(f"{base}/api/v1/status")
            eth = doc.get("collectors", {}).get("stablecoins_ethereum") or {}
            return status == 200 and bool(eth.get("last_error"))

        await eventually(errored, "the Ethereum collector reported an error")
        answer = json.dumps((await get_json(f"{base}/api/v1/status"))[1])
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)
        await reader
    finally:
        if proc.returncode is None:
            proc.kill()
    text = "".join(logs)
    assert key not in answer and key not in text
    # The URL was quoted by the libraries and scrubbed, not merely never printed.
    assert "***" in answer and "***" in text


async def test_each_collector_comes_back_after_its_source_went_away(
    redis_url: str, redis: Redis, keys: Keys
) -> None:
    """Every source goes away in turn (its server closes, so connections drop and new ones
    are refused) and comes back on the same port: the collector reads as down, then up
    again, and no component ever stops."""
    clock_start = 1_700_000_000
    genesis = make_block(800_000, "00" * 32, clock_start, SimPool("/Foundry USA Pool/"))
    esplora = BitcoinNodeServer([genesis])
    await esplora.start()
    coinbase = CoinbaseFeedServer()
    await coinbase.start()
    solana = LocalSolanaServer()
    await solana.start()
    overrides = solana_overrides(solana)
    overrides["collectors"]["bitcoin"] = {
        "enabled": True, "source": "esplora", "backfill_blocks": 1, "poll_interval_s": 0.5,
        "esplora": {"base_url": esplora.base_url, "ws_url": esplora.ws_url},
        "backoff_initial_s": 0.2, "backoff_max_s": 1.0, "pools": {"source": "builtin"},
    }
    overrides["collectors"]["stablecoins"]["evm"] = {"chains": {
        "ethereum": {"ws_url": "ws://127.0.0.1:9/", "http_url": "http://127.0.0.1:9/"},
        "base": {"enabled": False},
    }}
    overrides["collectors"]["market"] = {
        "enabled": True, "coinbase": {"url": coinbase.url}, "kraken": {"enabled": False},
        "coingecko": {"enabled": False}, "health_interval_s": 0.5,
        "venues": {name: {"enabled": False} for name in ("binance", "okx", "bybit")},
    }
    config = load_config(
        None,
        environ={"CONVMON_REDIS__URL": redis_url, "CONVMON_REDIS__PREFIX": keys.prefix,
                 "CONVMON_HTTP__PORT": "0", "CONVMON_INSTANCE": "sources"},
        overrides={**overrides, "supervisor": SUPERVISION},
    )
    servers: dict[str, tuple[Any, Any]] = {
        "bitcoin": (esplora, lambda: esplora.start(port=esplora.port)),
        "market": (coinbase, lambda: coinbase.start(port=coinbase.port)),
        "depin": (solana, lambda: solana.start(port=solana.port)),
    }
    try:
        async with running_daemon(config) as http:
            async def up(name: str) -> bool:
                return (await collector_statuses(redis, keys)).get(name, {}).get("up") == "1"

            for name in ("bitcoin", "market", "depin", "stablecoins_solana"):
                await eventually(lambda n=name: up(n), f"{name} up")  # type: ignore[misc]
            await check_exposition(f"http://127.0.0.1:{http.port}/metrics")
            for name, (server, restart) in servers.items():
                await server.close()
                await eventually(lambda n=name: _not(up(n)), f"{name} down once its source left")
                await restart()
                await eventually(lambda n=name: up(n), f"{name} up once its source came back")
            assert all(c["state"] != "stopped" for c in states(http).values())
    finally:
        for server, _ in servers.values():
            await server.close()


async def check_exposition(url: str) -> None:
    """``promtool check metrics`` on what the daemon serves: each name declared once,
    valid names, types and units."""
    promtool = require_binary("promtool", shutil.which("promtool"))
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        body = await r.read()
    proc = await asyncio.create_subprocess_exec(
        promtool, "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await proc.communicate(body)
    problems = [line for line in out.decode().splitlines()
                if "error" in line.lower() or "duplicate" in line.lower()]
    assert proc.returncode == 0 and not problems, out.decode()


async def _not(value: Any) -> bool:
    return not await value
