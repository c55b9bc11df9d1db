"""DePIN payout extraction: one jsonParsed transaction in, payouts per reward mint out.

Rule (../DESIGN.md): for each reward mint, sum ``post - pre`` token balance per owner (a
missing side is 0) and keep the positive deltas of owners that are not excluded
(escrows, treasuries, distribution wallets). Failed transactions pay nothing. The parsed
``transfer``/``transferChecked``/``mintTo``/``mintToChecked`` instructions (inner ones
too) cross-check the deltas, decide the kind (``mint`` when tokens were minted), and are
the evidence when a distribution moved 0 tokens (balances then show no change, yet the
network did pay out). Lamports (crank fees, rent) are never payouts: only reward mints
are looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from solders.pubkey import Pubkey

from convmon.collectors.depin.networks import NetworkConfig
from convmon.collectors.solana.txshape import (
    TokenAccount,
    account_keys,
    instruction_amount,
    instructions,
    meta_of,
    token_accounts,
    token_instruction,
)

PayoutKind = Literal["claim", "mint", "transfer"]
_MINTS = frozenset({"mintTo", "mintToChecked"})
_TRANSFERS = frozenset({"transfer", "transferChecked"})


@lru_cache(maxsize=65536)
def is_off_curve(address: str) -> bool:
    """True for program-derived addresses (they cannot sign: escrows, vaults)."""
    try:
        return not Pubkey.from_string(address).is_on_curve()
    except ValueError:
        return False


@dataclass(frozen=True)
class NetworkRules:
    """A `NetworkConfig` compiled for fast extraction."""

    name: str
    mints: dict[str, tuple[str, int]]
    """mint -> (token symbol, decimals)"""
    excluded: frozenset[str]
    wallets: frozenset[str]
    require_programs: frozenset[str]
    claim_programs: frozenset[str]
    exclude_off_curve: bool

    @classmethod
    def from_config(cls, name: str, cfg: NetworkConfig) -> NetworkRules:
        return cls(
            name=name,
            mints={m.mint: (m.token, m.decimals) for m in cfg.reward_mints},
            excluded=frozenset([*cfg.exclude, *cfg.wallets]),
            wallets=frozenset(cfg.wallets),
            require_programs=frozenset(cfg.require_programs),
            claim_programs=frozenset(cfg.claim_programs),
            exclude_off_curve=cfg.exclude_off_curve_owners,
        )


@dataclass
class Payout:
    """What one transaction paid in one reward mint."""

    network: str
    mint: str
    token: str
    decimals: int
    total: int
    recipients: list[tuple[str, int]]
    """(owner, base units), largest first, complete (the event caps it)."""
    kind: PayoutKind
    instruction_units: int | None
    """Sum of parsed transfer/mint instructions to the recipients (the cross-check)."""
    evidence: Literal["balances", "instructions"] = "balances"
    extra: dict[str, Any] = field(default_factory=dict)


class ParsedTx:
    """The parts of a transaction every network's rules read, parsed once."""

    __slots__ = ("accounts", "evidence", "failed", "minted", "mints", "programs")

    def __init__(self, tx: dict[str, Any]) -> None:
        meta = meta_of(tx)
        self.failed = meta.get("err") is not None
        self.programs: set[str] = set()
        self.evidence: list[tuple[str, TokenAccount, int, bool]] = []
        """(mint, destination account, base units, minted) of each transfer/mint."""
        self.minted: set[str] = set()
        if self.failed:
            self.accounts: dict[int, TokenAccount] = {}
            self.mints: set[str] = set()
            return
        self.accounts = token_accounts(tx, meta, account_keys(tx))
        self.mints = {a.mint for a in self.accounts.values()}
        by_address = {a.address: a for a in self.accounts.values()}
        for _, ix in instructions(tx, meta):
            self.programs.add(ix.get("programId", ""))
            tok = token_instruction(ix)
            if tok is None:
                continue
            kind, info = tok
            is_mint = kind in _MINTS
            if not is_mint and kind not in _TRANSFERS:
                continue
            dest = by_address.get(info.get("destination") or info.get("account") or "")
            if dest is None:
                continue
            mint = info.get("mint") or dest.mint
            self.evidence.append((mint, dest, instruction_amount(info), is_mint))


def extract_payouts(tx: dict[str, Any] | ParsedTx, rules: NetworkRules) -> list[Payout]:
    """Payouts of ``tx`` for one network; [] for failed or unrelated transactions.

    Raises `MalformedTransaction` when the payload lacks the jsonParsed shape.
    """
    parsed = tx if isinstance(tx, ParsedTx) else ParsedTx(tx)
    mints = rules.mints
    if parsed.failed or parsed.mints.isdisjoint(mints):
        return []
    if rules.require_programs and rules.require_programs.isdisjoint(parsed.programs):
        return []

    evidence: dict[str, dict[str, int]] = {}
    minted: set[str] = set()
    for mint, dest, units, is_mint in parsed.evidence:
        if mint not in mints or dest.address in rules.excluded:
            continue
        if is_mint:
            minted.add(mint)
        per_owner = evidence.setdefault(mint, {})
        per_owner[dest.owner] = per_owner.get(dest.owner, 0) + units

    deltas: dict[str, dict[str, int]] = {}
    for acct in parsed.accounts.values():
        if acct.mint in mints and acct.post != acct.pre and acct.address not in rules.excluded:
            per_owner = deltas.setdefault(acct.mint, {})
            per_owner[acct.owner] = per_owner.get(acct.owner, 0) + acct.post - acct.pre

    payouts: list[Payout] = []
    for mint in sorted(set(deltas) | set(evidence)):
        owner_deltas = deltas.get(mint, {})
        if rules.wallets and not any(owner_deltas.get(w, 0) < 0 for w in rules.wallets):
            continue
        recipients = {o: d for o, d in owner_deltas.items() if d > 0 and _eligible(o, rules)}
        source: Literal["balances", "instructions"] = "balances"
        ix_owners = {o: a for o, a in evidence.get(mint, {}).items() if _eligible(o, rules)}
        if not recipients:
            if not ix_owners or any(d != 0 for d in owner_deltas.values()):
                continue
            recipients = ix_owners
            source = "instructions"
        token, decimals = mints[mint]
        ranked = sorted(recipients.items(), key=lambda kv: (-kv[1], kv[0]))
        if mint in minted:
            kind: PayoutKind = "mint"
        elif not rules.claim_programs.isdisjoint(parsed.programs):
            kind = "claim"
        else:
            kind = "transfer"
        payouts.append(
            Payout(
                network=rules.name,
                mint=mint,
                token=token,
                decimals=decimals,
                total=sum(recipients.values()),
                recipients=ranked,
                kind=kind,
                instruction_units=(
                    sum(ix_owners.get(o, 0) for o in recipients) if mint in evidence else None
                ),
                evidence=source,
            )
        )
    return payouts


def _eligible(owner: str, rules: NetworkRules) -> bool:
    if owner in rules.excluded:
        return False
    return not (rules.exclude_off_curve and is_off_curve(owner))


__all__ = [
    "NetworkRules",
    "ParsedTx",
    "Payout",
    "extract_payouts",
    "is_off_curve",
]
