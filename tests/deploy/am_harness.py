"""A real Alertmanager for tests, and a local server that speaks Slack's incoming-webhook
protocol so deliveries can be observed.

In: an Alertmanager configuration (a dict, e.g. deploy/alertmanager/alertmanager.yml with its
secret file paths pointed at a temporary directory). Out: an Alertmanager on 127.0.0.1 (a
port it binds itself, temporary storage, clustering off) with helpers to post alerts and read
their status through the v2 API; `SlackWebhook` records every message Alertmanager delivers
to it.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from tests.deploy.prom_harness import HarnessError, ServerHarness


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


class AlertmanagerHarness(ServerHarness):
    """One running Alertmanager; use `AlertmanagerHarness.start(config)`."""

    name = "alertmanager"

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
            args = [
                f"--config.file={config_path}",
                f"--storage.path={workdir / 'data'}",
                "--cluster.listen-address=",
            ]
            async with cls.launch(binary, args, workdir, ready_timeout_s) as harness:
                yield harness

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

