"""Core CLI commands: check, config show. (run, status: see daemon and status modules.)"""

from __future__ import annotations

from typing import Any

import typer
import yaml

from convmon.monitor.cli import ConfigOption, app, console, load_or_exit

config_app = typer.Typer(help="Inspect the configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.command()
def check(config: ConfigOption = None) -> None:
    """Validate the configuration and every rule file it references; exit 2 on errors."""
    loaded = load_or_exit(config)
    console.print(
        f"[green]ok[/green]: {loaded.source.file} "
        f"({len(loaded.plugins)} plugins: {', '.join(p.name for p in loaded.plugins)})"
    )


@config_app.command("show")
def config_show(config: ConfigOption = None) -> None:
    """Print the effective configuration (defaults, file and environment merged) with
    secrets redacted."""
    loaded = load_or_exit(config)
    merged: dict[str, Any] = loaded.core.model_dump(
        mode="json", exclude={"collectors", "rules", "alerts"}
    )
    for plugin in loaded.plugins:
        cur = merged
        for part in plugin.section[:-1]:
            cur = cur.setdefault(part, {})
        cur[plugin.section[-1]] = loaded.sections[plugin.name].model_dump(mode="json")
    typer.echo(yaml.safe_dump(merged, sort_keys=False), nl=False)
