"""A daemon whose one collector connects and then just stays connected; the liveness
tests kill it with -9 and watch the collector read as down.

Usage: python -m tests.monitor.liveness_fixture (Redis URL, prefix, TTL from CONVMON_*).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from convmon.monitor.app import load_config
from convmon.monitor.config import Model
from convmon.monitor.daemon import run_daemon
from convmon.monitor.health import CollectorHealth
from convmon.monitor.plugins import Component, Plugin, Runtime


class ProbeConfig(Model):
    pass


class ConnectedCollector:
    name = "probe"

    def __init__(self, rt: Runtime) -> None:
        self.collector_health = CollectorHealth.for_runtime(rt, "probe")

    async def run(self) -> None:
        await self.collector_health.connected("listening")
        await asyncio.Event().wait()


def build(rt: Runtime, cfg: Any) -> Sequence[Component]:
    return [ConnectedCollector(rt)]


PLUGIN = Plugin(
    name="probe", role="collectors", section=("collectors", "probe"),
    config_model=ProbeConfig, components=build,
)


def main() -> None:
    config = load_config(None, plugins=[PLUGIN], overrides={"instance": "liveness"})
    sys.exit(asyncio.run(run_daemon(config)))


if __name__ == "__main__":
    main()
