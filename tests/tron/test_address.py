"""Tron address forms: base58check <-> 41-prefixed hex, checked against the USDT contract."""

from __future__ import annotations

import hashlib

import pytest

from convmon.collectors.stablecoins.tron.address import AddressError, is_zero, to_base58, to_hex

USDT = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
USDT_HEX = "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"


def test_the_known_pair_converts_both_ways() -> None:
    assert to_hex(USDT) == USDT_HEX
    assert to_base58(USDT_HEX) == USDT
    assert to_base58("0x" + USDT_HEX[2:]) == USDT
    assert to_base58(USDT_HEX[2:].upper()) == USDT


def test_the_checksum_is_double_sha256_of_the_21_bytes() -> None:
    raw = bytes.fromhex(USDT_HEX)
    checksum = hashlib.sha256(hashlib.sha256(raw).digest()).digest()[:4]
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    n = int.from_bytes(raw + checksum, "big")
    text = ""
    while n:
        n, r = divmod(n, 58)
        text = alphabet[r] + text
    assert text == USDT


@pytest.mark.parametrize("bad", [
    USDT[:-1] + ("u" if USDT[-1] != "u" else "v"),   # checksum broken
    "0x" + "ab" * 19,                                # 19 bytes
    "42" + USDT_HEX[2:],                             # wrong prefix byte
    "not an address",
    "",
])
def test_bad_addresses_are_refused(bad: str) -> None:
    with pytest.raises(AddressError):
        to_base58(bad)


def test_zero_address_in_every_form() -> None:
    zero_hex = "41" + "00" * 20
    assert is_zero(zero_hex)
    assert is_zero("0x" + "00" * 20)
    assert is_zero(to_base58(zero_hex))
    assert not is_zero(USDT)
