"""Reading jsonParsed ``getTransaction`` results: accounts, token balances, instructions.

Only what the extractors need, written for speed (plain dict walks, no model building):
the DePIN benchmark pushes thousands of transactions per second through here. Anything
that does not have the expected shape raises `MalformedTransaction`, which the collectors
count and skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from convmon.collectors.solana.errors import MalformedTransaction

TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"
TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb"
TOKEN_PROGRAMS = frozenset({TOKEN_PROGRAM, TOKEN_2022_PROGRAM})
TOKEN_PROGRAM_NAMES = frozenset({"spl-token", "spl-token-2022"})


def account_keys(tx: dict[str, Any]) -> list[str]:
    """All account addresses by index: static keys, then lookup-table ones.

    jsonParsed lists lookup-table accounts inside ``accountKeys`` (``source:
    "lookupTable"``); the json encoding lists them in ``meta.loadedAddresses``.
    """
    try:
        raw = tx["transaction"]["message"]["accountKeys"]
        keys = [k["pubkey"] if isinstance(k, dict) else k for k in raw]
    except (KeyError, TypeError) as exc:
        raise MalformedTransaction(f"accountKeys: {exc!r}") from exc
    if raw and not isinstance(raw[0], dict):
        loaded = (tx.get("meta") or {}).get("loadedAddresses") or {}
        keys.extend(loaded.get("writable") or ())
        keys.extend(loaded.get("readonly") or ())
    return keys


def meta_of(tx: dict[str, Any]) -> dict[str, Any]:
    meta = tx.get("meta")
    if not isinstance(meta, dict):
        raise MalformedTransaction("meta is missing")
    return meta


def signature_of(tx: dict[str, Any]) -> str:
    try:
        sig = tx["transaction"]["signatures"][0]
    except (KeyError, IndexError, TypeError) as exc:
        raise MalformedTransaction(f"signatures: {exc!r}") from exc
    if not isinstance(sig, str):
        raise MalformedTransaction("signature is not a string")
    return sig


def slot_of(tx: dict[str, Any]) -> int:
    slot = tx.get("slot")
    if not isinstance(slot, int):
        raise MalformedTransaction("slot is missing")
    return slot


def block_time_of(tx: dict[str, Any]) -> int | None:
    bt = tx.get("blockTime")
    return bt if isinstance(bt, int) else None


class TokenAccount:
    """One token account of the transaction as told by pre/post token balances."""

    __slots__ = ("address", "mint", "owner", "post", "pre")

    def __init__(self, address: str, mint: str, owner: str) -> None:
        self.address = address
        self.mint = mint
        self.owner = owner
        self.pre = 0
        self.post = 0


def token_accounts(
    tx: dict[str, Any], meta: dict[str, Any], keys: list[str] | None = None
) -> dict[int, TokenAccount]:
    """Token accounts by account index with pre and post amounts (a missing side is 0).

    The owner falls back to the token account's address when the node omitted it.
    """
    if keys is None:
        keys = account_keys(tx)
    accounts: dict[int, TokenAccount] = {}
    try:
        for field, is_post in (("preTokenBalances", False), ("postTokenBalances", True)):
            for bal in meta.get(field) or ():
                idx = bal["accountIndex"]
                acct = accounts.get(idx)
                if acct is None:
                    address = keys[idx] if 0 <= idx < len(keys) else f"#{idx}"
                    acct = TokenAccount(address, bal["mint"], bal.get("owner") or address)
                    accounts[idx] = acct
                amount = int(bal["uiTokenAmount"]["amount"])
                if is_post:
                    acct.post = amount
                else:
                    acct.pre = amount
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise MalformedTransaction(f"token balances: {exc!r}") from exc
    return accounts


def instruction_groups(
    tx: dict[str, Any], meta: dict[str, Any]
) -> Iterator[tuple[int, dict[str, Any], list[dict[str, Any]]]]:
    """Each top-level instruction with its index and the inner instructions it executed
    (flattened by the node, each with its ``stackHeight`` when the node reports it)."""
    try:
        top = tx["transaction"]["message"]["instructions"]
    except (KeyError, TypeError) as exc:
        raise MalformedTransaction(f"instructions: {exc!r}") from exc
    inner: dict[int, list[dict[str, Any]]] = {}
    for group in meta.get("innerInstructions") or ():
        try:
            inner[group["index"]] = group["instructions"]
        except (KeyError, TypeError) as exc:
            raise MalformedTransaction(f"innerInstructions: {exc!r}") from exc
    for i, ix in enumerate(top):
        if not isinstance(ix, dict):
            raise MalformedTransaction("instruction is not an object")
        subs = inner.get(i, [])
        if not all(isinstance(sub, dict) for sub in subs):
            raise MalformedTransaction("inner instruction is not an object")
        yield i, ix, subs


def instructions(tx: dict[str, Any], meta: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every instruction with its path: ``"3"`` for top-level #3, ``"3.1"`` for the
    second instruction executed inside it (inner instructions are flattened by the node)."""
    for i, ix, subs in instruction_groups(tx, meta):
        yield str(i), ix
        for j, sub in enumerate(subs):
            yield f"{i}.{j}", sub


def token_instruction(ix: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(type, info)`` of a parsed SPL Token / Token-2022 instruction, else None."""
    parsed = ix.get("parsed")
    if not isinstance(parsed, dict):
        return None
    if ix.get("program") not in TOKEN_PROGRAM_NAMES and ix.get("programId") not in TOKEN_PROGRAMS:
        return None
    kind = parsed.get("type")
    info = parsed.get("info")
    if not isinstance(kind, str) or not isinstance(info, dict):
        return None
    return kind, info


def instruction_amount(info: dict[str, Any]) -> int:
    """Base units of a parsed token instruction (``amount`` or ``tokenAmount.amount``)."""
    try:
        if "amount" in info:
            return int(info["amount"])
        return int(info["tokenAmount"]["amount"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedTransaction(f"token instruction amount: {exc!r}") from exc

