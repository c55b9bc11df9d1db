"""Ethereum logs → stablecoin mint/burn events.

In: logs as the JSON-RPC returns them (``eth_getLogs`` results or ``eth_subscribe`` log
notifications, either raw hex strings or web3's formatted values). Out: `Flow`s (one per
counted mint or burn) and the `Event`s built from them.

Which log counts is decided per token style (`tokens`): a token's dedicated event when it
has one (its Transfer twin is never counted), else the Transfer from/to 0x0. So every mint
or burn has exactly one canonical log and the event id ``eth:<mint|burn>:<tx>:<log index>``
names that log; republishing it after a restart or from a second replica is a no-op.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from convmon.collectors.stablecoins.evm import tokens
from convmon.collectors.stablecoins.evm.errors import MalformedLog
from convmon.monitor.events import Amount, Event, StablecoinBurn, StablecoinMint

__all__ = ["SOURCE", "Flow", "RawLog", "decode_log", "decode_transfer",
           "flow_event", "hex_str", "to_int"]

SOURCE = "stablecoins/ethereum"
"""The Ethereum chain's source; other chains' are ``stablecoins/<chain>``."""
ETHERSCAN_TX = "https://etherscan.io/tx/"


@dataclass(frozen=True, slots=True)
class RawLog:
    address: str
    topics: tuple[str, ...]
    data: str
    block_number: int
    block_hash: str
    tx_hash: str
    log_index: int
    removed: bool = False
    block_timestamp: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.block_hash, self.log_index)

    @classmethod
    def from_rpc(cls, obj: Any) -> RawLog:
        """From a JSON-RPC log object (hex strings) or web3's formatted log."""
        try:
            ts = obj.get("blockTimestamp")
            return cls(
                address=hex_str(obj["address"]).lower(),
                topics=tuple(hex_str(x).lower() for x in obj["topics"]),
                data=hex_str(obj["data"]).lower(),
                block_number=to_int(obj["blockNumber"]),
                block_hash=hex_str(obj["blockHash"]).lower(),
                tx_hash=hex_str(obj["transactionHash"]).lower(),
                log_index=to_int(obj["logIndex"]),
                removed=bool(obj.get("removed", False)),
                block_timestamp=to_int(ts) if ts is not None else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedLog(f"not a log object: {exc!r}") from None


def hex_str(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, str):
        return value if value.startswith("0x") else "0x" + value
    raise TypeError(f"expected hex, got {type(value).__name__}")


def to_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise TypeError(f"expected an integer, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Flow:
    """One counted mint or burn."""

    kind: Literal["mint", "burn"]
    token: tokens.TokenConfig
    units: int
    counterparty: str | None
    method: str
    log: RawLog


def _words(data: str, count: int) -> list[int]:
    body = data[2:]
    if len(body) != 64 * count:
        raise MalformedLog(f"data has {len(body) // 2} bytes, expected {32 * count}")
    try:
        return [int(body[i * 64 : (i + 1) * 64], 16) for i in range(count)]
    except ValueError:
        raise MalformedLog("data is not hex") from None


def _address_topic(topic: str) -> str:
    if len(topic) != 66 or topic[2:26] != "0" * 24:
        raise MalformedLog(f"topic {topic[:20]}… is not an address")
    return "0x" + topic[26:]


def _address_word(word: int) -> str:
    if word >> 160:
        raise MalformedLog("data word is not an address")
    return "0x" + format(word, "040x")


def _expect_topics(log: RawLog, n: int) -> None:
    if len(log.topics) != n:
        raise MalformedLog(f"{len(log.topics)} topics, expected {n}")


def decode_log(log: RawLog, token: tokens.TokenConfig) -> Flow | None:
    """The mint or burn this log counts for, None when it counts for nothing (a plain
    transfer, an approval, a Transfer twin of a dedicated event). Raises `MalformedLog`."""
    if not log.topics:
        return None
    topic0 = log.topics[0]
    style = token.style
    if style == "usdc":
        if topic0 == tokens.USDC_MINT:
            _expect_topics(log, 3)
            return Flow("mint", token, _words(log.data, 1)[0], _address_topic(log.topics[2]),
                        "Mint", log)
        if topic0 == tokens.USDC_BURN:
            _expect_topics(log, 2)
            return Flow("burn", token, _words(log.data, 1)[0], _address_topic(log.topics[1]),
                        "Burn", log)
        return None
    if style == "usdt":
        if topic0 == tokens.USDT_ISSUE:
            _expect_topics(log, 1)
            return Flow("mint", token, _words(log.data, 1)[0], None, "Issue", log)
        if topic0 == tokens.USDT_REDEEM:
            _expect_topics(log, 1)
            return Flow("burn", token, _words(log.data, 1)[0], None, "Redeem", log)
        if topic0 == tokens.USDT_DESTROYED_BLACK_FUNDS:
            _expect_topics(log, 1)
            who, units = _words(log.data, 2)
            return Flow("burn", token, units, _address_word(who), "DestroyedBlackFunds", log)
        return None
    if style == "pyusd":
        if topic0 == tokens.PYUSD_SUPPLY_INCREASED:
            _expect_topics(log, 2)
            return Flow("mint", token, _words(log.data, 1)[0], _address_topic(log.topics[1]),
                        "SupplyIncreased", log)
        if topic0 == tokens.PYUSD_SUPPLY_DECREASED:
            _expect_topics(log, 2)
            return Flow("burn", token, _words(log.data, 1)[0], _address_topic(log.topics[1]),
                        "SupplyDecreased", log)
        return None
    if topic0 != tokens.TRANSFER:
        return None
    _expect_topics(log, 3)
    sender, receiver = _address_topic(log.topics[1]), _address_topic(log.topics[2])
    zero = "0x" + "0" * 40
    if sender == zero and receiver != zero:
        return Flow("mint", token, _words(log.data, 1)[0], receiver, "Transfer", log)
    if receiver == zero and sender != zero:
        return Flow("burn", token, _words(log.data, 1)[0], sender, "Transfer", log)
    _words(log.data, 1)
    return None


def decode_transfer(log: RawLog) -> tuple[str, str, int]:
    """(from, to, value) of an ERC-20 Transfer log. Raises `MalformedLog`."""
    if not log.topics or log.topics[0] != tokens.TRANSFER:
        raise MalformedLog("not a Transfer")
    _expect_topics(log, 3)
    return (_address_topic(log.topics[1]), _address_topic(log.topics[2]),
            _words(log.data, 1)[0])


def flow_event(
    flow: Flow, *, block_time: float, observed_at: float, chain: str = "ethereum",
    source: str = SOURCE, id_prefix: str = "eth", tx_link: str = ETHERSCAN_TX,
) -> Event:
    """The event of a flow on ``chain`` (id ``<id_prefix>:<kind>:<tx>:<log index>``)."""
    log = flow.log
    cls = StablecoinMint if flow.kind == "mint" else StablecoinBurn
    payload = cls(
        token=flow.token.symbol,
        chain=chain,
        track=flow.token.track,
        contract=flow.token.address,
        amount=Amount(flow.units, flow.token.decimals),
        counterparty=flow.counterparty,
        tx=log.tx_hash,
        log_index=log.log_index,
        method=flow.method,
        link=tx_link + log.tx_hash,
    )
    return Event(
        id=f"{id_prefix}:{flow.kind}:{log.tx_hash}:{log.log_index}",
        chain=chain,
        source=source,
        observed_at=observed_at,
        occurred_at=block_time,
        position=log.block_number,
        payload=payload,
    )
