"""Solana stablecoin mints/burns (top-level and inner, SPL Token and Token-2022, v0/v1)
and supply reconciliation against the local node."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from convmon.collectors.solana.errors import MalformedTransaction
from convmon.collectors.solana.txshape import TOKEN_2022_PROGRAM
from convmon.collectors.stablecoins.solana import (
    StablecoinsSolanaConfig,
    SupplyPoller,
    make_extractor,
)
from convmon.monitor.bus import EventBus
from convmon.monitor.clock import ManualClock
from convmon.monitor.events import StablecoinBurn, StablecoinMint, StablecoinSupply
from convmon.monitor.health import CollectorHealth
from convmon.monitor.keys import Keys
from convmon.sim import solana_tx
from convmon.sim.solana_rpc import LocalSolanaServer
from tests.solana.conftest import MakeCollector, read_events, rpc_settings, running
from tests.waiting import eventually

CFG = StablecoinsSolanaConfig()
TOKENS = CFG.tokens
USDC, USDT, USD1, PYUSD = (TOKENS[s].mint for s in ("USDC", "USDT", "USD1", "PYUSD"))
EXTRACT = make_extractor(CFG)


@pytest.mark.parametrize("version", ["legacy", 0, 1])
@pytest.mark.parametrize("checked", [False, True])
def test_top_level_mint(version: int | str, checked: bool) -> None:
    treasury = solana_tx.wallet("tether-treasury")
    tx = solana_tx.stablecoin_mint(
        "m", 7, 1_760_000_000, USDT, 250_000_000 * 10**6, treasury, checked=checked, version=version
    )
    [event] = EXTRACT(tx, 1.0)
    sig = solana_tx.signature("m")
    assert event.id == f"sol:mint:{sig}:1"
    assert isinstance(event.payload, StablecoinMint)
    p = event.payload
    assert (p.token, p.track, p.chain, p.contract) == ("USDT", "offshore", "solana", USDT)
    assert p.amount.units == 250_000_000 * 10**6 and p.amount.decimals == 6
    assert p.counterparty == treasury
    assert p.method == ("mintToChecked" if checked else "mintTo")
    assert p.link == f"https://solscan.io/tx/{sig}" and event.position == 7


def test_inner_instruction_mint_and_burn() -> None:
    mint = solana_tx.stablecoin_mint(
        "im", 8, None, USDC, 5 * 10**6, solana_tx.wallet("circle"), inner=True
    )
    [event] = EXTRACT(mint, 1.0)
    assert event.id == f"sol:mint:{solana_tx.signature('im')}:1.0"
    assert isinstance(event.payload, StablecoinMint)
    assert event.payload.instruction_path == "1.0" and event.payload.log_index == 1
    burn = solana_tx.stablecoin_burn(
        "ib", 9, None, USD1, 3 * 10**6, solana_tx.wallet("wlfi"),
        inner=True, checked=True, version=1,
    )
    [event] = EXTRACT(burn, 1.0)
    assert event.id == f"sol:burn:{solana_tx.signature('ib')}:1.0"
    assert isinstance(event.payload, StablecoinBurn)
    assert event.payload.track == "machine-native" and event.payload.method == "burnChecked"
    assert event.payload.counterparty == solana_tx.wallet("wlfi")


def test_token_2022_pyusd() -> None:
    tx = solana_tx.stablecoin_mint(
        "py", 10, None, PYUSD, 42, solana_tx.wallet("paxos"),
        program=TOKEN_2022_PROGRAM, checked=True,
    )
    [event] = EXTRACT(tx, 1.0)
    assert isinstance(event.payload, StablecoinMint) and event.payload.token == "PYUSD"


def test_untracked_mint_failed_tx_and_transfers_are_ignored() -> None:
    other = solana_tx.stablecoin_mint(
        "o", 1, None, solana_tx.wallet("not-a-stablecoin"), 1, solana_tx.wallet("x")
    )
    assert EXTRACT(other, 1.0) == []
    failed = solana_tx.stablecoin_mint("f", 1, None, USDC, 1, solana_tx.wallet("x"))
    failed["meta"]["err"] = {"InstructionError": [1, "InvalidAccountData"]}
    assert EXTRACT(failed, 1.0) == []
    payout = solana_tx.nosana_job_payout("t", 1, None, solana_tx.wallet("n"), 1)
    assert EXTRACT(payout, 1.0) == []


def test_malformed_instruction_amount() -> None:
    tx = solana_tx.stablecoin_mint("bad", 1, None, USDC, 1, solana_tx.wallet("x"))
    tx["transaction"]["message"]["instructions"][1]["parsed"]["info"]["amount"] = "x"
    with pytest.raises(MalformedTransaction):
        EXTRACT(tx, 1.0)


def test_track_is_user_changeable() -> None:
    cfg = StablecoinsSolanaConfig.model_validate({"tokens": {"USDT": {"track": "regulated"}}})
    assert cfg.tokens["USDT"].track == "regulated" and cfg.tokens["USDT"].mint == USDT
    assert set(cfg.tokens) == {"USDC", "USDT", "USD1", "PYUSD"}


async def test_mints_stream_through_the_local_node(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    collector = make_collector("stablecoins_solana", [USDC, USDT, USD1, PYUSD], EXTRACT)
    async with running(collector):
        await eventually(lambda: server.subscriptions == 4)
        await server.add_transaction(
            solana_tx.stablecoin_mint(
                "s1", 50, None, USDT, 10**12, solana_tx.wallet("t"), inner=True, version=1
            )
        )
        await server.add_transaction(
            solana_tx.stablecoin_burn("s2", 51, None, USDC, 10**9, solana_tx.wallet("c"))
        )
        await server.add_transaction(
            solana_tx.stablecoin_mint(
                "s3", 52, None, PYUSD, 10**6, solana_tx.wallet("p"), program=TOKEN_2022_PROGRAM
            )
        )

        async def three() -> bool:
            return len(await read_events(redis, keys)) >= 4  # + collector.status

        await eventually(three)
    kinds = [e.kind for e in await read_events(redis, keys) if e.chain == "solana"]
    assert kinds == ["stablecoin.mint", "stablecoin.burn", "stablecoin.mint"]


async def test_supply_poll_and_decimals_check(
    server: LocalSolanaServer,
    redis: Redis,
    keys: Keys,
    bus: EventBus,
    registry: CollectorRegistry,
) -> None:
    server.slot = 77
    server.set_supply(USDC, 9_000_000 * 10**6, 6)
    server.set_supply(USDT, 2_000_000 * 10**6, 6)
    server.set_supply(USD1, 10**15, 9)  # disagrees with the configured 6 decimals
    cfg = StablecoinsSolanaConfig(rpc=rpc_settings(server, max_retries=0))
    clock = ManualClock()
    health = CollectorHealth(
        "stablecoins_solana", redis=redis, keys=keys, bus=bus, clock=clock, registry=registry
    )
    poller = SupplyPoller(cfg, bus=bus, clock=clock, health=health)
    try:
        assert await poller.poll_once() == 3  # PYUSD unknown to this node: an error, not a crash
        assert await poller.poll_once() == 0  # same slot: deduplicated
    finally:
        await poller.rpc.close()
    assert poller.decimals_mismatch == {"USD1"}
    supplies = {
        e.payload.token: e
        for e in await read_events(redis, keys)
        if isinstance(e.payload, StablecoinSupply)
    }
    assert supplies["USDC"].payload.amount.units == 9_000_000 * 10**6
    assert supplies["USDC"].id == f"sol:supply:{USDC}:77"
    assert (
        registry.get_sample_value(
            "convmon_collector_errors_total",
            {"collector": "stablecoins_solana", "kind": "token_supply"},
        )
        == 2
    )
