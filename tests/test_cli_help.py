"""Every command and every option of the CLI, plugins' included, explains itself."""

from __future__ import annotations

from typer.core import TyperGroup, TyperOption
from typer.main import get_command

from convmon.monitor import cli


def undocumented() -> list[str]:
    from convmon.monitor import commands  # noqa: F401  (registers the core commands)

    cli._register_plugins()
    found: list[str] = []

    def walk(command: object, path: list[str]) -> None:
        for param in getattr(command, "params", []):
            if isinstance(param, TyperOption) and not param.help and param.name != "help":
                found.append(f"{' '.join(path)} --{param.name}")
        if isinstance(command, TyperGroup):
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        elif not getattr(command, "help", None):
            found.append(f"{' '.join(path)}: no help text")

    walk(get_command(cli.app), ["convmon"])
    return found


def test_every_command_and_option_has_help() -> None:
    assert undocumented() == []
