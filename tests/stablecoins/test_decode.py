"""Decoding: the real mainnet USDC/USDT logs (ethereum-etl, blocks 17173049-17173050) and
each token's mint/burn semantics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from convmon.collectors.errors import MalformedPayload
from convmon.collectors.stablecoins.evm import tokens
from convmon.collectors.stablecoins.evm.decode import (
    RawLog,
    decode_log,
    decode_transfer,
    flow_event,
)
from convmon.collectors.stablecoins.evm.errors import MalformedLog
from convmon.collectors.stablecoins.evm.rpc import is_range_refusal
from convmon.collectors.stablecoins.evm.tokens import DEFAULT_TOKENS, TokenRegistry
from convmon.monitor.events import StablecoinBurn, StablecoinMint, decode_event, encode_event
from convmon.sim.anvil import Record, burn_records, mint_records
from tests.shared_data import require_shared_data

ETL = ("ethereum", "ethereum-etl-blocks-17173049-17173050")
TOKENS = {tok.symbol: tok for tok in DEFAULT_TOKENS}
ALICE = "0x" + "a1" * 20
MINTER = "0x" + "5e" * 20


def address_topic(address: str) -> str:
    """An indexed address as a log topic: left-padded to 32 bytes."""
    return "0x" + "00" * 12 + address[2:].lower()


def etl_log(row: dict[str, Any]) -> RawLog:
    return RawLog.from_rpc({
        "address": row["address"], "topics": row["topics"], "data": row["data"],
        "blockNumber": row["block_number"], "blockHash": row["block_hash"],
        "transactionHash": row["transaction_hash"], "logIndex": row["log_index"],
        "blockTimestamp": row["block_timestamp"],
    })


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_real_usdc_usdt_logs_are_transfers_and_approvals_not_mints() -> None:
    folder = require_shared_data(*ETL)
    rows = read_jsonl(folder / "usdc_usdt_logs_subset.jsonl")
    registry = TokenRegistry(DEFAULT_TOKENS)
    assert len(rows) == 51
    seen = {"USDC": 0, "USDT": 0}
    for row in rows:
        log = etl_log(row)
        token = registry.get(log.address)
        assert token is not None and token.symbol in seen
        seen[token.symbol] += 1
        assert decode_log(log, token) is None
    assert seen["USDC"] > 0 and seen["USDT"] > 0


def test_transfer_decoding_agrees_with_ethereum_etl_token_transfers() -> None:
    folder = require_shared_data(*ETL)
    expected = {
        (r["transaction_hash"], r["log_index"]): (r["from_address"], r["to_address"], r["value"])
        for r in read_jsonl(folder / "expected_token_transfers.json")
    }
    checked = 0
    for row in read_jsonl(folder / "usdc_usdt_logs_subset.jsonl"):
        log = etl_log(row)
        if log.topics[0] != tokens.TRANSFER:
            with pytest.raises(MalformedLog):
                decode_transfer(log)
            continue
        assert decode_transfer(log) == expected[(log.tx_hash, log.log_index)]
        checked += 1
    assert checked >= 40


def test_only_watched_contracts_match_among_all_logs_of_the_blocks() -> None:
    folder = require_shared_data(*ETL)
    registry = TokenRegistry(DEFAULT_TOKENS)
    rows = read_jsonl(folder / "expected_logs.json")
    matched = [r for r in rows if registry.get(r["address"]) is not None]
    subset = read_jsonl(folder / "usdc_usdt_logs_subset.jsonl")
    assert len(rows) == 681
    assert {(r["transaction_hash"], r["log_index"]) for r in matched} == {
        (r["transaction_hash"], r["log_index"]) for r in subset}


def as_logs(records: Sequence[Record], address: str) -> list[RawLog]:
    return [
        RawLog(address=address, topics=tuple(topics), data="0x" + data.hex(),
               block_number=10, block_hash="0x" + "bb" * 32, tx_hash="0x" + "cc" * 32,
               log_index=i)
        for i, (topics, data) in enumerate(records)
    ]


@pytest.mark.parametrize("symbol", sorted(TOKENS))
def test_each_mint_and_burn_counts_once_per_tx(symbol: str) -> None:
    token = TOKENS[symbol]
    units = 250_000_000 * 10**token.decimals
    mints = [f for f in (decode_log(x, token) for x in
                         as_logs(mint_records(token, ALICE, units, MINTER), token.address)) if f]
    burns = [f for f in (decode_log(x, token) for x in
                         as_logs(burn_records(token, ALICE, 7), token.address)) if f]
    assert [(f.kind, f.units) for f in mints] == [("mint", units)]
    assert [(f.kind, f.units) for f in burns] == [("burn", 7)]
    expected_method = {"usdc": "Mint", "usdt": "Issue", "pyusd": "SupplyIncreased",
                       "transfer": "Transfer"}[token.style]
    assert mints[0].method == expected_method
    assert mints[0].counterparty == (None if token.style == "usdt" else ALICE)


def test_usdt_issue_has_no_transfer_and_destroyed_black_funds_names_the_holder() -> None:
    usdt = TOKENS["USDT"]
    records = mint_records(usdt, ALICE, 5, MINTER)
    assert [topics[0] for topics, _ in records] == [tokens.USDT_ISSUE]
    (flow,) = [decode_log(x, usdt) for x in
               as_logs(burn_records(usdt, ALICE, 9, blacklisted=True), usdt.address)]
    assert flow is not None
    assert (flow.kind, flow.units, flow.counterparty, flow.method) == (
        "burn", 9, ALICE, "DestroyedBlackFunds")


def test_usd1_mint_topic_equal_to_usdc_mint_is_not_counted_for_usd1() -> None:
    usd1 = TOKENS["USD1"]
    topics = [tokens.USDC_MINT, address_topic(MINTER), address_topic(ALICE)]
    log = as_logs([(topics, (5).to_bytes(32))], usd1.address)[0]
    assert decode_log(log, usd1) is None
    assert decode_log(log, TOKENS["USDC"]) is not None


def test_malformed_logs_raise() -> None:
    usdc = TOKENS["USDC"]
    topics = [tokens.USDC_MINT, address_topic(MINTER), address_topic(ALICE)]
    short = as_logs([(topics, b"\x01" * 5)], usdc.address)[0]
    with pytest.raises(MalformedLog):
        decode_log(short, usdc)
    missing_topic = as_logs([([tokens.USDC_MINT, address_topic(MINTER)], (5).to_bytes(32))],
                            usdc.address)[0]
    with pytest.raises(MalformedLog):
        decode_log(missing_topic, usdc)
    bad_address = as_logs([([tokens.USDC_BURN, "0x" + "ff" * 32], (5).to_bytes(32))],
                          usdc.address)[0]
    with pytest.raises(MalformedLog):
        decode_log(bad_address, usdc)
    with pytest.raises(MalformedLog):
        RawLog.from_rpc({"address": usdc.address, "topics": []})
    with pytest.raises(MalformedPayload):  # counted and skipped like any collector's
        RawLog.from_rpc({"address": usdc.address, "topics": []})


def test_event_shape_and_deterministic_id() -> None:
    usdt = TOKENS["USDT"]
    (log,) = as_logs(mint_records(usdt, ALICE, 250_000_000 * 10**6, MINTER), usdt.address)
    flow = decode_log(log, usdt)
    assert flow is not None
    event = flow_event(flow, block_time=1_700_000_000, observed_at=1_700_000_005)
    assert event.id == f"eth:mint:{log.tx_hash}:0"
    assert event.position == 10 and event.occurred_at == 1_700_000_000
    payload = event.payload
    assert isinstance(payload, StablecoinMint) and not isinstance(payload, StablecoinBurn)
    assert (payload.token, payload.chain, payload.track, payload.method) == (
        "USDT", "ethereum", "offshore", "Issue")
    assert str(payload.amount) == "250000000.000000"
    assert payload.link == f"https://etherscan.io/tx/{log.tx_hash}"
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize("message", [
    "query returned more than 10000 results",
    "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block "
    "range and no limit on the response size",
    "eth_getLogs is limited to a 10,000 range",
    "block range is too wide",
    "exceed maximum block range: 50000",
    "Invalid eth_getLogs request. 'fromBlock'-'toBlock' range too large. Max range: 800",
    "query exceeds max results 20000, retry with the range 100-200",
])
def test_provider_range_refusals_are_recognised(message: str) -> None:
    assert is_range_refusal(message)


@pytest.mark.parametrize("message", ["execution reverted", "invalid argument 0: hex string"])
def test_other_errors_are_not_range_refusals(message: str) -> None:
    assert not is_range_refusal(message)
