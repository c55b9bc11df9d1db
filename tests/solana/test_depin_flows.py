"""DePIN token supply flows: emissions and burns with their purpose, read from instruction
data the way the programs lay it out (discriminators computed here from the instruction
names), inner and top-level, SPL Token and Token-2022, legacy/v0/v1 with lookup tables, the
real Helium fixtures, and streaming through the local node with gaps and 429 bursts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import base58
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.depin import networks as n
from convmon.collectors.depin import plugin as depin_plugin
from convmon.collectors.depin.flows import FLOWS_NAME, make_flow_extractor, supply_poller
from convmon.collectors.depin.plugin import DepinConfig
from convmon.collectors.solana.errors import MalformedTransaction
from convmon.collectors.solana.supplyflow import changes_supply
from convmon.collectors.solana.txshape import TOKEN_2022_PROGRAM, TOKEN_PROGRAM
from convmon.monitor.app import load_config
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.events import DepinBurn, DepinEmission, DepinSupply, Event
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.monitor.yamlfile import FileErrors
from convmon.sim import solana_tx as a
from convmon.sim.solana_rpc import LocalSolanaServer
from tests.shared_data import require_shared_data
from tests.solana.conftest import MakeCollector, read_events, rpc_settings, running
from tests.waiting import eventually

CFG = DepinConfig()
EXTRACT = make_flow_extractor(CFG.flow_networks(), "solana/rpc")


def disc(name: str) -> bytes:
    return hashlib.sha256(f"global:{name}".encode()).digest()[:8]


def flows(events: list[Event]) -> list[tuple[str, str, str, int, str]]:
    out = []
    for e in events:
        p = e.payload
        assert isinstance(p, DepinEmission | DepinBurn)
        out.append((e.kind, p.network, p.token, p.amount.units, p.purpose))
    return out


def top_data(tx: dict[str, Any], index: int) -> bytes:
    return bytes(base58.b58decode(tx["transaction"]["message"]["instructions"][index]["data"]))


@pytest.mark.parametrize("version", ["legacy", 0, 1])
def test_hnt_burned_for_data_credits(version: int | str) -> None:
    owner = a.wallet("dc-buyer")
    tx = a.helium_mint_data_credits("mdc", 10, 1_760_000_000, owner, 5 * 10**8, 123_456,
                                    version=version)
    data = top_data(tx, 1)
    # The layout the program reads: discriminator, then Option<u64> hnt_amount, dc_amount.
    assert data[:8] == disc("mint_data_credits_v0")
    assert data[8] == 1 and int.from_bytes(data[9:17], "little") == 5 * 10**8
    assert data[17:] == b"\x00"
    if version != "legacy":
        assert tx["transaction"]["message"]["addressTableLookups"]
        message = tx["transaction"]["message"]
        assert any(k["source"] == "lookupTable" for k in message["accountKeys"])
    events = EXTRACT(tx, 1.0)
    assert flows(events) == [
        ("depin.burn", "helium", "HNT", 5 * 10**8, "data_credits"),
        ("depin.emission", "helium", "DC", 123_456, "data_credits"),
    ]
    burn, dc = (e.payload for e in events)
    assert isinstance(burn, DepinBurn) and isinstance(dc, DepinEmission)
    sig = a.signature("mdc")
    assert events[0].id == f"sol:depin:burn:{sig}:1.0"
    assert events[1].id == f"sol:depin:emission:{sig}:1.2"
    assert burn.program == n.HELIUM_DATA_CREDITS == dc.program
    assert burn.instruction == "mint_data_credits_v0"
    assert (burn.credits, dc.credits) == (False, True)
    assert burn.slot == 10 and burn.block_time == 1_760_000_000 and burn.tx == sig
    assert burn.amount.decimals == 8 and dc.amount.decimals == 0
    assert events[0].occurred_at == 1_760_000_000.0 and events[0].position == 10


def test_data_credits_spent_on_network_usage() -> None:
    tx = a.helium_burn_delegated_data_credits("bd", 11, None, 9_000_000)
    data = top_data(tx, 1)
    assert data[:8] == disc("burn_delegated_data_credits_v0")
    assert int.from_bytes(data[8:], "little") == 9_000_000
    [event] = EXTRACT(tx, 5.0)
    assert flows([event]) == [("depin.burn", "helium", "DC", 9_000_000, "network_usage")]
    assert isinstance(event.payload, DepinBurn) and event.payload.credits


def test_epoch_emission_two_levels_down() -> None:
    treasury, escrow = a.wallet("sub-dao-treasury"), a.wallet("rewards-escrow")
    tx = a.helium_issue_rewards("ir", 12, None, 20_400, [(treasury, 7 * 10**10), (escrow, 10**11)])
    assert top_data(tx, 1) == disc("issue_rewards_v0") + (20_400).to_bytes(8, "little")
    inner = tx["meta"]["innerInstructions"][0]["instructions"]
    assert [ix.get("stackHeight") for ix in inner] == [2, 3, 2, 3]
    events = EXTRACT(tx, 1.0)
    assert flows(events) == [
        ("depin.emission", "helium", "HNT", 7 * 10**10, "rewards"),
        ("depin.emission", "helium", "HNT", 10**11, "rewards"),
    ]
    assert all(
        isinstance(e.payload, DepinEmission) and e.payload.instruction == "issue_rewards_v0"
        for e in events
    )


def test_burn_without_tracking_authored_here() -> None:
    """The transaction is built in the test from the instruction name and its Borsh args."""
    owner = a.wallet("dc-holder")
    b = a.TxBuilder(a.signature("bwt"), 13, None, version=0)
    b.account(owner, signer=True)
    acct = a.token_account(owner, n.DC)
    b.balance(acct, n.DC, owner, 0, 500, 0)
    data = base58.b58encode(disc("burn_without_tracking_v0") + (500).to_bytes(8, "little"))
    i = a.raw_call(b, n.HELIUM_DATA_CREDITS, data.decode(), [owner, acct, n.DC])
    a.token_call(b, i, TOKEN_PROGRAM, a.spl("burnChecked", account=acct, mint=n.DC,
                                             authority=owner, amount=500, decimals=0), 2)
    [event] = EXTRACT(b.build(), 1.0)
    assert flows([event]) == [("depin.burn", "helium", "DC", 500, "burn_without_tracking")]
    assert isinstance(event.payload, DepinBurn) and event.payload.method == "burnChecked"


def test_unknown_program_and_top_level_burns_count_as_unknown() -> None:
    holder = a.wallet("render-user")
    via = a.stablecoin_burn("rb", 14, None, n.RENDER, 3 * 10**8, holder, decimals=8, inner=True)
    [event] = EXTRACT(via, 1.0)
    assert flows([event]) == [("depin.burn", "render", "RENDER", 3 * 10**8, "unknown")]
    assert isinstance(event.payload, DepinBurn)
    assert event.payload.program == a.pda("redeemer", n.RENDER)  # the direct caller
    assert event.payload.instruction is None
    top = a.stablecoin_burn("rt", 15, None, n.HONEY, 10**9, holder, decimals=9, checked=True)
    [event] = EXTRACT(top, 1.0)
    assert flows([event]) == [("depin.burn", "hivemapper", "HONEY", 10**9, "unknown")]
    assert isinstance(event.payload, DepinBurn) and event.payload.program == TOKEN_PROGRAM


def test_a_registered_program_with_an_unlisted_instruction_is_unknown() -> None:
    """A data_credits instruction the registry does not list: program known, purpose not."""
    owner = a.wallet("x")
    b = a.TxBuilder(a.signature("unl"), 16, None)
    b.account(owner, signer=True)
    acct = a.token_account(owner, n.HNT)
    b.balance(acct, n.HNT, owner, 8, 10, 0)
    i = a.raw_call(b, n.HELIUM_DATA_CREDITS, a.anchor_data("some_future_v9"), [owner])
    a.token_call(b, i, TOKEN_PROGRAM,
                 a.spl("burn", account=acct, mint=n.HNT, authority=owner, amount=10), 2)
    [event] = EXTRACT(b.build(), 1.0)
    assert isinstance(event.payload, DepinBurn)
    assert (event.payload.purpose, event.payload.program) == ("unknown", n.HELIUM_DATA_CREDITS)


def test_token_2022_mint_of_a_network_added_in_config() -> None:
    mint = a.wallet("compute-token-2022")
    cfg = DepinConfig.model_validate({
        "networks": {
            "gpunet": {
                "reward_mints": [{"mint": mint, "token": "GPU", "decimals": 6}],
                "mints": [{"mint": mint, "token": "GPU", "decimals": 6}],
                "programs": [{"program": a.pda("minter", mint), "purpose": "rewards"}],
            }
        }
    })
    extract = make_flow_extractor(cfg.flow_networks(), "solana/rpc")
    tx = a.stablecoin_mint("g", 17, None, mint, 42, a.wallet("gpu-host"),
                           program=TOKEN_2022_PROGRAM, inner=True, checked=True, version=1)
    [event] = extract(tx, 1.0)
    assert flows([event]) == [("depin.emission", "gpunet", "GPU", 42, "rewards")]
    assert isinstance(event.payload, DepinEmission) and event.payload.method == "mintToChecked"
    burn = a.stablecoin_burn("gb", 18, None, mint, 40, a.wallet("gpu-user"),
                             program=TOKEN_2022_PROGRAM, checked=True, version=0)
    [event] = extract(burn, 1.0)
    assert flows([event]) == [("depin.burn", "gpunet", "GPU", 40, "unknown")]
    assert isinstance(event.payload, DepinBurn) and event.payload.program == TOKEN_2022_PROGRAM


def test_failed_unrelated_and_malformed() -> None:
    failed = a.helium_burn_delegated_data_credits("f", 1, None, 5)
    failed["meta"]["err"] = {"InstructionError": [1, "InsufficientFunds"]}
    assert EXTRACT(failed, 1.0) == []
    assert EXTRACT(a.stablecoin_mint("u", 1, None, a.wallet("usdc?"), 5, a.wallet("y")), 1.0) == []
    transfer = a.nosana_job_payout("t", 1, None, a.wallet("node"), 7)  # a transfer, not a flow
    assert EXTRACT(transfer, 1.0) == []
    bad = a.helium_burn_delegated_data_credits("bad", 1, None, 5)
    bad["meta"]["innerInstructions"][0]["instructions"][0]["parsed"]["info"]["amount"] = "?"
    with pytest.raises(MalformedTransaction):
        EXTRACT(bad, 1.0)


def test_real_helium_delegation_claim_burns_hnt_four_levels_deep() -> None:
    """Mainnet: tuktuk runs helium_sub_daos claim_rewards_v1, which burns HNT through the
    circuit breaker (the token program at stack height 4)."""
    path = require_shared_data("solana", "helium", "hsd_claim_rewards.json")
    tx = json.loads(path.read_text())
    events = EXTRACT(tx, 1.0)
    assert flows(events) == [
        ("depin.burn", "helium", "HNT", 787, "unknown"),
        ("depin.burn", "helium", "HNT", 79_944, "unknown"),
    ]
    assert all(isinstance(e.payload, DepinBurn) and e.payload.program == n.HELIUM_SUB_DAOS
               for e in events)
    # Naming the instruction in the registry (config, no code) gives the burns a purpose.
    cfg = DepinConfig.model_validate({"networks": {"helium": {"extra_programs": [
        {"program": n.HELIUM_SUB_DAOS, "instruction": "claim_rewards_v1",
         "purpose": "delegation_claim"}]}}})
    named = make_flow_extractor(cfg.flow_networks(), "solana/rpc")(tx, 1.0)
    assert [e.payload.purpose for e in named] == ["delegation_claim"] * 2  # type: ignore[union-attr]
    assert [e.payload.instruction for e in named] == ["claim_rewards_v1"] * 2  # type: ignore[union-attr]
    for name in ("lazy_distributor_distribute", "mini_fanout_distribute"):
        other = json.loads(require_shared_data("solana", "helium", f"{name}.json").read_text())
        assert EXTRACT(other, 1.0) == []  # distributions transfer; nothing minted or burned


def test_a_mint_claimed_by_two_networks_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="listed by networks"):
        DepinConfig.model_validate({"networks": {"copy": {
            "reward_mints": [], "mints": [{"mint": n.HNT, "token": "HNT", "decimals": 8}]}}})


def test_render_and_ionet_flows_need_no_wallets() -> None:
    assert {"render", "ionet"} <= set(CFG.flow_networks())
    assert not {"render", "ionet"} & set(CFG.active_networks())


MINTS = [m.mint for net in CFG.flow_networks().values() for m in net.mints]


async def _flow_ids(redis: Redis, keys: Keys) -> list[str]:
    return [e.id for e in await read_events(redis, keys)
            if isinstance(e.payload, DepinEmission | DepinBurn)]


async def test_flows_stream_with_gap_recovery_and_429s(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    collector = make_collector(FLOWS_NAME, MINTS, EXTRACT)
    async with running(collector):
        await eventually(lambda: server.subscriptions == len(MINTS))
        await server.add_transaction(a.helium_mint_data_credits("s1", 100, None,
                                                                a.wallet("o1"), 10**8, 10**5))
        await eventually(lambda: _has(redis, keys, 2))
        await server.drop_connections()
        for i in range(2, 6):  # missed while disconnected
            await server.add_transaction(
                a.helium_burn_delegated_data_credits(f"s{i}", 100 + i, None, 1000 + i),
                notify=False,
            )
        server.fail_next(6, status=429, retry_after=0.2)  # recovery and fetches hit a burst
        await eventually(lambda: server.subscriptions == len(MINTS))
        await server.add_transaction(a.helium_issue_rewards("s6", 106, None, 1,
                                                            [(a.wallet("t"), 10**9)]))
        await eventually(lambda: _has(redis, keys, 7), "every flow, the gap included")
        await eventually(lambda: _drained(collector), "the fetch queue drained")
    ids = await _flow_ids(redis, keys)
    assert len(ids) == len(set(ids)) == 7
    assert server.rejected >= 1
    events = [e for e in await read_events(redis, keys)
              if isinstance(e.payload, DepinEmission | DepinBurn)]
    assert sorted(p.amount.units for e in events if (p := e.payload).token == "DC"
                  and isinstance(p, DepinBurn)) == [1002, 1003, 1004, 1005]


async def _has(redis: Redis, keys: Keys, want: int) -> bool:
    return len(await _flow_ids(redis, keys)) >= want


async def _drained(collector: Any) -> bool:
    return bool(await collector.queue.depth() == 0)


async def test_supply_poll_publishes_depin_supply(
    server: LocalSolanaServer, redis: Redis, keys: Keys, bus: EventBus,
    registry: CollectorRegistry,
) -> None:
    server.slot = 900
    server.set_supply(n.HNT, 18 * 10**15, 8)
    server.set_supply(n.DC, 10**12, 0)
    clock = ManualClock()
    health = CollectorHealth(FLOWS_NAME, redis=redis, keys=keys, bus=bus, clock=clock,
                             registry=registry)
    helium = {"helium": CFG.flow_networks()["helium"]}
    poller = supply_poller(helium, rpc_settings(server, max_retries=0), CFG.supply_flows,
                           "solana/rpc", bus=bus, clock=clock, health=health)
    try:
        assert await poller.poll_once() == 2  # IOT, MOBILE unknown to this node: errors
    finally:
        await poller.rpc.close()
    supplies = {e.payload.token: e for e in await read_events(redis, keys)
                if isinstance(e.payload, DepinSupply)}
    assert supplies["HNT"].id == f"sol:depin:supply:{n.HNT}:900"
    assert supplies["HNT"].payload.amount.units == 18 * 10**15
    assert isinstance(supplies["DC"].payload, DepinSupply) and supplies["DC"].payload.credits
    assert registry.get_sample_value(
        "convmon_collector_errors_total", {"collector": FLOWS_NAME, "kind": "token_supply"}
    ) == 2


def test_a_bad_registry_entry_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "convmon.yaml"
    path.write_text(
        "collectors:\n"
        "  depin:\n"
        "    networks:\n"
        "      helium:\n"
        "        extra_programs:\n"
        "          - {program: hdaoVTCqhfHHo75XdAMxBKdUqvq1i5bF23sisBqVgGR,\n"
        "             instruction: claim_rewards_v1}\n"
    )
    with pytest.raises(FileErrors) as info:
        load_config(path, environ={}, plugins=[depin_plugin.PLUGIN])
    [error] = info.value.errors
    assert error.line == 6 and "purpose" in str(error)


def test_logs_tell_which_notifications_may_change_supply() -> None:
    mint = a.helium_mint_data_credits("lg", 1, None, a.wallet("o"), 5, 5)["meta"]["logMessages"]
    assert "Program log: Instruction: Burn" in mint and changes_supply(mint)
    transfer = a.nosana_job_payout("lt", 1, None, a.wallet("n"), 5)["meta"]["logMessages"]
    assert "Program log: Instruction: TransferChecked" in transfer
    assert not changes_supply(transfer)
    assert changes_supply([*transfer[:3], "Log truncated"])


async def test_transfers_of_a_watched_mint_are_not_fetched(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    collector = make_collector(FLOWS_NAME, [n.NOS], EXTRACT)
    collector.wanted_logs = changes_supply
    async with running(collector):
        await eventually(lambda: server.subscriptions == 1)
        await eventually(lambda: _drained(collector))
        transfer = await server.add_transaction(a.nosana_job_payout("nt", 1, None,
                                                                    a.wallet("n"), 9))
        burn = await server.add_transaction(a.stablecoin_burn("nb", 2, None, n.NOS, 4,
                                                              a.wallet("h"), inner=True))
        await eventually(lambda: _has(redis, keys, 1))
        await eventually(lambda: _drained(collector))
    done = collector.queue.done_key
    assert await redis.zscore(done, burn) is not None
    assert await redis.zscore(done, transfer) is None  # notified, never fetched
