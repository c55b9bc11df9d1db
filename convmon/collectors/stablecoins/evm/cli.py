"""``convmon eth-stablecoins``: inspect the token registry of an EVM chain and check it
against the chain.

``tokens`` prints the effective registry of ``--chain`` (default ethereum: defaults,
overrides, added tokens). ``verify`` connects to the chain's endpoint and compares each
token's ``decimals()`` with the configuration and prints ``totalSupply()``; exit code 1 when
a decimals value disagrees, 3 when the endpoint cannot be reached.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from convmon.collectors.stablecoins.evm.config import EvmChainConfig, EvmStablecoinsConfig
from convmon.collectors.stablecoins.evm.errors import RpcError
from convmon.collectors.stablecoins.evm.reconcile import DECIMALS, TOTAL_SUPPLY
from convmon.collectors.stablecoins.evm.rpc import EthRpc
from convmon.monitor.cli import ConfigOption, console, err_console, run_async
from convmon.monitor.config import read_config_source
from convmon.monitor.events import Amount
from convmon.monitor.yamlfile import FileError, FileErrors, dig, validate_model

SECTION = ("collectors", "stablecoins", "evm")
ChainOption = Annotated[str, typer.Option("--chain", help="Chain name in the EVM registry.")]


def _section(config: Path | None, chain: str) -> EvmChainConfig:
    """This plugin's section only (file + environment), so the command works whatever
    other plugins are installed; errors name file, line and field and exit 2."""
    try:
        source = read_config_source(config)
        section = validate_model(EvmStablecoinsConfig, dig(source.data, SECTION), source,
                                 SECTION)
    except (FileError, FileErrors) as exc:
        for line in str(exc).splitlines():
            err_console.print(f"[red]error[/red]: {line}", highlight=False)
        raise typer.Exit(2) from None
    if chain not in section.chains:
        err_console.print(f"[red]error[/red]: no chain {chain!r} in {'.'.join(SECTION)}.chains "
                          f"(known: {', '.join(sorted(section.chains))})", highlight=False)
        raise typer.Exit(2)
    return section.chains[chain]


async def _verify(cfg: EvmChainConfig) -> list[tuple[str, int, int | None, int | None]]:
    from web3 import AsyncHTTPProvider, WebSocketProvider

    provider: Any
    if cfg.use_websocket:
        assert cfg.ws_url is not None
        provider = WebSocketProvider(cfg.ws_url.reveal(), max_connection_retries=1,
                                     request_timeout=cfg.request_timeout_s)
        await provider.connect()
    else:
        assert cfg.http_url is not None
        provider = AsyncHTTPProvider(cfg.http_url.reveal(), exception_retry_configuration=None)
    rows = []
    try:
        rpc = EthRpc(provider)
        for token in cfg.registry():
            try:
                decimals = await rpc.eth_call_uint(token.address, DECIMALS)
                supply = await rpc.eth_call_uint(token.address, TOTAL_SUPPLY)
            except RpcError:
                decimals = supply = None
            rows.append((token.symbol, token.decimals, decimals, supply))
    finally:
        with contextlib.suppress(Exception):
            await provider.disconnect()
    return rows


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="EVM stablecoin collectors (Ethereum, Base, ...).",
                        no_args_is_help=True)
    app.add_typer(group, name="eth-stablecoins")

    @group.command("tokens")
    def tokens(config: ConfigOption = None, chain: ChainOption = "ethereum") -> None:
        """Print the tokens watched on a chain, with their track and decoding style."""
        table = Table("symbol", "address", "decimals", "track", "style")
        for token in _section(config, chain).registry():
            table.add_row(token.symbol, token.address, str(token.decimals), token.track,
                          token.style)
        console.print(table)

    @group.command("verify")
    def verify(config: ConfigOption = None, chain: ChainOption = "ethereum") -> None:
        """Compare configured decimals with decimals() on chain and show totalSupply()."""
        cfg = _section(config, chain)
        try:
            rows = run_async(lambda: _verify(cfg))
        except Exception as exc:
            console.print(f"[red]error[/red]: cannot query the endpoint: {type(exc).__name__}")
            raise typer.Exit(3) from None
        table = Table("symbol", "configured", "on chain", "total supply", "ok")
        bad = 0
        for symbol, configured, onchain, supply in rows:
            ok = onchain is None or onchain == configured
            bad += not ok
            table.add_row(symbol, str(configured), "-" if onchain is None else str(onchain),
                          "-" if supply is None else str(Amount(supply, configured)),
                          "yes" if ok else "[red]MISMATCH[/red]")
        console.print(table)
        if bad:
            raise typer.Exit(1)
