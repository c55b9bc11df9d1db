"""Both Solana plugins through the core: config loading with line-aware errors, component
wiring on a `Runtime`, and the state gauges."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.depin import networks
from convmon.collectors.depin import plugin as depin
from convmon.collectors.solana.supply import MintSupplyPoller
from convmon.collectors.stablecoins import solana as sc
from convmon.monitor.app import load_config
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.config import CoreSettings
from convmon.monitor.keys import Keys
from convmon.monitor.plugins import Runtime
from convmon.monitor.yamlfile import FileErrors
from convmon.sim import solana_tx
from convmon.sim.solana_rpc import LocalSolanaServer
from tests.solana.conftest import read_events, stop
from tests.waiting import eventually

PLUGINS = [depin.PLUGIN, sc.PLUGIN]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "convmon.yaml"
    path.write_text(text)
    return path


def test_sections_load_with_defaults_and_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "collectors:\n"
        "  depin:\n"
        "    rpc:\n"
        "      commitment: finalized\n"
        "      max_supported_transaction_version: 1\n"
        "    networks:\n"
        "      render:\n"
        "        wallets: [RenderDistributionWallet111111111111111111]\n"
        "  stablecoins:\n"
        "    solana:\n"
        "      tokens:\n"
        "        USD1: {track: offshore}\n",
    )
    loaded = load_config(path, environ={}, plugins=PLUGINS)
    cfg = loaded.section("depin")
    assert cfg.rpc.commitment == "finalized"
    assert "render" in cfg.active_networks()
    assert cfg.networks["helium"].expected_cadence_s == 86400
    assert loaded.section("stablecoins_solana").tokens["USD1"].track == "offshore"
    defaults = load_config(write(tmp_path, "{}\n"), environ={}, plugins=PLUGINS)
    assert defaults.section("depin").rpc.http_url.reveal().startswith("https://api.mainnet-beta")


def test_bad_field_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "collectors:\n  depin:\n    rpc:\n      commitment: processed\n",
    )
    with pytest.raises(FileErrors) as info:
        load_config(path, environ={}, plugins=PLUGINS)
    assert any(e.line == 4 for e in info.value.errors)


async def test_components_run_on_a_runtime(
    tmp_path: Path, redis: Redis, keys: Keys, bus: EventBus, registry: CollectorRegistry
) -> None:
    async with LocalSolanaServer() as server:
        rpc = {"http_url": server.http_url, "ws_url": server.ws_url, "ping_interval_s": 1.0}
        cfg = depin.DepinConfig.model_validate({"rpc": rpc})
        runtime = Runtime(
            settings=CoreSettings(),
            redis=redis,
            keys=keys,
            bus=bus,
            clock=ManualClock(),
            metrics=registry,
            instance="test",
            data_dir=tmp_path,
        )
        payouts, flows, poller = depin.PLUGIN.components(runtime, cfg)
        assert sc.PLUGIN.components(runtime, sc.StablecoinsSolanaConfig(enabled=False)) == []
        assert isinstance(poller, MintSupplyPoller)
        assert poller.mints["helium/DC"] == (networks.DC, 0)
        tasks = [asyncio.create_task(c.run()) for c in (payouts, flows)]
        mints = sum(len(n.mints) for n in cfg.flow_networks().values())
        try:
            await eventually(
                lambda: server.subscriptions == len(depin.watched_addresses(cfg)) + mints
            )
            await server.add_transaction(
                solana_tx.helium_distribution("rt", 5, 1_760_000_000, solana_tx.wallet("h"), 99)
            )
            await server.add_transaction(
                solana_tx.helium_burn_delegated_data_credits("dcb", 6, 1_760_000_001, 77)
            )

            async def paid_and_burned() -> bool:
                ids = [e.id for e in await read_events(redis, keys)]
                return any(i.startswith("sol:payout:") for i in ids) and any(
                    i.startswith("sol:depin:burn:") for i in ids
                )

            await eventually(paid_and_burned)
        finally:
            await stop(*tasks)
        [event] = [e for e in await read_events(redis, keys) if e.id.startswith("sol:payout")]
        assert event.id == f"sol:payout:{solana_tx.signature('rt')}:{networks.HNT}"
        families = list(await depin.state_metrics(runtime, cfg))
        assert {f.name for f in families} == {
            "convmon_solana_signature_queue_depth",
            "convmon_solana_failed_signatures",
        }
        depth = {s.labels["collector"] for f in families for s in f.samples}
        assert depth == {"depin", "depin_supply"}
        status = await depin.status(runtime, cfg)
        assert status["queue_depth"] == 0 and "helium" in status["networks"]
        assert status["supply_flows"]["mints"]["helium/DC"] == networks.DC


def test_cli_group_is_registered() -> None:
    import typer
    from typer.testing import CliRunner

    app = typer.Typer()
    app.command("noop")(lambda: None)
    assert depin.PLUGIN.cli is not None
    depin.PLUGIN.cli(app)
    result = CliRunner().invoke(app, ["solana", "--help"])
    assert result.exit_code == 0, result.output
    assert "requeue-failed" in result.output and "queues" in result.output
