"""The daemon under test: ``convmon run --config <file>`` as a separate OS process.

In: the generated configuration file. Out: a process the harness can ``kill -9`` and start
again, its resident memory (``VmRSS`` from ``/proc``), and what it says about itself:
``/api/v1/status`` (its components' states) or, when HTTP does not answer, the heartbeat
hash it writes to Redis. Its stdout/stderr (JSON log lines) go to ``daemon.log``.

Exits the harness did not ask for are recorded in `unexpected_exits`, so a scenario can
say that the daemon died by itself instead of hiding it behind a restart.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from redis.exceptions import RedisError

from chaos.redisproc import ChaosError


def convmon_command() -> list[str]:
    """The ``convmon`` console script beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).parent / "convmon"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("convmon")
    if found is None:
        raise ChaosError("the convmon command is not installed (pip install -e .)")
    return [found]


@dataclass(frozen=True)
class Exit:
    at: float
    returncode: int
    said: str = ""
    """The last thing the process wrote that was not a routine log line (its error)."""


def last_words(text: str, limit: int = 300) -> str:
    """The tail of a dying process's output: its last error record or plain-text lines
    (the console receiver's ``ALERT`` lines and info records skipped)."""
    picked: list[str] = []
    for line in reversed(text.splitlines()):
        line = line.strip()
        if not line or line.startswith("ALERT"):
            if picked:
                break
            continue
        if line.startswith("{"):
            if picked:
                break
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("level") in ("error", "critical"):
                return f"{record.get('msg', '')} {record.get('error', '')}".strip()[:limit]
            continue
        picked.append(line)
    return " ".join(reversed(picked))[:limit]


class DaemonProcess:
    def __init__(self, config_path: Path, log_path: Path, http_port: int) -> None:
        self.config_path = config_path
        self.log_path = log_path
        self.http_port = http_port
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0
        self.kills = 0
        self.unexpected_exits: list[Exit] = []
        self._expect_exit = False
        self._log_offset = 0
        self._watch: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.running and self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        if self.running:
            raise ChaosError("the daemon is already running")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *convmon_command(), "run", "--config", str(self.config_path),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.starts += 1
        self._expect_exit = False
        self._watch = asyncio.create_task(self._watch_exit(self.proc))

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        rc = await proc.wait()
        if not self._expect_exit:
            said = ""
            try:
                with self.log_path.open("rb") as log:
                    log.seek(self._log_offset)
                    said = last_words(log.read().decode(errors="replace"))
            except OSError:
                pass
            self.unexpected_exits.append(Exit(time.time(), rc, said))

    async def kill9(self) -> None:
        if self.proc is None or not self.running:
            return
        self._expect_exit = True
        os.kill(self.proc.pid, signal.SIGKILL)
        await self.proc.wait()
        self.kills += 1

    async def terminate(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM and wait (then SIGKILL): the end of the run."""
        if self.proc is None or not self.running:
            return None if self.proc is None else self.proc.returncode
        self._expect_exit = True
        self.proc.terminate()
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            return None

    def rss_bytes(self) -> int | None:
        pid = self.pid
        if pid is None:
            return None
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    async def status(self, session: aiohttp.ClientSession) -> dict[str, Any] | None:
        """``/api/v1/status``, or None when the daemon does not answer it."""
        url = f"http://127.0.0.1:{self.http_port}/api/v1/status"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                if resp.status != 200:
                    return None
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return None
        return doc if isinstance(doc, dict) else None


async def heartbeat_components(redis: Redis, key: str) -> list[dict[str, Any]] | None:
    """The components list of the daemon's heartbeat hash in Redis (None if absent)."""
    try:
        raw = await redis.hget(key, "components")
    except RedisError:
        return None
    if raw is None:
        return None
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    return doc if isinstance(doc, list) else None


def not_running(components: list[dict[str, Any]]) -> list[str]:
    """``name (state, restarts, last_error)`` of every component that is not running."""
    out = []
    for c in components:
        if c.get("state") != "running":
            err = str(c.get("last_error") or "").strip()
            detail = f"{c.get('state')}, restarts {c.get('restarts', '?')}"
            if err:
                detail += f", last error {err[:80]!r}"
            out.append(f"{c.get('name')} ({detail})")
    return out
