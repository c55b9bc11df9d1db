"""CLI: ``convmon pools show|attribute|replay`` and ``convmon backfill bitcoin``.

``show`` reads the collector's Redis block record; ``attribute`` runs the attribution on a
coinbase given on the command line or a block JSON file (Esplora or Bitcoin Core shape);
``replay`` feeds a labelled history through in-memory windows (no Redis needed).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from convmon.collectors.bitcoin.attribution import Attributor, PoolRegistry
from convmon.collectors.bitcoin.blocks import ChainBlock, from_bitcoind, from_esplora
from convmon.collectors.bitcoin.errors import LabelError, MalformedBlock, RegistryError
from convmon.collectors.bitcoin.record import BlockRecord, RecordedBlock
from convmon.collectors.bitcoin.registry import load_pool_list
from convmon.collectors.bitcoin.templates_cli import templates_command
from convmon.collectors.bitcoin.window import ReplayRow, read_labels, replay
from convmon.monitor import concentration
from convmon.monitor.cli import ConfigOption, console, err_console, load_or_exit, run_async
from convmon.monitor.events import BitcoinBlock

HASHES_PER_DIFFICULTY = 2**32 / 600.0


def network_hashrate(difficulty: float) -> float:
    """Hashes per second implied by ``difficulty`` at one block per 600 s."""
    return difficulty * HASHES_PER_DIFFICULTY


def _registry(path: Path | None, cfg: Any, data_dir: Path) -> Attributor:
    """The pool list given on the command line, else the configured one (read through the
    daemon's cache). When the configured list is unavailable, one note on stderr says which
    list is used instead and its size; nothing when the configured list is in use."""
    try:
        from convmon.collectors.bitcoin.plugin import entity_map

        if path is not None:
            registry = PoolRegistry.from_bytes(path.read_bytes(), origin=str(path))
        else:
            from convmon.collectors.bitcoin.plugin import cache_path

            loaded = run_async(
                lambda: load_pool_list(cfg.pools.source, cache_path(data_dir, cfg))
            )
            registry = loaded.registry
            if loaded.fallback:
                err_console.print(
                    f"[yellow]note[/yellow]: pool list {escape(loaded.source)} unavailable "
                    f"({escape(loaded.error or '')}); using {escape(registry.origin)} "
                    f"({len(registry.pools)} pools): smaller pools may show as unknown",
                    highlight=False,
                )
        return Attributor(registry, entity_map(cfg))
    except (OSError, RegistryError) as exc:
        err_console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    pools = typer.Typer(help="Bitcoin mining pools: concentration, attribution, replay.",
                        no_args_is_help=True)
    backfill = typer.Typer(help="Fetch history into the event stream.", no_args_is_help=True)
    pools.command("show")(show_pools)
    pools.command("attribute")(attribute_coinbase)
    pools.command("replay")(replay_labels)
    pools.command("templates")(templates_command)
    backfill.command("bitcoin")(backfill_bitcoin)
    app.add_typer(pools, name="pools")
    app.add_typer(backfill, name="backfill")


def show_pools(
    config: ConfigOption = None,
    window: Annotated[int, typer.Option(help="Last N blocks.")] = 144,
    by: Annotated[
        str, typer.Option(help="pool, entity, template (provider) or jurisdiction")
    ] = "pool",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Concentration over the last N recorded blocks by pool, parent entity, template
    provider (the stratum collector's current clusters) or jurisdiction (curated table)."""
    if by not in ("pool", "entity", "template", "jurisdiction"):
        err_console.print("[red]error[/red]: --by must be pool, entity, template or jurisdiction")
        raise typer.Exit(2)
    loaded = load_or_exit(config)

    async def fetch() -> tuple[list[RecordedBlock], dict[str, Any]]:
        from convmon.collectors.bitcoin.stratum_state import read_state
        from convmon.monitor.app import open_runtime

        async with open_runtime(loaded) as rt:
            record = BlockRecord(rt.redis, rt.keys, max(window, 1))
            return await record.latest(window), await read_state(rt.redis, rt.keys)

    recorded, state = run_async(fetch)
    blocks = [r.block for r in recorded]
    if by in ("template", "jurisdiction"):
        blocks = regroup(blocks, by, state.get("providers") or {})
        by = "pool"
    rows, summary = concentration_rows(blocks, by)
    if as_json:
        typer.echo(json.dumps({"summary": summary, "rows": rows}))
        return
    table = Table(title=f"Last {summary['blocks']} blocks by {by}")
    for col in ("#", by, "blocks", "share", "est. hashrate", "empty"):
        table.add_column(col, justify="left" if col == by else "right")
    for row in rows:
        table.add_row(
            str(row["rank"]), escape(str(row["name"])), str(row["blocks"]),
            f"{row['share']:.2%}", f"{row['hashrate_hs'] / 1e18:,.1f} EH/s",
            str(row["empty_blocks"]),
        )
    console.print(table)
    console.print(
        f"top-2 {summary['top2_share']:.2%}  HHI {summary['hhi']:.0f}  "
        f"Nakamoto {summary['nakamoto']}  network "
        f"{summary['network_hashrate_hs'] / 1e18:,.1f} EH/s"
    )


def regroup(
    blocks: list[BitcoinBlock], by: str, providers: dict[str, str]
) -> list[BitcoinBlock]:
    """The blocks with ``pool`` replaced by their template provider (``template``: the
    current mapping, else the one the block carried) or jurisdiction; unknown stays
    unknown."""
    from convmon.collectors.bitcoin.jurisdictions import JurisdictionMap

    places = JurisdictionMap.curated() if by == "jurisdiction" else None
    out: list[BitcoinBlock] = []
    for block in blocks:
        if block.pool == "unknown":
            key = "unknown"
        elif places is not None:
            key = places.at(block.pool, block.entity, float(block.timestamp))
        else:
            key = providers.get(block.pool) or block.template_provider or block.pool
        out.append(msgspec.structs.replace(block, pool=key, pool_name=key))
    return out


def concentration_rows(
    blocks: list[BitcoinBlock], by: str
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-pool (or per-entity) rows, largest first, and the concentration summary of
    ``blocks``; the hashrate estimate uses the newest block's difficulty."""
    counts: Counter[str] = Counter()
    empty: Counter[str] = Counter()
    names: dict[str, str] = {}
    for block in blocks:
        key = (block.entity or block.pool) if by == "entity" else block.pool
        counts[key] += 1
        # A pool without a parent is its own entity, shown by its name.
        names.setdefault(key, key if by == "entity" and block.entity else block.pool_name)
        if block.tx_count <= 1:
            empty[key] += 1
    total = sum(counts.values())
    hashrate = network_hashrate(blocks[-1].difficulty) if blocks else 0.0
    rows: list[dict[str, Any]] = [
        {"rank": rank, "pool": key, "name": names[key], "blocks": n, "share": n / total,
         "hashrate_hs": n / total * hashrate, "empty_blocks": empty[key]}
        for rank, (key, n) in enumerate(counts.most_common(), start=1)
    ]
    summary = {
        "blocks": total,
        "top1_share": concentration.top_share(counts, 1),
        "top2_share": concentration.top_share(counts, 2),
        "top3_share": concentration.top_share(counts, 3),
        "hhi": concentration.hhi(counts),
        "nakamoto": concentration.nakamoto(counts),
        "network_hashrate_hs": hashrate,
    }
    return rows, summary


def attribute_coinbase(
    coinbase: Annotated[str | None, typer.Argument(help="coinbase scriptSig hex")] = None,
    address: Annotated[
        list[str] | None,
        typer.Option("--address", "-a", help="A coinbase payout address (repeatable)."),
    ] = None,
    block: Annotated[Path | None, typer.Option("--block", help="block JSON file")] = None,
    registry: Annotated[Path | None, typer.Option(help="pools-v2.json file")] = None,
    config: ConfigOption = None,
) -> None:
    """Attribute a coinbase (hex + payout addresses) or a block JSON to a pool (and its
    parent entity now, or at the block's time)."""
    if block is None and coinbase is None:
        err_console.print("[red]error[/red]: give a coinbase hex or --block FILE")
        raise typer.Exit(2)
    if block is None and coinbase is not None:
        _check_hex(coinbase)
    loaded = load_or_exit(config)
    cfg = loaded.section("bitcoin")
    attributor = _registry(registry, cfg, loaded.core.data_dir)
    if block is not None:
        parsed = _read_block_file(block)
        hexsig, when = parsed.coinbase_hex, float(parsed.timestamp)
        addresses = [a for a, v in parsed.outputs if a and v > 0]
    else:
        assert coinbase is not None
        hexsig, addresses, when = coinbase, list(address or []), None
    result = attributor.attribute(hexsig, addresses, when)
    typer.echo(json.dumps({
        "pool": result.pool, "pool_name": result.pool_name, "match": result.match,
        "entity": result.entity, "coinbase_tag": result.coinbase_tag,
        "payout_addresses": result.payout_addresses,
        "registry_version": attributor.version,
    }))


def _check_hex(coinbase: str) -> None:
    """Exit 2 naming the argument when ``coinbase`` is not a whole number of hex bytes."""
    try:
        bytes.fromhex(coinbase)
    except ValueError:
        err_console.print(
            f"[red]error[/red]: COINBASE {escape(repr(coinbase))}: not hex "
            "(expected the coinbase scriptSig as an even number of hex digits)"
        )
        raise typer.Exit(2) from None


def _read_block_file(path: Path) -> ChainBlock:
    """A block JSON file: Bitcoin Core ``getblock`` verbosity 2 (bare or as an RPC answer)
    or ``{"block": <Esplora block>, "coinbase": <Esplora tx>}``; exits 2 on anything else."""
    try:
        doc = json.loads(path.read_text())
        if isinstance(doc, dict) and isinstance(doc.get("result"), dict):
            doc = doc["result"]
        if isinstance(doc, dict) and "tx" in doc:
            return from_bitcoind(doc)
        if isinstance(doc, dict) and "block" in doc and "coinbase" in doc:
            return from_esplora(doc["block"], doc["coinbase"])
        raise MalformedBlock(
            "expected getblock verbosity 2, or {\"block\": ..., \"coinbase\": ...}"
        )
    except (OSError, ValueError) as exc:  # MalformedBlock is a ValueError
        err_console.print(f"[red]error[/red]: {path}: {escape(str(exc))}")
        raise typer.Exit(2) from None


def replay_labels(
    labels: Annotated[Path, typer.Option("--labels", help="CSV height,pool_slug[,ts]")],
    window: Annotated[
        list[int] | None,
        typer.Option("--window", help="Window size in blocks (repeatable; default 144, 1008, "
                     "2016)."),
    ] = None,
    every: Annotated[
        int, typer.Option(min=1, help="Print a row every N blocks of the history.")
    ] = 144,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    shares: Annotated[bool, typer.Option(help="include per-pool shares")] = True,
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="JSON {pool: provider} (e.g. `pools templates "
                     "--json` providers): replay by template provider."),
    ] = None,
) -> None:
    """Concentration series over a labelled block history."""
    sizes = window or [144, 1008, 2016]
    if not labels.exists():
        err_console.print(f"[red]error[/red]: {labels}: not found")
        raise typer.Exit(2)
    fold = _read_mapping(mapping) if mapping is not None else {}
    rows = (
        (h, p if p == "unknown" else fold.get(p, p), ts) for h, p, ts in read_labels(labels)
    )
    out = sys.stdout
    try:
        for row in replay(rows, sizes, every, with_shares=shares):
            if as_json:
                out.write(json.dumps({"height": row.height, "timestamp": row.timestamp,
                                      "windows": {str(k): v for k, v in row.windows.items()}}))
                out.write("\n")
            else:
                out.write(_replay_line(row) + "\n")
    except LabelError as exc:
        err_console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None


def _read_mapping(path: Path) -> dict[str, str]:
    """A pool -> provider JSON object, or a `pools templates --json` document (its
    ``providers``); exits 2 naming the file otherwise."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        err_console.print(f"[red]error[/red]: {path}: {escape(str(exc))}")
        raise typer.Exit(2) from None
    if isinstance(doc, dict) and isinstance(doc.get("providers"), dict):
        doc = doc["providers"]
    if not isinstance(doc, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in doc.items()
    ):
        err_console.print(f"[red]error[/red]: {path}: expected a JSON object pool -> provider")
        raise typer.Exit(2)
    return dict(doc)


def _replay_line(row: ReplayRow) -> str:
    """One replay row as text: the height, then each window's summary and top five pools."""
    parts = [str(row.height)]
    for size, summary in row.windows.items():
        best = list(summary.get("shares", {}).items())[:5]
        top = ",".join(f"{pool}={share:.3f}" for pool, share in best)
        parts.append(
            f"w{size} top1={summary['top1_share']:.3f} top2={summary['top2_share']:.3f} "
            f"top3={summary['top3_share']:.3f} hhi={summary['hhi']:.0f} "
            f"nakamoto={summary['nakamoto']}" + (f" [{top}]" if top else "")
        )
    return "  ".join(parts)


def backfill_bitcoin(
    blocks: Annotated[int, typer.Option(min=1, help="How many recent blocks.")] = 2016,
    config: ConfigOption = None,
) -> None:
    """Fetch the last N blocks into the event stream (idempotent)."""
    loaded = load_or_exit(config)
    cfg = loaded.section("bitcoin")

    async def backfill() -> int:
        from convmon.collectors.bitcoin.plugin import attributor_for, make_collector
        from convmon.monitor.app import open_runtime
        from convmon.monitor.buslayout import ensure_layout

        # A backfill adds events for a daemon to process; it needs none running now.
        async with open_runtime(loaded, require_daemon=False) as rt:
            # It publishes like a collector: to the shards the bus is laid out with.
            await ensure_layout(rt.redis, rt.keys, loaded.core.bus, loaded.source)
            collector = make_collector(rt, cfg, await attributor_for(cfg, rt.data_dir))
            with Progress(
                "[progress.description]{task.description}", BarColumn(),
                MofNCompleteColumn(), TimeRemainingColumn(), console=console,
            ) as bar:
                task = bar.add_task("bitcoin blocks", total=blocks)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                try:
                    return await collector.backfill(blocks, progress)
                finally:
                    await collector.source.close()

    from convmon.monitor.buslayout import LayoutMismatch

    try:
        count = run_async(backfill)
    except LayoutMismatch as exc:
        err_console.print(f"[red]error[/red]: {escape(str(exc))}")
        raise typer.Exit(2) from None
    except Exception as exc:
        err_console.print(f"[red]error[/red]: backfill failed: {escape(str(exc))}")
        raise typer.Exit(1) from None
    console.print(f"published {count} blocks")
