"""CLI commands find the running daemon (demo included) or say plainly that none runs, and
a second daemon on a data dir or port in use is an error at start (exit 2).

Each test isolates the user's directories: a fresh data dir per daemon and a fresh run dir
(``CONVMON_RUN_DIR``) where daemons on embedded Redis announce themselves.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from convmon.monitor.redisconn import find_redis_server
from tests.shared_data import require_binary

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cm-run-") as path:
        yield Path(path)


def env_for(run_dir: Path, data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVMON_")}
    return {**env, "PYTHONPATH": str(ROOT), "CONVMON_RUN_DIR": str(run_dir),
            "CONVMON_DATA_DIR": str(data_dir), "CONVMON_LOG__FORMAT": "json",
            "COLUMNS": "200", **extra}


def short_dir() -> Path:
    # Unix socket paths are limited to ~107 bytes: keep data dirs short.
    return Path(tempfile.mkdtemp(prefix="cm-d-"))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convmon", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )


def start_daemon(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "convmon", "run", "--role", "api"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def wait_listening(proc: subprocess.Popen[str], limit_s: float = 60.0) -> int:
    """The daemon's HTTP port, read from its 'http listening' log line."""
    assert proc.stderr is not None
    deadline = time.monotonic() + limit_s
    for line in proc.stderr:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("msg") == "http listening":
            return int(record["port"])
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"daemon did not start (exit {proc.poll()})")


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_read_commands_say_no_daemon_runs_and_start_nothing(run_dir: Path) -> None:
    data_dir = short_dir()
    env = env_for(run_dir, data_dir)
    for args in (["status"], ["alerts", "list"], ["pools", "show"]):
        result = cli(env, *args)
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert "no convmon daemon is running" in " ".join(result.stderr.split())
    assert not (data_dir / "redis").exists()  # no Redis of their own


def test_read_commands_find_a_daemon_on_another_data_dir(run_dir: Path) -> None:
    require_binary("redis-server", find_redis_server())
    daemon_env = env_for(run_dir, short_dir(), CONVMON_HTTP__PORT="0",
                         CONVMON_INSTANCE="announced")
    proc = start_daemon(daemon_env)
    try:
        wait_listening(proc)
        # Another data dir (the demo's is temporary): found through its announcement.
        result = cli(env_for(run_dir, short_dir()), "status", "--json")
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert [p["instance"] for p in doc["processes"]] == ["announced"]
    finally:
        stop(proc)
    assert list(run_dir.glob("*.json")) == []  # withdrawn at exit
    result = cli(env_for(run_dir, short_dir()), "status")
    assert result.returncode == 1


def test_a_second_daemon_on_a_data_dir_or_port_in_use_exits_2(run_dir: Path) -> None:
    require_binary("redis-server", find_redis_server())
    data_dir = short_dir()
    first = start_daemon(env_for(run_dir, data_dir, CONVMON_HTTP__PORT="0"))
    try:
        port = wait_listening(first)
        same_dir = cli(env_for(run_dir, data_dir, CONVMON_HTTP__PORT="0"), "run")
        assert same_dir.returncode == 2, same_dir.stderr
        assert "in use by another convmon daemon" in " ".join(same_dir.stderr.split())
        same_port = cli(env_for(run_dir, short_dir(), CONVMON_HTTP__PORT=str(port)), "run")
        assert same_port.returncode == 2, same_port.stderr
        assert f"cannot listen on 127.0.0.1:{port}" in " ".join(same_port.stderr.split())
        assert first.poll() is None  # the first daemon is unharmed
    finally:
        stop(first)
