"""A real Alertmanager for tests, and a local server that speaks Slack's incoming-webhook
protocol so deliveries can be observed.

In: an Alertmanager configuration (a dict, e.g. deploy/alertmanager/alertmanager.yml with its
secret file paths pointed at a temporary directory). Out: an Alertmanager on 127.0.0.1 (free
port, temporary storage, clustering off) with helpers to post alerts and read their status
through the v2 API; `SlackWebhook` records every message Alertmanager delivers to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from tests.deploy.prom_harness import HarnessError, free_port, poll


@dataclass
class SlackWebhook:
    """Local HTTP endpoint accepting Slack incoming-webhook POSTs (JSON body, reply `ok`)."""

    url: str = ""
    messages: list[dict[str, Any]] = field(default_factory=list)

    def texts(self) -> list[str]:
        """Title and text of every attachment received, one string per message."""
        out = []
        for message in self.messages:
            parts = [message.get("text", "")]
            for attachment in message.get("attachments", []):
                parts += [attachment.get("title", ""), attachment.get("text", "")]
            out.append("\n".join(p for p in parts if p))
        return out

    @classmethod
    @contextlib.asynccontextmanager
    async def serve(cls) -> AsyncIterator[SlackWebhook]:
        hook = cls()

        async def receive(request: web.Request) -> web.Response:
            hook.messages.append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/services/T000/B000/XXXX", receive)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        hook.url = f"http://127.0.0.1:{runner.addresses[0][1]}/services/T000/B000/XXXX"
        try:
            yield hook
        finally:
            await runner.cleanup()


class AlertmanagerHarness:
    """One running Alertmanager; use `AlertmanagerHarness.start(config)`."""

    def __init__(self, process: asyncio.subprocess.Process, url: str, workdir: Path) -> None:
        self.process = process
        self.url = url
        self.workdir = workdir
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls, config: dict[str, Any], *, binary: str | None = None, ready_timeout_s: float = 60.0
    ) -> AsyncIterator[AlertmanagerHarness]:
        binary = binary or shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise HarnessError("alertmanager binary not found on PATH")
        with tempfile.TemporaryDirectory(prefix="convmon-am-") as tmp:
            workdir = Path(tmp)
            config_path = workdir / "alertmanager.yml"
            config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
            port = free_port()
            log = (workdir / "alertmanager.log").open("wb")
            process = await asyncio.create_subprocess_exec(
                binary,
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
            )
            harness = cls(process, f"http://127.0.0.1:{port}", workdir)
            try:
                await harness._wait_ready(ready_timeout_s)
                yield harness
            finally:
                await harness.stop()
                log.close()

    async def _wait_ready(self, timeout_s: float) -> None:
        async def ready() -> bool:
            if self.process.returncode is not None:
                log = (self.workdir / "alertmanager.log").read_text(errors="replace")
                raise HarnessError(f"alertmanager exited: {log[-2000:]}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with self._session.get(f"{self.url}/-/ready") as response:
                    return response.status == 200
            return False

        await poll(ready, timeout_s, f"alertmanager not ready in {timeout_s}s")

    async def post_alerts(self, alerts: list[dict[str, Any]]) -> None:
        async with self._session.post(f"{self.url}/api/v2/alerts", json=alerts) as response:
            if response.status != 200:
                raise HarnessError(f"posting alerts: {response.status} {await response.text()}")

    async def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds, with `status.state` and `status.inhibitedBy`."""
        params = {"active": "true", "inhibited": "true", "silenced": "true"}
        async with self._session.get(f"{self.url}/api/v2/alerts", params=params) as response:
            result: list[dict[str, Any]] = await response.json()
            return result

    async def stop(self) -> None:
        await self._session.close()
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
