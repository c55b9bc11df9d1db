"""``python -m chaos [--short] [--seed N] [--keep]``: run the chaos suite and report.

Exit status: 0 when nothing was lost or duplicated and every scenario recovered, 1 when
anything was, 2 when the harness itself could not run (e.g. no ``redis-server``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

from chaos import scenarios
from chaos.daemonlog import digest_file
from chaos.harness import Harness
from chaos.redisproc import ChaosError
from chaos.report import findings, memory_lines, summary_table
from chaos.results import FULL, SHORT


class Reporter:
    """Prints the report and keeps a copy in the work dir (``report.txt``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __call__(self, text: str) -> None:
        print(text, flush=True)
        with self.path.open("a") as out:
            out.write(text + "\n")


async def run(workdir: Path, short: bool, seed: int) -> int:
    plan = SHORT if short else FULL
    say = Reporter(workdir / "report.txt")
    h = Harness(workdir, plan, seed, say)
    began = time.monotonic()
    say(f"chaos: {'short' if short else 'full'} run, seed {seed}, work dir {workdir}")
    try:
        await h.setup()
        say(f"chaos: redis-server on port {h.redis.port} (AOF), daemon HTTP on port "
            f"{h.proc.http_port}, webhook receiver on port {h.receiver.port}")
        for scenario in scenarios.ALL:
            await scenario(h)
        unexpected = await h.final_tally()
    finally:
        await h.teardown()
    say("")
    say(f"chaos: summary ({time.monotonic() - began:.0f} s, daemon started "
        f"{h.proc.starts} time(s), killed {h.proc.kills} time(s) by the harness)")
    for line in summary_table(h.results):
        say(line)
    say("")
    for line in memory_lines(h.gauges):
        say(line)
    found = findings(h.results, unexpected)
    noted = digest_file(workdir / "daemon.log")
    if noted:
        say("")
        say("daemon log, most frequent warnings and errors:")
        for n, text in noted:
            say(f"  {n:>6} x {text[:160]}")
    say("")
    if found:
        say("chaos: FAILED")
        for line in found:
            say(f"  - {line}")
        say(f"daemon log: {workdir / 'daemon.log'}")
        return 1
    say("chaos: ok: nothing lost, nothing duplicated, every scenario recovered")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--short", action="store_true",
                        help="a couple of minutes (fewer kills, shorter outages) for CI")
    parser.add_argument("--seed", type=int, default=2026, help="simulators and kill timing")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work dir (config, daemon.log, Redis AOF)")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="convmon-chaos-"))
    # The local servers' own logs (e.g. a client hanging up on a 10 MB frame) go to a file.
    logging.basicConfig(filename=workdir / "harness.log", level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code = asyncio.run(run(workdir, args.short, args.seed))
    except ChaosError as exc:
        print(f"chaos: the harness could not run: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        code = 130
    if code == 0 and not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    elif code != 0 or args.keep:
        print(f"chaos: work dir kept: {workdir}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
