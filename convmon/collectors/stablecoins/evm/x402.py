"""x402 machine payments on EVM chains: detection from a settled transaction's receipt.

In: the receipt of a transaction that carries an ``AuthorizationUsed`` log of a watched
EIP-3009 token (the collector subscribes to that event; `receipt_payments` fetches the
receipt once the block is confirmed, in the collector's publish of that block), and the
chain's facilitator list. Out: `PaymentX402` events.

x402 settles through a facilitator that calls the token's ``transferWithAuthorization``
(or ``receiveWithAuthorization``) and pays the gas: the token emits
``AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce)`` and then
``Transfer(authorizer, payee, value)`` in the same transaction, and the facilitator is
``tx.from``. One transaction may settle several authorizations (a batch): each
``AuthorizationUsed`` is paired with the next ``Transfer`` of the same token whose sender is
its authorizer. A sender that is not a listed facilitator still makes a payment of this
shape; it is counted under facilitator ``unknown``. The event id names the
``AuthorizationUsed`` log (``x402:<chain>:<tx>:<log index>``), so a redelivered receipt or a
second replica publishes nothing new.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from convmon.collectors.payments.facilitators import UNKNOWN, facilitators_for
from convmon.collectors.stablecoins.evm import tokens
from convmon.collectors.stablecoins.evm.decode import RawLog, decode_transfer, hex_str
from convmon.collectors.stablecoins.evm.errors import MalformedLog
from convmon.collectors.stablecoins.evm.rpc import EthRpc
from convmon.monitor.config import Model
from convmon.monitor.events import Amount, Event, PaymentX402
from convmon.monitor.health import CollectorHealth

AUTHORIZATION_USED = "0x98de503528ee59b575ef0c0a2576a82497bfc029a5685b209e9ec333479b10a5"
"""``AuthorizationUsed(address,bytes32)`` (EIP-3009)."""


class X402Config(Model):
    """x402 detection on one EVM chain."""

    enabled: bool = True
    tokens: list[str] = Field(default_factory=lambda: ["USDC"])
    """Symbols of the chain's EIP-3009 tokens whose authorizations are watched."""
    facilitators: dict[str, list[str]] = Field(default_factory=dict)
    """Facilitator name -> addresses it settles from, added to the built-in list."""

    @field_validator("facilitators")
    @classmethod
    def _addresses(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for name, addresses in value.items():
            if name == UNKNOWN:
                raise ValueError(f"{UNKNOWN!r} is reserved for unlisted senders")
            for address in addresses:
                if len(address) != 42 or not address.startswith("0x"):
                    raise ValueError(f"{name}: {address!r} is not an EVM address")
                int(address[2:], 16)
        return value


@dataclass(frozen=True, slots=True)
class Settlement:
    """One x402 payment found in a receipt."""

    token: tokens.TokenConfig
    payer: str
    payee: str
    units: int
    sender: str
    facilitator: str
    authorization: RawLog
    transfer: RawLog


class X402Detector:
    """The chain's watched tokens and facilitators, and the pairing of authorizations with
    transfers."""

    def __init__(self, chain: str, cfg: X402Config, registry: tokens.TokenRegistry) -> None:
        self.chain = chain
        self.enabled = cfg.enabled
        watched = set(cfg.tokens)
        self.tokens = {t.address: t for t in registry if t.symbol in watched} if cfg.enabled \
            else {}
        self.facilitators = facilitators_for(chain, cfg.facilitators)

    def log_filters(self) -> list[dict[str, object]]:
        if not self.tokens:
            return []
        return [{"address": sorted(self.tokens), "topics": [[AUTHORIZATION_USED]]}]

    def is_authorization(self, log: RawLog) -> bool:
        return (log.address in self.tokens and bool(log.topics)
                and log.topics[0] == AUTHORIZATION_USED)

    def settlements(self, receipt: Mapping[str, Any]) -> list[Settlement]:
        """The payments a receipt settles. Raises `MalformedLog` when the receipt lacks
        its sender or logs; a malformed log inside it is skipped."""
        try:
            sender = hex_str(receipt["from"]).lower()
            raw_logs: Sequence[Any] = receipt["logs"]
            if not isinstance(raw_logs, list):
                raise TypeError("logs is not a list")
        except (KeyError, TypeError) as exc:
            raise MalformedLog(f"not a receipt: {exc!r}") from None
        logs = sorted(_parse(raw_logs), key=lambda log: log.log_index)
        facilitator = self.facilitators.get(sender, UNKNOWN)
        used: set[int] = set()
        found: list[Settlement] = []
        for i, auth in enumerate(logs):
            if not self.is_authorization(auth) or len(auth.topics) != 3:
                continue
            authorizer = "0x" + auth.topics[1][-40:]
            for transfer in logs[i + 1:]:
                if transfer.log_index in used or transfer.address != auth.address:
                    continue
                try:
                    payer, payee, units = decode_transfer(transfer)
                except MalformedLog:
                    continue
                if payer != authorizer:
                    continue
                used.add(transfer.log_index)
                found.append(Settlement(self.tokens[auth.address], payer, payee, units,
                                        sender, facilitator, auth, transfer))
                break
        return found


def _parse(raw_logs: Iterable[Any]) -> Iterable[RawLog]:
    for obj in raw_logs:
        try:
            yield RawLog.from_rpc(obj)
        except MalformedLog:
            continue


def payment_event(
    settlement: Settlement, *, chain: str, source: str, explorer_url: str,
    block_time: float, observed_at: float,
) -> Event:
    auth, transfer = settlement.authorization, settlement.transfer
    token = settlement.token
    return Event(
        id=f"x402:{chain}:{auth.tx_hash}:{auth.log_index}",
        chain=chain,
        source=source,
        observed_at=observed_at,
        occurred_at=block_time,
        position=auth.block_number,
        payload=PaymentX402(
            chain=chain, token=token.symbol, contract=token.address,
            payer=settlement.payer, payee=settlement.payee,
            amount=Amount(settlement.units, token.decimals),
            facilitator=settlement.facilitator, sender=settlement.sender,
            tx=auth.tx_hash, log_index=transfer.log_index, track=token.track,
            link=f"{explorer_url.rstrip('/')}/tx/{auth.tx_hash}",
        ),
    )


async def receipt_payments(
    rpc: EthRpc, detector: X402Detector, logs: Iterable[RawLog], times: Mapping[int, int],
    health: CollectorHealth, *, source: str, explorer_url: str, observed_at: float,
) -> list[Event]:
    """``payment.x402`` events of the transactions carrying a confirmed
    ``AuthorizationUsed`` among ``logs``: one ``eth_getTransactionReceipt`` per transaction.
    A receipt that is missing, of another block or of the wrong shape is counted as
    malformed and skipped; a failing endpoint raises (the caller retries the block)."""
    first_log: dict[str, RawLog] = {}
    for entry in logs:
        if detector.is_authorization(entry):
            first_log.setdefault(entry.tx_hash, entry)
    events: list[Event] = []
    for tx, first in first_log.items():
        receipt = await rpc.call("eth_getTransactionReceipt", [tx])
        if not isinstance(receipt, dict):
            health.malformed("receipt", f"no receipt for {tx}")
            continue
        if str(receipt.get("blockHash", "")).lower() != first.block_hash:
            # The block was replaced after its logs were read; the settle of the
            # replacement sees the transaction where it landed.
            health.malformed("receipt", f"receipt of {tx} is in another block")
            continue
        try:
            found = detector.settlements(receipt)
        except MalformedLog as exc:
            health.malformed("receipt", f"{tx}: {exc}")
            continue
        events.extend(
            payment_event(settlement, chain=detector.chain, source=source,
                          explorer_url=explorer_url, block_time=times[first.block_number],
                          observed_at=observed_at)
            for settlement in found)
    return events
