"""Tron events → mint/burn events: styles, parameter forms, exact amounts, ids, bad input."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from convmon.collectors.stablecoins.tron.client import TronEvent, parse_page
from convmon.collectors.stablecoins.tron.config import TronStablecoinsConfig, TronToken
from convmon.collectors.stablecoins.tron.decode import flow_event
from convmon.collectors.stablecoins.tron.errors import MalformedEvent, MalformedPage, TronApiError
from convmon.monitor.events import StablecoinBurn, StablecoinMint, decode_event, encode_event

USDT = TronStablecoinsConfig().tokens["USDT"]
OTHER = TronToken(address="41" + "11" * 20, decimals=18, track="synthetic", style="transfer")
HOLDER = "41" + "22" * 20
TX = "ab" * 32


def event(name: str, result: dict[str, Any], **kw: Any) -> TronEvent:
    body = {"transaction_id": TX, "block_number": 70_000_001, "block_timestamp": 1_760_000_000_000,
            "event_name": name, "result": result, "event_index": 0, **kw}
    return msgspec.convert(body, TronEvent)


def flow(ev: TronEvent, token: TronToken = USDT, symbol: str = "USDT") -> Any:
    return flow_event(ev, symbol, token, source="stablecoins/tron", observed_at=1.0)


def test_usdt_is_the_real_contract_offshore_six_decimals() -> None:
    assert USDT.address == "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
    assert (USDT.decimals, USDT.track, USDT.style) == (6, "offshore", "usdt")


def test_issue_is_a_mint_with_an_exact_amount() -> None:
    big = 10**30 + 7  # beyond a float's precision
    out = flow(event("Issue", {"0": str(big), "amount": str(big)}))
    assert isinstance(out.payload, StablecoinMint)
    assert out.payload.amount.units == big and out.payload.amount.decimals == 6
    assert out.id == f"tron:mint:{TX}"  # usdt style: one mint per transaction
    assert (out.chain, out.payload.chain, out.position) == ("tron", "tron", 70_000_001)
    assert out.occurred_at == 1_760_000_000.0
    assert decode_event(encode_event(out)) == out


def test_redeem_and_destroyed_black_funds_are_burns() -> None:
    out = flow(event("Redeem", {"0": "5000000"}))
    assert isinstance(out.payload, StablecoinBurn) and out.payload.amount.units == 5_000_000
    black = flow(event("DestroyedBlackFunds", {"_blackListedUser": "0x" + "22" * 20,
                                               "_balance": "0x10"}, event_index=3))
    assert isinstance(black.payload, StablecoinBurn)
    assert black.payload.amount.units == 16
    assert black.payload.counterparty is not None and black.payload.counterparty.startswith("T")
    assert black.id == f"tron:burn:{TX}"


def test_transfer_style_counts_zero_address_transfers_only() -> None:
    zero = "0x" + "00" * 20
    holder = "0x" + HOLDER[2:]
    mint = flow(event("Transfer", {"from": zero, "to": holder, "value": "42"}), OTHER, "OTH")
    burn = flow(event("Transfer", {"0": holder, "1": zero, "2": "41"}), OTHER, "OTH")
    plain = flow(event("Transfer", {"from": holder, "to": holder, "value": "1"}), OTHER, "OTH")
    assert isinstance(mint.payload, StablecoinMint) and mint.payload.amount.units == 42
    assert isinstance(burn.payload, StablecoinBurn) and burn.payload.amount.units == 41
    assert plain is None
    assert mint.payload.counterparty == burn.payload.counterparty
    assert mint.id == f"tron:mint:{TX}:0"  # transfer style: one per event
    # A usdt-style token counts Transfers only when told to, under the transaction's id,
    # the one its Issue twin has.
    assert flow(event("Transfer", {"from": zero, "to": holder, "value": "42"})) is None
    reading = USDT.model_copy(update={"read_transfers": True})
    assert reading.event_names[-1] == "Transfer"
    twin = flow(event("Transfer", {"from": zero, "to": holder, "value": "42"}), reading)
    assert twin.id == flow(event("Issue", {"amount": "42"}), reading).id


@pytest.mark.parametrize("result", [
    {"amount": "1.5"}, {"amount": "-3"}, {"amount": True}, {"amount": 1.0}, {"other": "1"},
    {"amount": str(2**256)},
])
def test_bad_amounts_are_malformed(result: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        flow(event("Issue", result))


def test_bad_address_and_transaction_id_are_malformed() -> None:
    with pytest.raises(MalformedEvent):
        flow(event("Transfer", {"from": "0x1234", "to": "0x" + "00" * 20, "value": "1"}),
             OTHER, "OTH")
    with pytest.raises(MalformedEvent):
        flow(event("Issue", {"amount": "1"}, transaction_id="zz"))


def test_page_parsing_isolates_bad_events_and_trusts_only_success() -> None:
    good = {"transaction_id": TX, "block_number": 1, "block_timestamp": 2,
            "event_name": "Issue", "result": {"amount": "1"}}
    body = msgspec.json.encode({"success": True, "data": [good, {"transaction_id": 3}, good],
                                "meta": {"at": 1, "page_size": 3, "fingerprint": "abc"}})
    page = parse_page(body)
    assert len(page.events) == 2 and len(page.malformed) == 1
    assert page.size == 3 and page.fingerprint == "abc"
    with pytest.raises(TronApiError):
        parse_page(b'{"success": false, "error": "busy", "data": []}')
    for garbage in (b"<html>", b'{"data": []}', b'{"success": true, "data": 5}', b""):
        with pytest.raises(MalformedPage):
            parse_page(garbage)
