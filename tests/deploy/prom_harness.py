"""A real Prometheus for tests, and the queries of convmon's Grafana dashboards.

In: a scrape target URL (a convmon `/metrics`, or any exporter). Out: a Prometheus process on
127.0.0.1 (on a port it binds itself and logs, temporary data dir, short scrape interval) that
the test can query over the HTTP API, stopped cleanly on exit; optionally it evaluates rule
files and sends alerts to an Alertmanager (see am_harness.py). `dashboard_queries` reads every
panel target of the generated dashboards (template variables replaced by their default values)
and `empty_panel_queries` returns those that give no series, which is how the demo run proves
every panel has data.

    async with PrometheusHarness.start("http://127.0.0.1:9720/metrics") as prom:
        await prom.wait_target_up()
        series = await prom.query("convmon_btc_hhi")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
import yaml

from tests.waiting import DEFAULT_LIMIT_S, eventually

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"


class HarnessError(RuntimeError):
    """Prometheus did not start, its target never came up, or a query failed."""


_LISTENING = re.compile(r'msg="Listening on" address=(127\.0\.0\.1:\d+)')
"""The line Prometheus and Alertmanager (exporter-toolkit) log with the address they bound."""


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str


class ServerHarness:
    """A Prometheus-family server process (Prometheus, Alertmanager) on the loopback port
    the kernel gave it (it binds port 0 and logs the port: no race for a "free" port),
    logging into its working directory, ready when ``/-/ready`` answers 200."""

    name = "server"

    def __init__(self, process: asyncio.subprocess.Process, workdir: Path) -> None:
        self.process = process
        self.url = ""
        self.workdir = workdir
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(
        cls, binary: str, args: list[str], workdir: Path, ready_timeout_s: float
    ) -> AsyncIterator[Self]:
        log = (workdir / f"{cls.name}.log").open("wb")
        process = await asyncio.create_subprocess_exec(
            binary, *args, "--web.listen-address=127.0.0.1:0",
            stdout=log, stderr=asyncio.subprocess.STDOUT,
        )
        harness = cls(process, workdir)
        try:
            await harness._wait_listening(ready_timeout_s)
            await harness._wait_ready(ready_timeout_s)
            yield harness
        finally:
            await harness.stop()
            log.close()

    async def _wait_listening(self, timeout_s: float) -> None:
        """Read the bound address from the log."""

        def listening() -> bool:
            if self.process.returncode is not None:
                raise HarnessError(f"{self.name} exited: {self.log_tail()}")
            found = _LISTENING.search(self.log_tail(lines=200))
            if found:
                self.url = f"http://{found.group(1)}"
            return found is not None

        await eventually(listening, f"{self.name} listening", limit_s=timeout_s)

    async def _wait_ready(self, timeout_s: float) -> None:
        async def ready() -> bool:
            if self.process.returncode is not None:
                raise HarnessError(f"{self.name} exited: {self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with self._session.get(f"{self.url}/-/ready") as response:
                    return response.status == 200
            return False

        await eventually(ready, f"{self.name} ready", limit_s=timeout_s)

    async def stop(self) -> None:
        await self._session.close()
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / f"{self.name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class PrometheusHarness(ServerHarness):
    """One running Prometheus; use `PrometheusHarness.start(...)` as an async context manager."""

    name = "prometheus"

    @classmethod
    @contextlib.asynccontextmanager
    async def start(
        cls,
        target_url: str,
        *,
        binary: str | None = None,
        scrape_interval: str = "1s",
        rule_files: list[Path] | None = None,
        alertmanager_url: str | None = None,
        ready_timeout_s: float = DEFAULT_LIMIT_S,
    ) -> AsyncIterator[PrometheusHarness]:
        binary = binary or shutil.which("prometheus")
        if binary is None:
            raise HarnessError("prometheus binary not found on PATH")
        target = urlsplit(target_url)
        if not target.hostname or not target.port:
            raise HarnessError(f"target URL needs a host and port: {target_url!r}")
        with tempfile.TemporaryDirectory(prefix="convmon-prom-") as tmp:
            workdir = Path(tmp)
            config = {
                "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
                "rule_files": [str(path) for path in rule_files or []],
                "scrape_configs": [
                    {
                        "job_name": "convmon",
                        "metrics_path": target.path or "/metrics",
                        "scheme": target.scheme or "http",
                        "scrape_timeout": scrape_interval,
                        "static_configs": [{"targets": [f"{target.hostname}:{target.port}"]}],
                    }
                ],
            }
            if alertmanager_url is not None:
                alertmanager = urlsplit(alertmanager_url)
                config["alerting"] = {
                    "alertmanagers": [
                        {"static_configs": [{"targets": [alertmanager.netloc]}]}
                    ]
                }
            config_path = workdir / "prometheus.yml"
            config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
            args = [
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--web.enable-lifecycle",
            ]
            async with cls.launch(binary, args, workdir, ready_timeout_s) as harness:
                yield harness

    async def wait_target_up(self, timeout_s: float = DEFAULT_LIMIT_S) -> None:
        """Until every active target has been scraped successfully."""

        async def up() -> bool:
            data = await self._api("targets", method="GET")
            targets = data["activeTargets"]
            return bool(targets) and all(t["health"] == "up" for t in targets)

        await eventually(up, "scrape target up", limit_s=timeout_s)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (or a one-element list for scalars)."""
        data = await self._api("query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: list[dict[str, Any]] = data["result"]
        return result

    async def query_range(self, expr: str, seconds: float, step: str = "1s") -> list[Any]:
        """Range query over the last ``seconds``: the series that had a value at any step
        (what a dashboard panel over that time range shows)."""
        end = time.time()
        data = await self._api("query_range", {
            "query": expr, "start": f"{end - seconds:.3f}", "end": f"{end:.3f}", "step": step,
        })
        result: list[Any] = data["result"]
        return result

    async def _api(
        self, path: str, params: dict[str, str] | None = None, method: str = "POST"
    ) -> dict[str, Any]:
        url = f"{self.url}/api/v1/{path}"
        if method == "GET":
            request = self._session.get(url, params=params or {})
        else:
            request = self._session.post(url, data=params or {})
        async with request as resp:
            body = await resp.json(content_type=None)
        if body.get("status") != "success":
            raise HarnessError(f"{path} {params}: {body.get('error', body)}")
        data: dict[str, Any] = body["data"]
        return data


_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def _variable_defaults(dashboard: dict[str, Any]) -> dict[str, str]:
    defaults = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        value = variable.get("current", {}).get("value")
        if isinstance(value, list):
            value = value[0] if value else ""
        defaults[variable["name"]] = str(value)
    return defaults


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_queries(dashboards_dir: Path = DASHBOARDS_DIR) -> list[PanelQuery]:
    """Every PromQL target of every dashboard, with `$var` replaced by the variable's default."""
    queries = []
    for path in sorted(dashboards_dir.glob("*.json")):
        dashboard = json.loads(path.read_text(encoding="utf-8"))
        defaults = _variable_defaults(dashboard)

        def substitute(
            match: re.Match[str], defaults: dict[str, str] = defaults, file: str = path.name
        ) -> str:
            name = match.group(1) or match.group(2)
            if name not in defaults:
                raise HarnessError(f"{file}: unknown variable ${name}")
            return defaults[name]

        for panel in iter_panels(dashboard.get("panels", [])):
            for target in panel.get("targets", []):
                expr = target.get("expr")
                if expr:
                    queries.append(
                        PanelQuery(
                            dashboard=dashboard["uid"],
                            panel_id=panel["id"],
                            panel_title=panel.get("title", ""),
                            ref_id=target.get("refId", ""),
                            expr=_VARIABLE.sub(substitute, expr),
                        )
                    )
    return queries


async def empty_panel_queries(
    prom: PrometheusHarness, dashboards_dir: Path = DASHBOARDS_DIR, *,
    over_s: float | None = None,
) -> list[PanelQuery]:
    """The panel queries that return no series from `prom`: right now, or with ``over_s``
    at any time in the last ``over_s`` seconds (a panel showing that time range has data;
    one scrape that timed out on a loaded machine does not blank it)."""
    if over_s is None:
        return [q for q in dashboard_queries(dashboards_dir) if not await prom.query(q.expr)]
    return [q for q in dashboard_queries(dashboards_dir)
            if not await prom.query_range(q.expr, over_s)]
