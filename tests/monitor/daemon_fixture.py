"""A daemon with one slow consumer, run as a subprocess by the shutdown tests.

Usage: python -m tests.monitor.daemon_fixture REDIS_URL PREFIX
The consumer's handler marks a batch as started, works for a second, then records the ids
it handled; SIGTERM during that second must let the batch finish and be acknowledged.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import Any

from convmon.monitor.app import load_config
from convmon.monitor.bus import Delivery
from convmon.monitor.config import Model
from convmon.monitor.daemon import run_daemon
from convmon.monitor.events import Event
from convmon.monitor.plugins import Component, Plugin, Runtime


class SlowConfig(Model):
    work_s: float = 1.0


class SlowConsumer:
    name = "slow-consumer"

    def __init__(self, rt: Runtime, cfg: SlowConfig) -> None:
        self.rt = rt
        self.cfg = cfg

    async def handle(self, batch: Sequence[Delivery[Event]]) -> None:
        await self.rt.redis.set(self.rt.keys.plugin("test", "started"), len(batch))
        await asyncio.sleep(self.cfg.work_s)
        await self.rt.redis.sadd(self.rt.keys.plugin("test", "done"), *[d.value.id for d in batch])

    async def run(self) -> None:
        await self.rt.bus.consumer("slow", "c1", self.handle).run()


def build(rt: Runtime, cfg: Any) -> Sequence[Component]:
    return [SlowConsumer(rt, cfg)]


PLUGIN = Plugin(
    name="slow", role="rules", section=("rules",), config_model=SlowConfig, components=build
)


def main() -> None:
    url, prefix = sys.argv[1], sys.argv[2]
    config = load_config(
        None,
        environ={
            "CONVMON_REDIS__URL": url,
            "CONVMON_REDIS__PREFIX": prefix,
            "CONVMON_HTTP__PORT": "0",
            "CONVMON_INSTANCE": "fixture",
        },
        plugins=[PLUGIN],
    )
    sys.exit(asyncio.run(run_daemon(config)))


if __name__ == "__main__":
    main()
