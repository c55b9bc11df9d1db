"""Tron addresses: base58check (``T...``) and hex (``41`` + 20 bytes) forms.

A Tron address is the 20-byte account id of an EVM address prefixed with the byte 0x41;
its user-facing form is the base58check encoding of those 21 bytes (4-byte double-SHA256
checksum). Event APIs return either form, and some return the bare EVM form
(``0x`` + 20 bytes), so everything is normalised to base58 here.
"""

from __future__ import annotations

import base58

PREFIX = 0x41
ZERO_HEX = "41" + "00" * 20
_ZERO = bytes.fromhex(ZERO_HEX)


class AddressError(ValueError):
    """Not a Tron address in any accepted form."""


def to_hex(address: str) -> str:
    """``41``-prefixed lowercase hex (42 characters) of any accepted form."""
    return _raw(address).hex()


def to_base58(address: str) -> str:
    """Base58check form (``T...``) of any accepted form."""
    return base58.b58encode_check(_raw(address)).decode("ascii")


def is_zero(address: str) -> bool:
    return _raw(address) == _ZERO


def to_raw(address: str) -> bytes:
    """The 21 bytes (0x41 + account id) of any accepted form; cheap for hex forms, so
    callers test an address before paying for its base58 form."""
    return _raw(address)


def raw_to_base58(raw: bytes) -> str:
    return base58.b58encode_check(raw).decode("ascii")


def _raw(address: str) -> bytes:
    if not isinstance(address, str) or not address:
        raise AddressError("empty address")
    text = address.strip()
    if text.startswith("T"):
        try:
            raw = base58.b58decode_check(text)
        except ValueError:
            raise AddressError(f"{text[:40]!r}: bad base58check") from None
    else:
        digits = text[2:] if text[:2].lower() == "0x" else text
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            raise AddressError(f"{text[:44]!r}: not hex") from None
        if len(raw) == 20:
            raw = bytes([PREFIX]) + raw
    if len(raw) != 21 or raw[0] != PREFIX:
        raise AddressError(f"{text[:44]!r}: not a 21-byte 0x41 address")
    return raw
