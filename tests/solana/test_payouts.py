"""Payout extraction on real Helium transactions, the solders envelopes, and authored
Hivemapper/Nosana/Render transactions in mainnet shape."""

from __future__ import annotations

import json
from typing import Any

import pytest

from convmon.collectors.depin import networks
from convmon.collectors.depin.networks import NetworkConfig, RewardMint, default_networks
from convmon.collectors.depin.payouts import NetworkRules, ParsedTx, extract_payouts
from convmon.collectors.depin.plugin import DepinConfig, make_extractor
from convmon.collectors.errors import MalformedPayload
from convmon.collectors.solana.errors import MalformedTransaction
from convmon.collectors.solana.txshape import TOKEN_PROGRAM, account_keys
from convmon.monitor.events import DepinPayout
from convmon.sim import solana_tx
from tests.shared_data import require_shared_data

RULES = {name: NetworkRules.from_config(name, c) for name, c in default_networks().items()}


def load(*parts: str) -> Any:
    return json.loads(require_shared_data("solana", *parts).read_text())


def test_helium_devnet_lazy_distribution_is_a_payout() -> None:
    tx = load("helium", "lazy_distributor_distribute.json")
    [payout] = extract_payouts(tx, RULES["helium"])
    assert payout.token == "HNT" and payout.mint == networks.HNT
    assert payout.kind == "claim"
    # The devnet distribution moved 0 HNT: balances do not change, the parsed circuit-breaker
    # transfer (an inner instruction) is the evidence, and the escrow is not a recipient.
    assert payout.evidence == "instructions"
    assert payout.total == 0 and payout.instruction_units == 0
    assert payout.recipients == [("8v8cEbCNts9ENuokPo6vF5QwaZJ4CAAmDrXKQdVbstFP", 0)]


def test_helium_mainnet_hsd_claim_burns_are_not_payouts() -> None:
    tx = load("helium", "hsd_claim_rewards.json")
    for rules in RULES.values():
        assert extract_payouts(tx, rules) == []


def test_helium_mini_fanout_without_token_movement_is_not_a_payout() -> None:
    assert extract_payouts(load("helium", "mini_fanout_distribute.json"), RULES["helium"]) == []


def test_depin_event_for_helium_fixture() -> None:
    tx = load("helium", "lazy_distributor_distribute.json")
    [event] = make_extractor(DepinConfig())(tx, 1.0)
    assert event.id == f"sol:payout:{tx['signature']}:{networks.HNT}"
    assert event.position == tx["slot"] and event.occurred_at == tx["blockTime"]
    assert isinstance(event.payload, DepinPayout)
    assert event.payload.link == f"https://solscan.io/tx/{tx['signature']}"


@pytest.mark.parametrize(
    "name",
    [
        "get_transaction_json_parsed_encoding.json",
        "get_transaction_json_encoding.json",
        "get_block_json_parsed_encoding.json",
        "get_block_json_encoding.json",
    ],
)
def test_solders_envelopes_parse(name: str) -> None:
    result = load("solders", name)["result"]
    txs = result.get("transactions", [result])
    assert txs
    for tx in txs:
        assert account_keys(tx)
        parsed = ParsedTx(tx)
        for rules in RULES.values():
            assert extract_payouts(parsed, rules) == []


@pytest.mark.parametrize("version", ["legacy", 0, 1])
def test_hivemapper_mint_to_payout(version: int | str) -> None:
    people = [(solana_tx.wallet(f"contributor{i}"), (i + 1) * 10**9) for i in range(30)]
    tx = solana_tx.hivemapper_mint_payout("hm", 300, 1_750_000_000, people, version=version)
    if version != "legacy":
        assert any(
            k["source"] == "lookupTable" for k in tx["transaction"]["message"]["accountKeys"]
        )
    [payout] = extract_payouts(tx, RULES["hivemapper"])
    assert payout.kind == "mint" and payout.token == "HONEY"
    assert payout.total == sum(u for _, u in people) == payout.instruction_units
    assert len(payout.recipients) == 30
    assert payout.recipients[0] == people[-1]
    [event] = make_extractor(DepinConfig(top_recipients=5))(tx, 2.0)
    assert isinstance(event.payload, DepinPayout)
    assert event.payload.recipient_count == 30 and len(event.payload.recipients) == 5
    assert event.payload.amount.units == payout.total and event.payload.amount.decimals == 9


def test_new_token_accounts_count_from_zero() -> None:
    tx = solana_tx.hivemapper_mint_payout(
        "new", 1, None, [(solana_tx.wallet("x"), 7)], existing=False
    )
    [payout] = extract_payouts(tx, RULES["hivemapper"])
    assert payout.total == 7


@pytest.mark.parametrize("version", [0, 1])
def test_nosana_job_payout_excludes_vault_and_crank_fee(version: int) -> None:
    node = solana_tx.wallet("node")
    tx = solana_tx.nosana_job_payout("job", 5, 1_750_000_000, node, 25_500_000, version=version)
    [payout] = extract_payouts(tx, RULES["nosana"])
    assert payout.kind == "transfer"
    assert payout.recipients == [(node, 25_500_000)]
    assert payout.instruction_units == 25_500_000


def test_failed_transaction_pays_nothing() -> None:
    tx = solana_tx.nosana_job_payout("job-failed", 5, None, solana_tx.wallet("node"), 1)
    tx["meta"]["err"] = {"InstructionError": [1, {"Custom": 6001}]}
    assert extract_payouts(tx, RULES["nosana"]) == []


def test_unrelated_program_is_ignored() -> None:
    tx = solana_tx.helium_distribution("h", 1, None, solana_tx.wallet("hotspot"), 10)
    assert extract_payouts(tx, RULES["helium"])[0].total == 10
    assert extract_payouts(tx, RULES["hivemapper"]) == []
    assert extract_payouts(tx, RULES["nosana"]) == []


def test_wallet_network_counts_only_outflows_of_listed_wallets() -> None:
    distributor = solana_tx.wallet("render-distributor")
    rules = NetworkRules.from_config(
        "render",
        NetworkConfig(
            wallets=[distributor],
            reward_mints=[RewardMint(mint=networks.RENDER, token="RENDER", decimals=8)],
        ),
    )
    b = solana_tx.TxBuilder(solana_tx.signature("r1"), 9, None)
    b.account(distributor, signer=True)
    src = solana_tx.token_account(distributor, networks.RENDER)
    dst = solana_tx.token_account(solana_tx.wallet("gpu"), networks.RENDER)
    b.balance(src, networks.RENDER, distributor, 8, 1000, 400)
    b.balance(dst, networks.RENDER, solana_tx.wallet("gpu"), 8, 0, 600)
    b.top(
        TOKEN_PROGRAM,
        solana_tx.spl(
            "transferChecked",
            source=src,
            destination=dst,
            authority=distributor,
            mint=networks.RENDER,
            amount=600,
            decimals=8,
        ),
    )
    [payout] = extract_payouts(b.build(), rules)
    assert payout.recipients == [(solana_tx.wallet("gpu"), 600)]
    inflow = solana_tx.TxBuilder(solana_tx.signature("r2"), 9, None)
    inflow.balance(src, networks.RENDER, distributor, 8, 400, 1000)
    inflow.balance(dst, networks.RENDER, solana_tx.wallet("gpu"), 8, 600, 0)
    assert extract_payouts(inflow.build(), rules) == []


def test_malformed_transaction_raises() -> None:
    tx = solana_tx.hivemapper_mint_payout("bad", 1, None, [(solana_tx.wallet("x"), 7)])
    tx["meta"]["postTokenBalances"][0]["uiTokenAmount"] = {"amount": "lots"}
    with pytest.raises(MalformedTransaction):
        extract_payouts(tx, RULES["hivemapper"])
    with pytest.raises(MalformedTransaction):
        ParsedTx({"transaction": {}, "meta": None})
    # The daemon counts and skips any collector's MalformedPayload.
    with pytest.raises(MalformedPayload):
        ParsedTx({"transaction": {}, "meta": None})


def test_config_merges_user_networks_with_defaults() -> None:
    cfg = DepinConfig.model_validate(
        {"networks": {"render": {"wallets": ["W1"]}, "hivemapper": {"enabled": False}}}
    )
    assert cfg.networks["render"].wallets == ["W1"]
    assert cfg.networks["render"].reward_mints[0].mint == networks.RENDER
    assert "hivemapper" not in cfg.active_networks()
    assert set(cfg.active_networks()) == {"helium", "nosana", "render"}
    assert "ionet" not in DepinConfig().active_networks()
