"""``convmon rules``: list the loaded rules, check rule files, run rule unit tests.

Exit codes follow the core CLI: 2 for invalid rules or test files (each error as
``file:line: field: message``), 1 when a rule test fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from convmon.monitor.cli import ConfigOption, console, err_console, load_or_exit, run_async
from convmon.monitor.clock import ManualClock
from convmon.monitor.keys import Keys
from convmon.monitor.yamlfile import FileError, FileErrors
from convmon.rules.engine import AggregateSource
from convmon.rules.loader import load_rules
from convmon.rules.ruletest import TestResult, run_test_file, summarize

rules_app = typer.Typer(help="Inspect, check and test alert rules.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(rules_app, name="rules")


def _print_errors(exc: FileError | FileErrors) -> None:
    errors = exc.errors if isinstance(exc, FileErrors) else [exc]
    for e in errors:
        err_console.print("[red]error[/red]: ", end="")
        err_console.print(str(e), highlight=False, markup=False)


@rules_app.command("list")
def list_rules(config: ConfigOption = None) -> None:
    """List the rules the configuration loads (default pack + rule files): name, kind,
    severity, file and effective params, one rule per line under a header."""
    from convmon.rules.plugin import load_configured_rules

    loaded = load_or_exit(config)
    cfg = loaded.section("rules")
    try:
        ruleset = load_configured_rules(cfg, loaded.source)
    except (FileError, FileErrors) as exc:
        _print_errors(exc)
        raise typer.Exit(2) from None
    rows = [
        (rule.name, rule.spec.kind, rule.spec.severity, Path(rule.file).name,
         ", ".join(f"{k}={v}" for k, v in rule.params.items()))
        for rule in ruleset.rules
    ]
    header = ("RULE", "KIND", "SEVERITY", "FILE", "PARAMS")
    # Plain padded columns, not a table: a pipe gets every row whole, one line each.
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
        console.print(f"{line}  {row[4]}".rstrip(), highlight=False, markup=False,
                      soft_wrap=True)


@rules_app.command("check")
def check_rules(
    paths: Annotated[list[Path], typer.Argument(help="Rule files or directories.")],
    with_pack: Annotated[
        bool, typer.Option("--with-pack/--alone", help="Load the default pack beside them.")
    ] = False,
) -> None:
    """Validate rule files (schema, CEL, types against the event and aggregate schemas,
    templates); exit 2 listing every error."""
    try:
        ruleset = load_rules(paths, include_pack=with_pack)
    except (FileError, FileErrors) as exc:
        _print_errors(exc)
        raise typer.Exit(2) from None
    console.print(f"[green]ok[/green]: {len(ruleset.rules)} rules")


@rules_app.command("test")
def test_rules(
    files: Annotated[list[Path], typer.Argument(help="Rule test files (YAML).")],
    config: ConfigOption = None,
) -> None:
    """Run rule unit tests against the real aggregate store in an isolated key prefix."""
    from convmon.monitor.redisconn import open_scratch_redis
    from convmon.rules.aggregates import AggregateStore

    loaded = load_or_exit(config)
    aggregates_cfg = loaded.section("rules").aggregates

    async def make_store(redis: Any, keys: Keys, clock: ManualClock) -> AggregateSource:
        store = AggregateStore(redis, keys, clock, aggregates_cfg)
        await store.load()
        return store

    async def run() -> tuple[list[TestResult], list[str]]:
        results: list[TestResult] = []
        broken: list[str] = []
        # Rule tests need a Redis, not a running daemon: the configured one (under a prefix
        # of their own), else a private scratch server.
        async with open_scratch_redis(loaded.core.redis) as redis:
            for f in files:
                try:
                    results.extend(await run_test_file(
                        f, redis, make_store, prefix=f"{loaded.core.redis.prefix}-ruletest"
                    ))
                except (FileError, FileErrors) as exc:
                    errors = exc.errors if isinstance(exc, FileErrors) else [exc]
                    broken.extend(str(e) for e in errors)
        return results, broken

    results, broken = run_async(run)
    for line in broken:
        err_console.print("[red]error[/red]: ", end="")
        err_console.print(line, highlight=False, markup=False)
    for r in results:
        mark = "[green]PASS[/green]" if r.ok else "[red]FAIL[/red]"
        console.print(f"{mark} {Path(r.file).name}: {r.name}", highlight=False)
        for failure in r.failures:
            console.print(f"    {failure}", highlight=False, markup=False)
    passed, failed = summarize(results)
    console.print(f"{passed} passed, {failed} failed")
    if broken:
        raise typer.Exit(2)
    if failed:
        raise typer.Exit(1)
