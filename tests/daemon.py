"""A real convmon daemon in its own process, for tests of commands that read a running
daemon's state (they refuse to show what a stopped daemon left behind)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import redis as redis_sync

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def live_daemon(redis_url: str, prefix: str, limit_s: float = 60.0) -> Iterator[str]:
    """Run ``convmon run --role api`` (no collectors, rules or dispatcher: nothing that
    would change the state a test set up) against ``redis_url`` and ``prefix`` until the
    block ends; yields its instance name once its first heartbeat is in Redis."""
    instance = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CONVMON_REDIS__URL": redis_url,
           "CONVMON_REDIS__PREFIX": prefix, "CONVMON_HTTP__PORT": "0",
           "CONVMON_INSTANCE": instance}
    proc = subprocess.Popen(
        [sys.executable, "-m", "convmon", "run", "--role", "api"], cwd=ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    client = redis_sync.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + limit_s
        while not client.exists(f"{prefix}:heartbeat:{instance}"):
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise AssertionError(f"the test daemon did not start: {err[-2000:]}")
            time.sleep(0.05)
        yield instance
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
