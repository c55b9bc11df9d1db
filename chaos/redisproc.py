"""The suite's own Redis: a ``redis-server`` child process the harness can kill and restart.

It listens on 127.0.0.1 on a port chosen once (so the daemon finds it again after a
restart), keeps an append-only file (``appendfsync everysec``, no RDB snapshots) in a
temporary directory, and logs to ``redis.log`` there. `kill9` is ``SIGKILL`` (the last
second of writes may be lost, as in a real crash); `shutdown` is the ``SHUTDOWN`` command
(a clean stop that fsyncs the AOF); `start` brings the same server back from its AOF.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import time
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import RedisError


class ChaosError(Exception):
    """The harness could not set up or drive something it needs (not a daemon finding)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ChaosError("redis-server is not on PATH")
        self.binary = binary
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> Redis:
        return Redis(host="127.0.0.1", port=self.port, socket_timeout=5,
                     socket_connect_timeout=2)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self, timeout_s: float = 15.0) -> None:
        if self.running:
            raise ChaosError("redis-server is already running")
        self.proc = await asyncio.create_subprocess_exec(
            self.binary,
            "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--logfile", str(self.dir / "redis.log"),
            stdin=asyncio.subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        client = self.client()
        try:
            while True:
                if self.proc.returncode is not None:
                    raise ChaosError(f"redis-server exited with {self.proc.returncode}; "
                                     f"see {self.dir / 'redis.log'}")
                try:
                    if await client.ping():
                        return
                except RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise ChaosError(f"redis-server did not answer PING within {timeout_s:g} s "
                                     f"(waited for port {self.port})")
                await asyncio.sleep(0.1)
        finally:
            await client.aclose()

    async def kill9(self) -> None:
        proc = self._require()
        os.kill(proc.pid, signal.SIGKILL)
        await proc.wait()

    async def shutdown(self, timeout_s: float = 15.0) -> None:
        proc = self._require()
        client = self.client()
        try:
            with contextlib.suppress(RedisError):
                await client.shutdown()
        finally:
            await client.aclose()
        try:
            await asyncio.wait_for(proc.wait(), timeout_s)
        except TimeoutError:
            raise ChaosError(f"redis-server did not exit within {timeout_s:g} s "
                             "of SHUTDOWN") from None

    async def stop(self) -> None:
        """Stop it for good at the end of the run (SIGKILL if SIGTERM is not enough)."""
        if not self.running or self.proc is None:
            return
        self.proc.terminate()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()

    def _require(self) -> asyncio.subprocess.Process:
        if self.proc is None or self.proc.returncode is not None:
            raise ChaosError("redis-server is not running")
        return self.proc
