"""``convmon pools templates``: template clusters with their evidence.

With ``--jobs FILE`` the recorded jobs are clustered here, offline and without Redis (FILE:
the ``stratumJobs`` object as mempool's websocket sends it, or JSON lines of jobs or
websocket messages). Without it, the running collector's current clusters are read from
Redis (`stratum_state`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from convmon.collectors.bitcoin.attribution import Attributor, PoolRegistry
from convmon.collectors.bitcoin.errors import MalformedJob, RegistryError
from convmon.collectors.bitcoin.registry import curated_registry
from convmon.collectors.bitcoin.stratum import StratumJob, jobs_from_file
from convmon.collectors.bitcoin.stratum_state import clusterer_doc
from convmon.collectors.bitcoin.templates import PoolNamer, TemplateClusterer, TemplateSettings
from convmon.monitor.cli import ConfigOption, console, err_console, load_or_exit, run_async


def cluster_file(
    text: str, namer: PoolNamer, settings: TemplateSettings
) -> tuple[TemplateClusterer, int]:
    """Cluster the jobs of a recorded file in received order; returns the clusterer and
    how many malformed jobs were skipped."""
    jobs: list[StratumJob] = []
    malformed = 0
    now = time.time()
    for item in jobs_from_file(text, now):
        if isinstance(item, MalformedJob):
            malformed += 1
            continue
        jobs.append(item)
    jobs.sort(key=lambda j: j.received)
    clusterer = TemplateClusterer(settings)
    for job in jobs:
        clusterer.add(_named(job, namer))
    return clusterer, malformed


def _named(job: StratumJob, namer: PoolNamer) -> StratumJob:
    import msgspec

    return msgspec.structs.replace(job, pool=namer.name(job))


def print_doc(doc: dict[str, Any]) -> None:
    """The clusters and the newest round's shared fingerprints as tables."""
    table = Table(title=f"Template clusters ({doc['rounds']} rounds, {doc['jobs']} jobs)")
    for col in ("provider", "pool", "confidence", "matched/seen", "last seen", "coinbase tag"):
        table.add_column(col, justify="right" if col in ("confidence", "matched/seen") else "left")
    for cluster in doc["clusters"]:
        for m in cluster["members"]:
            tag = (m.get("coinbase") or {}).get("tag", "")
            table.add_row(
                escape(cluster["provider"]), escape(m["pool"]), f"{m['confidence']:.0%}",
                f"{m['matched_heights']}/{m['observed_heights']}",
                time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(m["last_seen"])),
                escape(str(tag)[:40]),
            )
    console.print(table)
    if not doc["clusters"]:
        console.print(
            f"no cluster yet: a pool joins one after matching in "
            f"{doc['settings']['min_heights']} rounds"
        )
    shared = doc["shared_fingerprints"]
    if shared:
        console.print("Shared merkle branches in the newest round:")
        for m in shared:
            console.print(
                f"  height {m['height']} {m['fingerprint']}: "
                + escape(", ".join(m["pools"])),
                highlight=False,
            )
    console.print(f"malformed jobs skipped: {doc['malformed']}")


def templates_command(
    jobs: Annotated[
        Path | None,
        typer.Option("--jobs", help="Cluster recorded jobs from FILE offline (no Redis): "
                     "the stratumJobs object, or JSON lines of jobs."),
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(help="pools-v2.json naming mempool's pool ids (default: the built-in "
                     "list, matching coinbase tags)."),
    ] = None,
    min_heights: Annotated[
        int | None,
        typer.Option(min=1, help="Matched rounds a pool needs to join a cluster."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    config: ConfigOption = None,
) -> None:
    """Template providers: pools whose stratum jobs share merkle branches, with evidence."""
    doc = _live(config) if jobs is None else _offline(jobs, registry, min_heights)
    if as_json:
        typer.echo(json.dumps(doc))
    else:
        print_doc(doc)


def _offline(jobs: Path, registry: Path | None, min_heights: int | None) -> dict[str, Any]:
    try:
        text = jobs.read_text()
        pools = (
            PoolRegistry.from_bytes(registry.read_bytes(), origin=str(registry))
            if registry is not None else curated_registry()
        )
    except (OSError, RegistryError, UnicodeDecodeError) as exc:
        err_console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    base = TemplateSettings()
    settings = TemplateSettings(
        window_s=base.window_s, min_confidence=base.min_confidence,
        min_heights=min_heights or base.min_heights, keep_heights=base.keep_heights,
    )
    clusterer, malformed = cluster_file(text, PoolNamer(Attributor(pools)), settings)
    if clusterer.jobs == 0:
        err_console.print(f"[red]error[/red]: {jobs}: no stratum jobs ({malformed} malformed)")
        raise typer.Exit(2)
    return clusterer_doc(clusterer, malformed)


def _live(config: Any) -> dict[str, Any]:
    loaded = load_or_exit(config)

    async def fetch() -> dict[str, Any]:
        from convmon.collectors.bitcoin.stratum_state import read_state
        from convmon.monitor.app import open_runtime

        async with open_runtime(loaded) as rt:
            return await read_state(rt.redis, rt.keys)

    doc = run_async(fetch)
    if not doc:
        err_console.print(
            "[red]error[/red]: no template clusters recorded: is the stratum collector "
            "enabled (collectors.stratum)?"
        )
        raise typer.Exit(1)
    return doc
