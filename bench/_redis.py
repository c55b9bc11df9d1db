"""What the memory benchmarks share: a private redis-server for one run, a client for it,
and the memory figure the ``convmon_redis_memory_bytes`` gauge reports.
(A leading underscore keeps `run_all.py` from running this module as a benchmark.)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import redis as redis_sync
from redis.asyncio import Redis

from convmon.monitor.redismemory import redis_memory
from convmon.monitor.redistarget import connect, parse_redis_url


def client(url: str) -> Redis:
    """A client as the daemon builds one (standalone or cluster URL)."""
    redis: Redis = connect(parse_redis_url(url), client_name=f"bench-{os.getpid()}",
                           socket_timeout=30, max_connections=64)
    return redis


async def used_memory(redis: Redis) -> int:
    """``used_memory`` summed over the primaries: what ``convmon_redis_memory_bytes`` shows."""
    return sum(used for used, _ in (await redis_memory(redis)).values())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A fresh ``redis-server`` for one benchmark: 127.0.0.1 on a free port, no persistence
    (no RDB, no AOF), so its memory holds nothing but what the run writes. Use as a context
    manager; the server is stopped (and its directory removed) on exit."""

    def __init__(self, binary: str | None = None, *extra: str) -> None:
        found = binary or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError("redis-server not found on PATH")
        self.binary = found
        self.extra = extra
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, wait_s: float = 15.0) -> PrivateRedis:
        self._dir = tempfile.TemporaryDirectory(prefix="cm-bench-redis-")
        self.port = free_port()
        self.process = subprocess.Popen(
            [self.binary, "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no", "--dir", self._dir.name,
             "--logfile", str(Path(self._dir.name) / "redis.log"), *self.extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        probe = redis_sync.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + wait_s
        try:
            while True:
                if self.process.poll() is not None:
                    err = self.process.stderr.read() if self.process.stderr else b""
                    raise RuntimeError(f"redis-server exited: {err.decode().strip()}")
                try:
                    if probe.ping():
                        return self
                except redis_sync.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not answer in time")
                time.sleep(0.05)
        finally:
            probe.close()

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> PrivateRedis:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
