"""Tron contract events → stablecoin mint/burn events.

In: `TronEvent`s of one token's stream. Out: at most one `Event` per API event:
``stablecoin.mint`` / ``stablecoin.burn`` on chain ``tron``, id
``tron:<mint|burn>:<transaction id>:<event index>`` (the event name stands in for an API
that sends no index), so re-reading a page after a restart or a dropped cursor republishes
the same ids and the bus drops them. A usdt-style token's id names the transaction only
(``tron:<mint|burn>:<transaction id>``): Tether issues or redeems once per transaction,
and an ``Issue`` and its Transfer twin, read from two streams, must count once.

Which events count follows the token's style (`config.STYLE_EVENTS`): Tether's ``Issue``
(tokens appear at the owner), ``Redeem`` and ``DestroyedBlackFunds``; or a
``Transfer`` from / to the zero address. Event parameters are read by name, else by
position (the API sends both). Amounts are exact integers (decimal or ``0x`` strings).
"""

from __future__ import annotations

from typing import Any

from convmon.collectors.stablecoins.tron.address import (
    ZERO_HEX,
    AddressError,
    raw_to_base58,
    to_base58,
    to_raw,
)
from convmon.collectors.stablecoins.tron.client import TronEvent
from convmon.collectors.stablecoins.tron.config import TronToken
from convmon.collectors.stablecoins.tron.errors import MalformedEvent
from convmon.monitor.events import Amount, Event, StablecoinBurn, StablecoinMint

TRONSCAN_TX = "https://tronscan.org/#/transaction/"


def _param(result: dict[str, Any], name: str, position: int) -> Any:
    if name in result:
        return result[name]
    if str(position) in result:
        return result[str(position)]
    raise MalformedEvent(f"missing parameter {name!r}")


def _units(value: Any) -> int:
    if isinstance(value, bool):
        raise MalformedEvent("amount is a boolean")
    if isinstance(value, int):
        units = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            units = int(text, 16) if text[:2].lower() == "0x" else int(text, 10)
        except ValueError:
            raise MalformedEvent(f"amount {text[:40]!r} is not an integer") from None
    else:
        raise MalformedEvent(f"amount has type {type(value).__name__}")
    if units < 0 or units >> 256:
        raise MalformedEvent("amount outside uint256")
    return units


_ZERO = bytes.fromhex(ZERO_HEX)


def _address(value: Any) -> str:
    try:
        return to_base58(value)
    except AddressError as exc:
        raise MalformedEvent(str(exc)) from None


def _raw_address(value: Any) -> bytes:
    try:
        return to_raw(value)
    except AddressError as exc:
        raise MalformedEvent(str(exc)) from None


def classify(ev: TronEvent) -> tuple[str, int, str | None] | None:
    """(``mint``|``burn``, units, counterparty) for a counted event, None for one that
    counts for nothing (a plain transfer). Raises `MalformedEvent`."""
    result = ev.result
    name = ev.event_name
    if name == "Issue":
        return "mint", _units(_param(result, "amount", 0)), None
    if name == "Redeem":
        return "burn", _units(_param(result, "amount", 0)), None
    if name == "DestroyedBlackFunds":
        who = _address(_param(result, "_blackListedUser", 0))
        return "burn", _units(_param(result, "_balance", 1)), who
    if name == "Transfer":
        sender = _raw_address(_param(result, "from", 0))
        receiver = _raw_address(_param(result, "to", 1))
        units = _units(_param(result, "value", 2))
        if sender == _ZERO and receiver != _ZERO:
            return "mint", units, raw_to_base58(receiver)
        if receiver == _ZERO and sender != _ZERO:
            return "burn", units, raw_to_base58(sender)
        return None
    return None


def flow_event(
    ev: TronEvent, symbol: str, token: TronToken, *, source: str, observed_at: float,
) -> Event | None:
    """The event for ``ev`` of ``symbol``'s stream, or None. Raises `MalformedEvent`."""
    if ev.event_name not in token.event_names:
        return None
    found = classify(ev)
    if found is None:
        return None
    kind, units, counterparty = found
    tx = ev.transaction_id.lower()
    if len(tx) != 64 or any(c not in "0123456789abcdef" for c in tx):
        raise MalformedEvent(f"transaction id {tx[:70]!r} is not 32 bytes of hex")
    if token.style == "usdt":
        event_id = f"tron:{kind}:{tx}"
    else:
        where = str(ev.event_index) if ev.event_index is not None else ev.event_name
        event_id = f"tron:{kind}:{tx}:{where}"
    cls = StablecoinMint if kind == "mint" else StablecoinBurn
    return Event(
        id=event_id,
        chain="tron",
        source=source,
        observed_at=observed_at,
        occurred_at=ev.block_timestamp / 1000.0,
        position=ev.block_number,
        payload=cls(
            token=symbol,
            chain="tron",
            track=token.track,
            contract=token.address,
            amount=Amount(units, token.decimals),
            counterparty=counterparty,
            tx=tx,
            log_index=ev.event_index,
            method=ev.event_name,
            link=TRONSCAN_TX + tx,
        ),
    )
