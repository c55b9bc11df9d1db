"""The ``convmon`` command line: the core commands plus those plugins contribute.

Exit codes: 0 success, 1 runtime failure, 2 invalid configuration or rules (the message
names file, line and field).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from convmon import __version__
from convmon.monitor.app import LoadedConfig, load_config
from convmon.monitor.plugins import PluginError, discover_plugins
from convmon.monitor.yamlfile import FileError, FileErrors

T = TypeVar("T")

app = typer.Typer(
    name="convmon",
    help="Monitor Bitcoin pool concentration, DePIN payouts, stablecoin flows and miner "
    "economics; alert on them.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _console(stderr: bool = False) -> Console:
    """A console that wraps and truncates only for a person at a terminal: in a pipe or a
    file, errors stay on one line and tables keep their full width (``COLUMNS`` wins)."""
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 10_000
    return Console(stderr=stderr, soft_wrap=True, width=width)


console = _console()
err_console = _console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", envvar="CONVMON_CONFIG",
        help="Configuration file (default: ./convmon.yaml if present, else built-in defaults).",
    ),
]


def load_or_exit(path: Path | None, *, deep: bool = False) -> LoadedConfig:
    """Load configuration; on errors print them (file:line: field: message) and exit 2.

    ``deep`` adds the plugins' checks (rule files, resolvable secrets): for ``run`` and
    ``check``; commands that only read or change state in Redis do without them.
    """
    try:
        return load_config(path, deep=deep)
    except (FileError, FileErrors) as exc:
        for line in str(exc).splitlines():
            err_console.print(f"[red]error[/red]: {line}", highlight=False, markup=True)
        raise typer.Exit(2) from None
    except PluginError as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        raise typer.Exit(2) from None


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine for a CLI command."""
    return asyncio.run(factory())  # type: ignore[arg-type]


@app.command()
def version() -> None:
    """Print the version."""
    console.print(f"convmon {__version__}")


def _print_version(value: bool) -> None:
    if value:
        console.print(f"convmon {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True,
                     help="Print the version and exit."),
    ] = False,
) -> None:
    """Monitor Bitcoin pool concentration, DePIN payouts, stablecoin flows and miner
    economics; alert on them."""


def _register_plugins() -> None:
    try:
        plugins = discover_plugins()
    except PluginError as exc:
        err_console.print(f"[red]error[/red]: {exc}")
        return
    for plugin in plugins:
        if plugin.cli is not None:
            plugin.cli(app)


def main(argv: list[str] | None = None) -> Any:
    from convmon.monitor import commands  # noqa: F401  (registers the core commands)

    _register_plugins()
    return app(args=argv if argv is not None else sys.argv[1:], prog_name="convmon")
