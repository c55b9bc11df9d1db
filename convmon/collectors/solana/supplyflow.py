"""Token supply flows: every mint and burn of configured mints in one transaction, with the
program that caused it and, where that program is known, the purpose.

In: a jsonParsed ``getTransaction`` result, the tracked mints and a `PurposeRegistry`.
Out: one `SupplyFlow` per ``mintTo``/``mintToChecked`` (emission) and ``burn``/
``burnChecked`` (burn) instruction of SPL Token or Token-2022 on a tracked mint, top-level
or inner (CPI), in legacy and versioned transactions alike (lookup-table accounts come from
``accountKeys``, see `txshape.account_keys`). Failed transactions have none.

This is the one mechanism behind the Solana stablecoin mints/burns and the DePIN
emissions/burns: each collector turns flows into its own event kind.

Purpose: the token program is always invoked by someone. The node flattens inner
instructions and gives each its ``stackHeight``, so the chain of callers of a token
instruction is found by walking back to the nearest instruction one level up, then one
more, up to the top-level instruction. The nearest caller whose program is in the registry
decides: its instruction data begins with the Anchor discriminator (the first 8 bytes of
``sha256("global:<instruction name>")``), looked up in the registry. These programs emit no
Anchor events, so instruction data is the only evidence. No registered caller: purpose
``unknown``, program = the direct caller (the token program itself for a top-level
instruction).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import base58

from convmon.collectors.solana.txshape import (
    instruction_amount,
    instruction_groups,
    meta_of,
    token_instruction,
)
from convmon.monitor.config import Model

UNKNOWN_PURPOSE = "unknown"
MINT_KINDS = frozenset({"mintTo", "mintToChecked"})
BURN_KINDS = frozenset({"burn", "burnChecked"})
FlowKind = Literal["mint", "burn"]


SUPPLY_LOGS = frozenset(
    f"Program log: Instruction: {name}"
    for name in ("MintTo", "MintToChecked", "Burn", "BurnChecked")
)
"""What SPL Token and Token-2022 log for the instructions that change a mint's supply."""


def changes_supply(logs: Sequence[str]) -> bool:
    """Whether a notification's logs may hold a mint or burn: a token program logged one,
    or the node truncated the logs (then nothing can be ruled out). For ``logsSubscribe``
    on a mint, which also reports every ``transferChecked`` of it."""
    return any(line in SUPPLY_LOGS or line == "Log truncated" for line in logs)


def discriminator(instruction_name: str) -> bytes:
    """Anchor's instruction discriminator: ``sha256("global:<name>")[:8]``."""
    return hashlib.sha256(f"global:{instruction_name}".encode()).digest()[:8]


class ProgramPurpose(Model):
    """One registry entry: what calling ``instruction`` of ``program`` means.

    Without ``instruction`` the entry covers every instruction of the program that has no
    entry of its own."""

    program: str
    instruction: str | None = None
    """Anchor instruction name (snake_case, as in the program's IDL)."""
    purpose: str


@dataclass(frozen=True)
class Purpose:
    program: str
    instruction: str | None
    purpose: str


class PurposeRegistry:
    """Program id → discriminator → purpose, built from `ProgramPurpose` entries."""

    def __init__(self, entries: Iterable[ProgramPurpose] = ()) -> None:
        self._by_disc: dict[str, dict[bytes, Purpose]] = {}
        self._fallback: dict[str, Purpose] = {}
        for e in entries:
            if e.instruction is None:
                self._fallback[e.program] = Purpose(e.program, None, e.purpose)
            else:
                self._by_disc.setdefault(e.program, {})[discriminator(e.instruction)] = Purpose(
                    e.program, e.instruction, e.purpose
                )

    def knows(self, program: str) -> bool:
        return program in self._by_disc or program in self._fallback

    def lookup(self, program: str, data: object) -> Purpose | None:
        """The purpose of an instruction of ``program`` with base58 ``data``; None when the
        program is not registered."""
        table = self._by_disc.get(program)
        if table:
            found = table.get(instruction_head(data))
            if found is not None:
                return found
        fallback = self._fallback.get(program)
        if fallback is not None:
            return fallback
        if table is not None:
            return Purpose(program, None, UNKNOWN_PURPOSE)
        return None


def instruction_head(data: object) -> bytes:
    """The first 8 bytes of base58 instruction data (b"" when it is not base58). Base58 is
    one big number, not a byte-wise code: the whole string is decoded."""
    if not isinstance(data, str) or not data:
        return b""
    try:
        return bytes(base58.b58decode(data)[:8])
    except ValueError:
        return b""


@dataclass(frozen=True)
class SupplyFlow:
    """One mint or burn instruction on a tracked mint."""

    kind: FlowKind
    mint: str
    units: int
    path: str
    """``"3"`` for top-level instruction 3, ``"3.1"`` for the second inner one under it."""
    method: str
    """mintTo | mintToChecked | burn | burnChecked"""
    account: str
    """The token account credited (mint) or debited (burn)."""
    authority: str | None
    program: str
    """The registered caller that decided the purpose, else the direct caller."""
    instruction: str | None
    purpose: str
    token_program: str


def _caller_chain(group: list[dict[str, Any]], j: int, top: dict[str, Any]) -> list[dict[str, Any]]:
    """Callers of inner instruction ``j`` of ``group``, nearest first, ending with ``top``."""
    height = group[j].get("stackHeight")
    chain: list[dict[str, Any]] = []
    if isinstance(height, int):
        want = height - 1
        for k in range(j - 1, -1, -1):
            if want <= 1:
                break
            h = group[k].get("stackHeight")
            if isinstance(h, int) and h == want:
                chain.append(group[k])
                want -= 1
    chain.append(top)
    return chain


def extract_flows(
    tx: dict[str, Any], mints: Mapping[str, object], registry: PurposeRegistry
) -> list[SupplyFlow]:
    """Mints and burns of ``mints`` (keys are mint addresses) in ``tx``, in instruction
    order. Raises `MalformedTransaction` when the payload lacks the jsonParsed shape."""
    meta = meta_of(tx)
    if meta.get("err") is not None:
        return []
    flows: list[SupplyFlow] = []
    for i, ix, group in instruction_groups(tx, meta):
        found = _candidate(ix, mints)
        if found is not None:
            flows.append(_flow(ix, str(i), found, [], registry))
        for j, sub in enumerate(group):
            found = _candidate(sub, mints)
            if found is not None:
                flows.append(_flow(sub, f"{i}.{j}", found, _caller_chain(group, j, ix), registry))
    return flows


def _candidate(
    ix: dict[str, Any], mints: Mapping[str, object]
) -> tuple[FlowKind, str, dict[str, Any]] | None:
    """(kind, method, info) of a token mint/burn instruction on a tracked mint."""
    tok = token_instruction(ix)
    if tok is None:
        return None
    method, info = tok
    if method in MINT_KINDS:
        kind: FlowKind = "mint"
    elif method in BURN_KINDS:
        kind = "burn"
    else:
        return None
    mint = info.get("mint")
    if not isinstance(mint, str) or mint not in mints:
        return None
    return kind, method, info


def _flow(
    ix: dict[str, Any],
    path: str,
    found: tuple[FlowKind, str, dict[str, Any]],
    callers: list[dict[str, Any]],
    registry: PurposeRegistry,
) -> SupplyFlow:
    kind, method, info = found
    token_program = str(ix.get("programId", ""))
    program, instruction, purpose = token_program, None, UNKNOWN_PURPOSE
    if callers:
        program = str(callers[0].get("programId", ""))
    for caller in callers:
        known = registry.lookup(str(caller.get("programId", "")), caller.get("data"))
        if known is not None:
            program, instruction, purpose = known.program, known.instruction, known.purpose
            break
    authority = info.get("mintAuthority") if kind == "mint" else info.get("authority")
    if authority is None:
        authority = info.get("multisigMintAuthority") or info.get("multisigAuthority")
    return SupplyFlow(
        kind=kind,
        mint=str(info["mint"]),
        units=instruction_amount(info),
        path=path,
        method=method,
        account=str(info.get("account", "")),
        authority=authority if isinstance(authority, str) else None,
        program=program,
        instruction=instruction,
        purpose=purpose,
        token_program=token_program,
    )
