"""Where stratum jobs come from: mempool's websocket and direct Stratum v1 connections.

Each source runs until cancelled, reconnecting with capped backoff, and hands what it
reads to a `JobSink`: parsed jobs (`accept`), malformed frames or lines (`malformed`:
counted and skipped, never fatal) and its connection state (`up`, `down`).

- `MempoolStratumSource`: ``/api/v1/ws``, sends ``{"track-stratum": "all"}``, reads the
  ``stratumJobs`` snapshot and then one ``stratumJob`` per new job.
- `StratumV1Source`: TCP (TLS optional), ``mining.subscribe`` then ``mining.authorize``
  with a watch-only worker, then ``mining.notify``. ``client.reconnect`` is honoured (to
  the host and port it names, after its wait), ``mining.set_extranonce`` updates the
  extranonce, ``mining.set_difficulty`` is ignored, and nothing is ever submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
from typing import Any, Protocol
from urllib.parse import urlsplit

import aiohttp

from convmon.collectors.bitcoin.errors import MalformedJob, SourceUnavailable
from convmon.collectors.bitcoin.sources import describe_error
from convmon.collectors.bitcoin.stratum import StratumJob, job_from_notify, jobs_from_frame
from convmon.monitor.backoff import Backoff
from convmon.monitor.cancel import honour_cancellation
from convmon.monitor.clock import Clock

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 1 << 20
MAX_RECONNECT_WAIT_S = 600


class JobSink(Protocol):
    async def accept(self, job: StratumJob, via: str) -> None: ...

    def malformed(self, what: str, detail: str) -> None: ...

    async def up(self, source: str) -> None: ...

    async def down(self, source: str, detail: str) -> None: ...


class MempoolStratumSource:
    """mempool's websocket, ``track-stratum``."""

    def __init__(
        self, ws_url: str, clock: Clock, backoff: Backoff, *, name: str = "mempool",
        heartbeat_s: float = 25.0,
    ) -> None:
        self.ws_url = ws_url
        self.clock = clock
        self.backoff = backoff
        self.name = name
        self.heartbeat_s = heartbeat_s
        self.connects = 0

    async def run(self, sink: JobSink) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                try:
                    detail = await self._follow(session, sink)
                except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                    detail = describe_error(exc)
                honour_cancellation()  # aiohttp may turn our cancellation into an error
                await sink.down(self.name, detail)
                await asyncio.sleep(self.backoff.next_delay())

    async def _follow(self, session: aiohttp.ClientSession, sink: JobSink) -> str:
        async with session.ws_connect(
            self.ws_url, heartbeat=self.heartbeat_s, max_msg_size=16 * MAX_LINE_BYTES,
            # A close handshake with a server that stopped answering must not hold a
            # shutdown or a reconnect.
            timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
        ) as ws:
            await ws.send_json({"track-stratum": "all"})
            self.connects += 1
            await sink.up(self.name)
            self.backoff.reset()
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    received = self.clock.now()
                    for item in jobs_from_frame(msg.data, received):
                        if isinstance(item, MalformedJob):
                            sink.malformed("stratum_frame", str(item))
                        else:
                            await sink.accept(item, "mempool")
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    sink.malformed("stratum_frame", "binary frame")
                else:
                    break
        return "websocket closed"


class StratumV1Source:
    """One Stratum v1 endpoint of a pool (``stratum+tcp://host:port``, or
    ``stratum+ssl://`` / ``stratum+tls://`` or ``tls`` for TLS)."""

    def __init__(
        self, *, pool: str, url: str, worker: str, password: str, clock: Clock,
        backoff: Backoff, tls: bool = False, idle_timeout_s: float = 300.0,
        connect_timeout_s: float = 15.0, ca_file: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        if not parts.hostname or not parts.port:
            raise ValueError(f"stratum endpoint of {pool}: expected scheme://host:port")
        self.pool = pool
        self.host, self.port = parts.hostname, parts.port
        self.tls = tls or parts.scheme in ("stratum+ssl", "stratum+tls", "ssl", "tls")
        self.ca_file = ca_file
        self.worker = worker
        self._password = password
        self.clock = clock
        self.backoff = backoff
        self.idle_timeout_s = idle_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.name = f"stratum/{pool}"
        self.connects = 0
        self.redirects = 0

    async def run(self, sink: JobSink) -> None:
        host, port = self.host, self.port
        while True:
            redirect: tuple[str, int, float] | None = None
            try:
                redirect = await self._session(host, port, sink)
                detail = "connection closed"
            except (OSError, TimeoutError, SourceUnavailable) as exc:
                detail = describe_error(exc) if not isinstance(exc, SourceUnavailable) \
                    else str(exc)
            except ValueError as exc:  # a line longer than the limit
                sink.malformed("stratum_line", str(exc))
                detail = "line too long"
            honour_cancellation()  # a library may turn our cancellation into an error
            await sink.down(self.name, f"{host}:{port}: {detail}")
            if redirect is not None:
                host, port, wait = redirect
                self.redirects += 1
                await asyncio.sleep(wait)
                continue
            await asyncio.sleep(self.backoff.next_delay())

    async def _session(
        self, host: str, port: int, sink: JobSink
    ) -> tuple[str, int, float] | None:
        """One connection; returns where ``client.reconnect`` sends us, None when the
        connection just ended."""
        ctx = ssl.create_default_context(cafile=self.ca_file) if self.tls else None
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
        async with asyncio.timeout(self.connect_timeout_s):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ctx, limit=MAX_LINE_BYTES
            )
        try:
            for request in (
                {"id": 1, "method": "mining.subscribe", "params": ["convmon/1"]},
                {"id": 2, "method": "mining.authorize", "params": [self.worker, self._password]},
            ):
                writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            return await self._read(reader, host, port, sink)
        finally:
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()

    async def _read(
        self, reader: asyncio.StreamReader, host: str, port: int, sink: JobSink
    ) -> tuple[str, int, float] | None:
        extranonce: tuple[str, int] | None = None
        while True:
            async with asyncio.timeout(self.idle_timeout_s):
                line = await reader.readline()
            if not line:
                return None
            try:
                msg = json.loads(line)
            except ValueError:
                sink.malformed("stratum_line", "not JSON")
                continue
            if not isinstance(msg, dict):
                sink.malformed("stratum_line", "not a JSON object")
                continue
            method = msg.get("method")
            if method == "mining.notify":
                if extranonce is None:
                    sink.malformed("stratum_line", "mining.notify before the subscription")
                    continue
                try:
                    job = job_from_notify(
                        msg.get("params"), pool=self.pool, extranonce1=extranonce[0],
                        extranonce2_size=extranonce[1], received=self.clock.now(),
                    )
                except MalformedJob as exc:
                    sink.malformed("stratum_line", str(exc))
                    continue
                await sink.accept(job, "stratum")
            elif method == "client.reconnect":
                return _reconnect_target(msg.get("params"), host, port)
            elif method == "mining.set_extranonce":
                extranonce = _extranonce(msg.get("params")) or extranonce
            elif method is None and msg.get("id") == 1:
                extranonce = _extranonce(msg.get("result"), offset=1)
                if extranonce is None:
                    raise SourceUnavailable("mining.subscribe answer without an extranonce")
                self.connects += 1
                self.backoff.reset()
                await sink.up(self.name)
            elif method is None and msg.get("id") == 2 and msg.get("result") is not True:
                raise SourceUnavailable("mining.authorize refused the worker")
            # mining.set_difficulty and anything else: nothing to do for a watcher.


def _extranonce(value: Any, offset: int = 0) -> tuple[str, int] | None:
    """(extranonce1, extranonce2_size) from a subscribe result (offset 1) or a
    ``mining.set_extranonce`` params list (offset 0)."""
    if not isinstance(value, list) or len(value) < offset + 2:
        return None
    ext1, size = value[offset], value[offset + 1]
    if not isinstance(ext1, str) or not isinstance(size, int) or not 0 <= size <= 32:
        return None
    try:
        bytes.fromhex(ext1)
    except ValueError:
        return None
    return ext1.lower(), size


def _reconnect_target(params: Any, host: str, port: int) -> tuple[str, int, float]:
    """``client.reconnect [host, port, wait]``; missing parts keep the current ones."""
    items = params if isinstance(params, list) else []
    new_host = items[0] if len(items) > 0 and isinstance(items[0], str) and items[0] else host
    new_port = port
    if len(items) > 1:
        with contextlib.suppress(TypeError, ValueError):
            new_port = int(items[1])
    wait = 0.0
    if len(items) > 2:
        with contextlib.suppress(TypeError, ValueError):
            wait = min(max(float(items[2]), 0.0), MAX_RECONNECT_WAIT_S)
    return new_host, new_port, wait
