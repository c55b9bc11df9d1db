"""Chain heads as the collector keeps them: number, hash and parent hash of each
``newHeads`` notification, so settling can follow the parent hashes down from a confirmed
tip and tell which pending logs belong to the canonical chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from convmon.collectors.stablecoins.evm.decode import hex_str, to_int
from convmon.collectors.stablecoins.evm.errors import MalformedLog


@dataclass(frozen=True, slots=True)
class Head:
    number: int
    hash: str
    parent: str
    timestamp: int


def parse_head(obj: Any) -> Head:
    """A ``newHeads`` header (raw or web3-formatted). Raises `MalformedLog`."""
    try:
        return Head(
            number=to_int(obj["number"]),
            hash=hex_str(obj["hash"]).lower(),
            parent=hex_str(obj["parentHash"]).lower(),
            timestamp=to_int(obj["timestamp"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise MalformedLog(f"not a block header: {exc!r}") from None
