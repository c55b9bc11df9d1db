"""x402 on Solana: SPL Token ``transferChecked`` of USDC whose fee payer is a facilitator,
authored as the token program puts it on chain, through the shared Solana engine against
the local node (subscription per facilitator, gap recovery, redelivery)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from redis.asyncio import Redis

from convmon.collectors.payments.facilitators import DEFAULT_FACILITATORS
from convmon.collectors.payments.solana import (
    PLUGIN,
    USDC_MINT,
    SolanaPaymentsConfig,
    make_x402_extractor,
)
from convmon.collectors.solana.errors import MalformedTransaction
from convmon.collectors.solana.txshape import TOKEN_2022_PROGRAM
from convmon.monitor.app import load_config
from convmon.monitor.events import PaymentX402
from convmon.monitor.keys import Keys
from convmon.monitor.yamlfile import FileErrors
from convmon.sim import solana_tx
from convmon.sim.solana_rpc import LocalSolanaServer
from tests.shared_data import require_shared_data
from tests.solana.conftest import MakeCollector, read_events, running
from tests.waiting import eventually

COINBASE = "L54zkaPQFeTn1UsEqieEXBqWrPShiaZEPD7mS5WXfQg"
MINE = solana_tx.wallet("my-facilitator")
PAYER, PAYEE = solana_tx.wallet("agent"), solana_tx.wallet("api")
CFG = SolanaPaymentsConfig.model_validate({"facilitators": {"mine": [MINE]}})
EXTRACT = make_x402_extractor(CFG)


def test_the_built_in_facilitators_are_the_shared_list() -> None:
    path = require_shared_data("payments", "x402-facilitators.json")
    listed = json.loads(path.read_text())["facilitators"]
    assert {name: dict(chains) for name, chains in DEFAULT_FACILITATORS.items()} == {
        name: {chain: tuple(addrs) for chain, addrs in chains.items()}
        for name, chains in listed.items()}


def test_configured_facilitators_extend_the_built_in_ones() -> None:
    assert CFG.facilitator_map() == {COINBASE: "coinbase", MINE: "mine"}


@pytest.mark.parametrize("version", ["legacy", 0, 1])
def test_a_facilitator_paid_usdc_transfer_is_a_payment(version: int | str) -> None:
    tx = solana_tx.x402_transfer("p", 9, 1_780_000_000, USDC_MINT, 25_000, PAYER, PAYEE,
                                 COINBASE, version=version)
    [event] = EXTRACT(tx, 1.0)
    sig = solana_tx.signature("p")
    assert event.id == f"x402:solana:{sig}:1" and event.kind == "payment.x402"
    p = event.payload
    assert isinstance(p, PaymentX402)
    assert (p.chain, p.token, p.contract, p.payer, p.payee, p.facilitator, p.sender) == (
        "solana", "USDC", USDC_MINT, PAYER, PAYEE, "coinbase", COINBASE)
    assert (p.amount.units, p.amount.decimals, p.instruction_path) == (25_000, 6, "1")
    assert event.position == 9 and event.occurred_at == 1_780_000_000


def test_other_fee_payers_mints_programs_and_failures_are_not_payments() -> None:
    stranger = solana_tx.x402_transfer("s", 1, None, USDC_MINT, 1, PAYER, PAYEE,
                                       solana_tx.wallet("someone"))
    assert EXTRACT(stranger, 1.0) == []
    other_mint = solana_tx.x402_transfer("o", 1, None, solana_tx.wallet("not-usdc"), 1,
                                         PAYER, PAYEE, COINBASE)
    assert EXTRACT(other_mint, 1.0) == []
    failed = solana_tx.x402_transfer("f", 1, None, USDC_MINT, 1, PAYER, PAYEE, COINBASE)
    failed["meta"]["err"] = {"InstructionError": [1, "InsufficientFunds"]}
    assert EXTRACT(failed, 1.0) == []
    mint = solana_tx.stablecoin_mint("m", 1, None, USDC_MINT, 5, PAYEE)
    mint["transaction"]["message"]["accountKeys"][0]["pubkey"] = COINBASE
    assert EXTRACT(mint, 1.0) == []  # a mint, not a transfer
    own = solana_tx.x402_transfer("t22", 1, None, USDC_MINT, 7, PAYER, PAYEE, MINE,
                                  program=TOKEN_2022_PROGRAM)
    [event] = EXTRACT(own, 1.0)
    assert isinstance(event.payload, PaymentX402) and event.payload.facilitator == "mine"


def test_a_malformed_amount_raises_for_the_engine_to_count() -> None:
    tx = solana_tx.x402_transfer("bad", 1, None, USDC_MINT, 1, PAYER, PAYEE, COINBASE)
    tx["transaction"]["message"]["instructions"][1]["parsed"]["info"]["tokenAmount"] = "x"
    with pytest.raises(MalformedTransaction):
        EXTRACT(tx, 1.0)


async def test_payments_stream_through_the_local_node_once(
    server: LocalSolanaServer, make_collector: MakeCollector, redis: Redis, keys: Keys
) -> None:
    addresses = sorted(CFG.facilitator_map())
    collector = make_collector("payments_solana", addresses, EXTRACT)
    first = solana_tx.x402_transfer("a", 40, None, USDC_MINT, 1_000, PAYER, PAYEE, COINBASE)
    async with running(collector):
        await eventually(lambda: server.subscriptions == 2, "one subscription per facilitator")
        await server.add_transaction(first)
        await server.add_transaction(
            solana_tx.x402_transfer("b", 41, None, USDC_MINT, 2_000, PAYER, PAYEE, MINE))

        async def two() -> bool:
            return len([e for e in await read_events(redis, keys)
                        if e.kind == "payment.x402"]) >= 2

        await eventually(two, "both payments")
    # Down: a settlement happens, and the first one is notified again on restart.
    await server.add_transaction(
        solana_tx.x402_transfer("c", 42, None, USDC_MINT, 3_000, PAYER, PAYEE, COINBASE),
        notify=False)
    collector = make_collector("payments_solana", addresses, EXTRACT)
    async with running(collector):
        await eventually(lambda: server.subscriptions >= 2, "resubscribed")
        await server.add_transaction(first)

        async def three() -> bool:
            return len([e for e in await read_events(redis, keys)
                        if e.kind == "payment.x402"]) >= 3

        await eventually(three, "the missed payment recovered")
    payments = [e.payload for e in await read_events(redis, keys)
                if isinstance(e.payload, PaymentX402)]
    assert sorted(p.amount.units for p in payments) == [1_000, 2_000, 3_000]


def test_section_loads_and_a_bad_one_names_the_line(tmp_path: Path) -> None:
    good = tmp_path / "convmon.yaml"
    good.write_text("collectors:\n  payments:\n    solana:\n      facilitators:\n"
                    f"        mine: [{MINE}]\n")
    section = load_config(good, environ={}, plugins=[PLUGIN]).section("payments_solana")
    assert isinstance(section, SolanaPaymentsConfig) and section.facilitator_map()[MINE] == "mine"
    bad = tmp_path / "bad.yaml"
    bad.write_text("collectors:\n  payments:\n    solana:\n      tokens:\n"
                   "        USDC: {mint: x, decimals: 6}\n")
    with pytest.raises(FileErrors) as caught:
        load_config(bad, environ={}, plugins=[PLUGIN])
    (error,) = caught.value.errors
    assert error.line == 5 and "mint" in error.field
