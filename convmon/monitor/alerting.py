"""The alert transition record: what the rule engine writes to the alerts outbox and the
dispatcher reads.

Semantics follow Prometheus: an alert instance is (rule, label set), identified by a
stable fingerprint of its labels (which include ``alertname``); it moves
inactive → pending → firing → resolved. Each transition has a deterministic id
(``<fingerprint>:<seq>``) so a redelivered or re-emitted transition is recognisable.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Literal

import msgspec

AlertState = Literal["pending", "firing", "resolved"]


def alert_fingerprint(labels: Mapping[str, str]) -> str:
    """Stable 16-hex-digit fingerprint of a label set (order-independent)."""
    h = hashlib.sha256()
    for key in sorted(labels):
        h.update(key.encode())
        h.update(b"\xff")
        h.update(labels[key].encode())
        h.update(b"\xff")
    return h.hexdigest()[:16]


class AlertTransition(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    """``<fingerprint>:<seq>``; unique per transition of one alert instance."""
    fingerprint: str
    seq: int
    """Transition counter of this instance, starting at 1."""
    rule: str
    state: AlertState
    labels: dict[str, str]
    """Includes ``alertname`` and ``severity`` (critical | warning | info)."""
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    value: float | None = None
    starts_at: float
    """Unix seconds the instance went pending (pending) or firing (firing/resolved)."""
    ends_at: float | None = None
    """Unix seconds it resolved; None while active."""
    evaluated_at: float
    generator_url: str = ""
    event_id: str | None = None
    """The event that caused the transition, when one did."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AlertTransition)


def encode_transition(t: AlertTransition) -> bytes:
    return _encoder.encode(t)


def decode_transition(data: bytes | str) -> AlertTransition:
    return _decoder.decode(data)
