"""``convmon eth-stablecoins tokens|verify`` against a real anvil node."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer
from typer.testing import CliRunner

from convmon.collectors.stablecoins.evm.plugin import PLUGIN
from convmon.collectors.stablecoins.evm.tokens import DEFAULT_TOKENS
from convmon.sim.anvil import AnvilNode


def cli_app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def root() -> None:
        """convmon"""

    assert PLUGIN.cli is not None
    PLUGIN.cli(app)
    return app


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "convmon.yaml"
    path.write_text(f"collectors:\n  stablecoins:\n    evm:\n      chains:\n"
                    f"        ethereum:\n          ws_url: {url}\n"
                    "          tracks: {FDUSD: regulated}\n")
    return path


def test_tokens_lists_the_registry_with_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path, "ws://127.0.0.1:1")
    result = CliRunner().invoke(cli_app(), ["eth-stablecoins", "tokens", "-c", str(path)],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    fdusd = next(line for line in result.output.splitlines() if "FDUSD" in line)
    assert "regulated" in fdusd and "machine-native" in result.output


async def test_verify_flags_a_decimals_mismatch(node: AnvilNode, tmp_path: Path) -> None:
    usdc = next(t for t in DEFAULT_TOKENS if t.symbol == "USDC")
    path = write_config(tmp_path, node.ws_url)
    args = ["eth-stablecoins", "verify", "-c", str(path)]
    runner = CliRunner()
    result = await asyncio.to_thread(runner.invoke, cli_app(), args, env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "1000000.000000" in result.output  # USDC totalSupply 10**12 units at 6 decimals
    await node.install_token(usdc, decimals=18)
    result = await asyncio.to_thread(runner.invoke, cli_app(), args, env={"COLUMNS": "200"})
    assert result.exit_code == 1 and "MISMATCH" in result.output


def test_verify_without_endpoint_exits_3(tmp_path: Path) -> None:
    path = write_config(tmp_path, "ws://127.0.0.1:9")
    result = CliRunner().invoke(cli_app(), ["eth-stablecoins", "verify", "-c", str(path)])
    assert result.exit_code == 3


def test_bad_section_exits_2_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "convmon.yaml"
    path.write_text("collectors:\n  stablecoins:\n    evm:\n      chains:\n"
                    "        base:\n          max_block_range: 0\n")
    result = CliRunner().invoke(cli_app(), ["eth-stablecoins", "tokens", "-c", str(path)])
    assert result.exit_code == 2
    assert ":6" in result.output and "max_block_range" in result.output


def test_tokens_of_base_and_an_unknown_chain(tmp_path: Path) -> None:
    path = write_config(tmp_path, "ws://127.0.0.1:1")
    runner = CliRunner()
    result = runner.invoke(cli_app(), ["eth-stablecoins", "tokens", "-c", str(path),
                                       "--chain", "base"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "0x833589fcd6edb6e08f4c7c32d4f71b54bda02913" in result.output
    assert "FDUSD" not in result.output
    result = runner.invoke(cli_app(), ["eth-stablecoins", "tokens", "-c", str(path),
                                       "--chain", "gnosis"])
    assert result.exit_code == 2 and "gnosis" in result.output
