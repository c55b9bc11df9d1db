"""Authoring jsonParsed transactions in mainnet shape, for the local server, tests, the demo
and the benchmarks.

`TxBuilder` lays out accounts the way a node does (static keys, then lookup-table writable,
then lookup-table readonly), numbers token balances by that index, and nests inner
instructions under the top-level instruction that invoked them. The scenario helpers
(`hivemapper_mint_payout`, `nosana_job_payout`, `helium_distribution`, `stablecoin_mint`,
`stablecoin_burn`, `helium_mint_data_credits`, `helium_burn_delegated_data_credits`,
`helium_issue_rewards`) build what those programs put on chain: programs invoke SPL Token by
CPI, so the token instructions are inner ones. Instructions of programs the node cannot
parse carry their real Anchor data (`anchor_data`: discriminator + Borsh arguments).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import base58
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

from convmon.collectors.depin import networks as n
from convmon.collectors.solana.txshape import TOKEN_2022_PROGRAM, TOKEN_PROGRAM

SYSTEM_PROGRAM = "11111111111111111111111111111111"
COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111"


def signature(seed: str) -> str:
    return str(Signature(hashlib.sha512(seed.encode()).digest()))


def wallet(seed: str) -> str:
    """An on-curve address (a person's wallet)."""
    return str(Keypair.from_seed(hashlib.sha256(seed.encode()).digest()).pubkey())


def pda(seed: str, program: str) -> str:
    """A program-derived (off-curve) address, as escrows and vaults are."""
    addr, _ = Pubkey.find_program_address([seed.encode()[:32]], Pubkey.from_string(program))
    return str(addr)


def token_account(owner: str, mint: str) -> str:
    """A deterministic token account address for (owner, mint)."""
    digest = hashlib.sha256(f"ata:{owner}:{mint}".encode()).digest()
    return str(Pubkey(digest))


@dataclass
class _Balance:
    address: str
    mint: str
    owner: str
    decimals: int
    pre: int | None
    post: int | None
    program: str


@dataclass
class TxBuilder:
    """Build one jsonParsed ``getTransaction`` result."""

    sig: str
    slot: int
    block_time: int | None
    version: int | str = 0
    err: Any = None
    fee: int = 5000
    _static: list[tuple[str, bool, bool]] = field(default_factory=list)
    _lookup: list[tuple[str, bool]] = field(default_factory=list)
    _balances: list[_Balance] = field(default_factory=list)
    _top: list[dict[str, Any]] = field(default_factory=list)
    _inner: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    _logs: list[str] = field(default_factory=list)

    def account(
        self, address: str, *, writable: bool = True, signer: bool = False, lookup: bool = False
    ) -> TxBuilder:
        if any(a == address for a, *_ in self._static) or any(
            a == address for a, _ in self._lookup
        ):
            return self
        if lookup and self.version != "legacy":
            self._lookup.append((address, writable))
        else:
            self._static.append((address, writable, signer))
        return self

    def balance(
        self,
        address: str,
        mint: str,
        owner: str,
        decimals: int,
        pre: int | None,
        post: int | None,
        *,
        program: str = TOKEN_PROGRAM,
        lookup: bool = False,
    ) -> TxBuilder:
        """A token account's balance before/after (None: the account did not exist)."""
        self.account(address, lookup=lookup)
        self._balances.append(_Balance(address, mint, owner, decimals, pre, post, program))
        return self

    def top(self, program_id: str, parsed: dict[str, Any] | None = None) -> int:
        self.account(program_id, writable=False)
        self._top.append(_instruction(program_id, parsed, 1))
        self._logs += invoke_logs(program_id, parsed, 1)
        return len(self._top) - 1

    def inner(self, index: int, program_id: str, parsed: dict[str, Any] | None = None) -> TxBuilder:
        self.account(program_id, writable=False, lookup=True)
        self._inner.setdefault(index, []).append(_instruction(program_id, parsed, 2))
        self._logs += invoke_logs(program_id, parsed, 2)
        return self

    def build(self) -> dict[str, Any]:
        order = [a for a, *_ in self._static]
        order += [a for a, w in self._lookup if w] + [a for a, w in self._lookup if not w]
        index = {a: i for i, a in enumerate(order)}
        keys = [
            {"pubkey": a, "writable": w, "signer": s, "source": "transaction"}
            for a, w, s in self._static
        ]
        keys += [
            {"pubkey": a, "writable": w, "signer": False, "source": "lookupTable"}
            for a, w in sorted(self._lookup, key=lambda x: not x[1])
        ]

        def balances(post: bool) -> list[dict[str, Any]]:
            out = []
            for b in self._balances:
                amount = b.post if post else b.pre
                if amount is None:
                    continue
                out.append(
                    {
                        "accountIndex": index[b.address],
                        "mint": b.mint,
                        "owner": b.owner,
                        "programId": b.program,
                        "uiTokenAmount": {
                            "amount": str(amount),
                            "decimals": b.decimals,
                            "uiAmount": amount / 10**b.decimals,
                            "uiAmountString": str(amount / 10**b.decimals),
                        },
                    }
                )
            return out

        lookups = [a for a, _ in self._lookup]
        message: dict[str, Any] = {
            "accountKeys": keys,
            "instructions": self._top,
            "recentBlockhash": str(Pubkey(hashlib.sha256(self.sig.encode()).digest())),
        }
        if self.version != "legacy":
            message["addressTableLookups"] = (
                [
                    {
                        "accountKey": str(
                            Pubkey(hashlib.sha256(b"alt" + self.sig.encode()).digest())
                        ),
                        "writableIndexes": list(range(sum(1 for _, w in self._lookup if w))),
                        "readonlyIndexes": list(range(sum(1 for _, w in self._lookup if not w))),
                    }
                ]
                if lookups
                else []
            )
        n_accounts = len(order)
        return {
            "slot": self.slot,
            "blockTime": self.block_time,
            "version": self.version,
            "transaction": {"signatures": [self.sig], "message": message},
            "meta": {
                "err": self.err,
                "status": {"Ok": None} if self.err is None else {"Err": self.err},
                "fee": self.fee,
                "preBalances": [1_000_000_000] * n_accounts,
                "postBalances": [
                    1_000_000_000 - (self.fee if i == 0 else 0) for i in range(n_accounts)
                ],
                "innerInstructions": [
                    {"index": i, "instructions": ixs} for i, ixs in sorted(self._inner.items())
                ],
                "logMessages": self._logs,
                "preTokenBalances": balances(False),
                "postTokenBalances": balances(True),
                "rewards": [],
                "loadedAddresses": {
                    "writable": [a for a, w in self._lookup if w],
                    "readonly": [a for a, w in self._lookup if not w],
                },
                "computeUnitsConsumed": 42_000,
            },
        }


def invoke_logs(program_id: str, parsed: dict[str, Any] | None, depth: int) -> list[str]:
    """The log lines of one invocation; token programs log the instruction's name
    (``Program log: Instruction: MintTo``), which ``logsSubscribe`` filters read."""
    lines = [f"Program {program_id} invoke [{depth}]"]
    if parsed is not None and program_id in (TOKEN_PROGRAM, TOKEN_2022_PROGRAM):
        kind = str(parsed.get("type", ""))
        lines.append(f"Program log: Instruction: {kind[:1].upper()}{kind[1:]}")
    return [*lines, f"Program {program_id} success"]


def _instruction(program_id: str, parsed: dict[str, Any] | None, depth: int) -> dict[str, Any]:
    if parsed is None:
        return {
            "programId": program_id,
            "accounts": [],
            "data": "3Bxs4h24hBtQy9rw",
            "stackHeight": depth,
        }
    name = {
        TOKEN_PROGRAM: "spl-token",
        TOKEN_2022_PROGRAM: "spl-token-2022",
        SYSTEM_PROGRAM: "system",
    }.get(program_id, "unknown")
    return {"program": name, "programId": program_id, "parsed": parsed, "stackHeight": depth}


def spl(kind: str, **info: Any) -> dict[str, Any]:
    """A parsed token instruction (``mintTo``, ``transferChecked``, ``burn`` ...)."""
    if "decimals" in info and kind.endswith("Checked"):
        decimals = info.pop("decimals")
        amount = info.pop("amount")
        info["tokenAmount"] = {
            "amount": str(amount),
            "decimals": decimals,
            "uiAmount": amount / 10**decimals,
            "uiAmountString": str(amount / 10**decimals),
        }
    elif "amount" in info:
        info["amount"] = str(info["amount"])
        info.pop("decimals", None)
    return {"type": kind, "info": info}


def _header(b: TxBuilder, payer: str) -> None:
    b.account(payer, signer=True)
    b.top(COMPUTE_BUDGET)


def hivemapper_mint_payout(
    seed: str,
    slot: int,
    block_time: int | None,
    recipients: list[tuple[str, int]],
    *,
    version: int | str = 0,
    existing: bool = True,
) -> dict[str, Any]:
    """Hivemapper's reward program minting HONEY (MintTo) into contributors' accounts."""
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    _header(b, wallet("hivemapper-crank"))
    authority = pda("honey-mint-authority", n.HIVEMAPPER_REWARD)
    i = b.top(n.HIVEMAPPER_REWARD)
    b.account(n.HONEY, lookup=True)
    for owner, amount in recipients:
        acct = token_account(owner, n.HONEY)
        b.balance(
            acct,
            n.HONEY,
            owner,
            9,
            1_000 if existing else None,
            amount + (1_000 if existing else 0),
            lookup=True,
        )
        b.inner(
            i,
            TOKEN_PROGRAM,
            spl("mintTo", mint=n.HONEY, account=acct, mintAuthority=authority, amount=amount),
        )
    return b.build()


def nosana_job_payout(
    seed: str,
    slot: int,
    block_time: int | None,
    node: str,
    amount: int,
    *,
    version: int | str = 0,
    fee_lamports: int = 15_000,
) -> dict[str, Any]:
    """Nosana's jobs program paying a node from the market vault (a PDA) with a crank fee
    in lamports beside it."""
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    payer = wallet("nosana-crank")
    _header(b, payer)
    vault_owner = pda("nosana-market-vault", n.NOSANA_JOBS)
    vault = token_account(vault_owner, n.NOS)
    dest = token_account(node, n.NOS)
    i = b.top(n.NOSANA_JOBS)
    b.balance(vault, n.NOS, vault_owner, 6, 10**13, 10**13 - amount, lookup=True)
    b.balance(dest, n.NOS, node, 6, 0, amount)
    b.inner(
        i,
        SYSTEM_PROGRAM,
        {
            "type": "transfer",
            "info": {"source": payer, "destination": node, "lamports": fee_lamports},
        },
    )
    b.inner(
        i,
        TOKEN_PROGRAM,
        spl(
            "transferChecked",
            source=vault,
            destination=dest,
            authority=vault_owner,
            mint=n.NOS,
            amount=amount,
            decimals=6,
        ),
    )
    return b.build()


def helium_distribution(
    seed: str,
    slot: int,
    block_time: int | None,
    recipient: str,
    amount: int,
    *,
    version: int | str = 0,
) -> dict[str, Any]:
    """A lazy-distributor ``distribute_*`` paying HNT through the circuit breaker."""
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    _header(b, wallet("helium-crank"))
    escrow_owner = pda("lazy-distributor-escrow", n.CIRCUIT_BREAKER)
    escrow = token_account(escrow_owner, n.HNT)
    dest = token_account(recipient, n.HNT)
    i = b.top(n.LAZY_DISTRIBUTOR)
    b.balance(escrow, n.HNT, escrow_owner, 8, 10**16, 10**16 - amount, lookup=True)
    b.balance(dest, n.HNT, recipient, 8, 0, amount)
    b.inner(i, n.CIRCUIT_BREAKER)
    b.inner(
        i,
        TOKEN_PROGRAM,
        spl("transfer", source=escrow, destination=dest, authority=escrow_owner, amount=amount),
    )
    return b.build()


def _token_instruction(
    b: TxBuilder, program: str, ix: dict[str, Any], *, via: str | None
) -> None:
    """The token-program instruction, top-level or by CPI from the program ``via``."""
    if via is None:
        b.top(program, ix)
    else:
        b.inner(b.top(via), program, ix)


def stablecoin_mint(
    seed: str,
    slot: int,
    block_time: int | None,
    mint: str,
    amount: int,
    to_owner: str,
    *,
    decimals: int = 6,
    program: str = TOKEN_PROGRAM,
    inner: bool = False,
    checked: bool = False,
    version: int | str = 0,
) -> dict[str, Any]:
    """An issuer minting stablecoins, top-level or by CPI from a minter program."""
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    _header(b, wallet(f"issuer:{mint}"))
    dest = token_account(to_owner, mint)
    b.balance(dest, mint, to_owner, decimals, 0, amount, program=program)
    kind = "mintToChecked" if checked else "mintTo"
    ix = spl(
        kind,
        mint=mint,
        account=dest,
        mintAuthority=wallet(f"issuer:{mint}"),
        amount=amount,
        decimals=decimals,
    )
    _token_instruction(b, program, ix, via=pda("minter", mint) if inner else None)
    return b.build()


def stablecoin_burn(
    seed: str,
    slot: int,
    block_time: int | None,
    mint: str,
    amount: int,
    from_owner: str,
    *,
    decimals: int = 6,
    program: str = TOKEN_PROGRAM,
    inner: bool = False,
    checked: bool = False,
    version: int | str = 0,
) -> dict[str, Any]:
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    _header(b, from_owner)
    src = token_account(from_owner, mint)
    b.balance(src, mint, from_owner, decimals, amount, 0, program=program)
    kind = "burnChecked" if checked else "burn"
    ix = spl(kind, mint=mint, account=src, authority=from_owner, amount=amount, decimals=decimals)
    _token_instruction(b, program, ix, via=pda("redeemer", mint) if inner else None)
    return b.build()


def x402_transfer(
    seed: str,
    slot: int,
    block_time: int | None,
    mint: str,
    amount: int,
    payer: str,
    payee: str,
    fee_payer: str,
    *,
    decimals: int = 6,
    program: str = TOKEN_PROGRAM,
    version: int | str = 0,
) -> dict[str, Any]:
    """An x402 settlement on Solana: the facilitator (``fee_payer``, account 0) submits the
    payer's signed SPL Token ``transferChecked`` of ``mint`` to the payee, top-level."""
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    _header(b, fee_payer)
    b.account(payer, writable=False, signer=True)
    src, dest = token_account(payer, mint), token_account(payee, mint)
    b.balance(src, mint, payer, decimals, amount * 3, amount * 2, program=program)
    b.balance(dest, mint, payee, decimals, 0, amount, program=program)
    ix = spl("transferChecked", source=src, mint=mint, destination=dest, authority=payer,
             amount=amount, decimals=decimals)
    b.top(program, ix)
    return b.build()


def anchor_data(instruction_name: str, args: bytes = b"") -> str:
    """Base58 instruction data of an Anchor program: ``sha256("global:<name>")[:8]`` then the
    Borsh-encoded arguments."""
    disc = hashlib.sha256(f"global:{instruction_name}".encode()).digest()[:8]
    return base58.b58encode(disc + args).decode()


def borsh_u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def borsh_option_u64(value: int | None) -> bytes:
    return b"\x00" if value is None else b"\x01" + borsh_u64(value)


def raw_call(
    b: TxBuilder,
    program_id: str,
    data: str,
    accounts: list[str],
    *,
    index: int | None = None,
    depth: int = 1,
) -> int:
    """An instruction of a program the node cannot parse (``accounts`` + base58 ``data``):
    top-level when ``index`` is None, else executed inside top-level ``index`` at stack
    height ``depth``. Returns the top-level index it belongs to."""
    for address in accounts:
        b.account(address, writable=False, lookup=index is not None)
    ix = {"programId": program_id, "accounts": accounts, "data": data, "stackHeight": depth}
    if index is None:
        b.account(program_id, writable=False)
        b._top.append(ix)
        b._logs += invoke_logs(program_id, None, 1)
        return len(b._top) - 1
    b.account(program_id, writable=False, lookup=True)
    b._inner.setdefault(index, []).append(ix)
    b._logs += invoke_logs(program_id, None, depth)
    return index


def token_call(
    b: TxBuilder, index: int, program: str, parsed: dict[str, Any], depth: int
) -> None:
    """A parsed token instruction executed inside top-level ``index`` at ``depth``."""
    b.account(program, writable=False, lookup=True)
    ix = _instruction(program, parsed, depth)
    b._inner.setdefault(index, []).append(ix)
    b._logs += invoke_logs(program, parsed, depth)


def helium_mint_data_credits(
    seed: str,
    slot: int,
    block_time: int | None,
    owner: str,
    hnt_burned: int,
    dc_minted: int,
    *,
    version: int | str = 0,
) -> dict[str, Any]:
    """``data_credits.mint_data_credits_v0`` (args ``{hnt_amount: Some, dc_amount: None}``):
    the owner's HNT is burned (SPL ``burn`` at stack height 2), then Data Credits are minted
    to the owner through the circuit breaker's ``mint_v0`` (SPL ``mintTo`` at height 3)."""
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    _header(b, owner)
    hnt_acct = token_account(owner, n.HNT)
    dc_acct = token_account(owner, n.DC)
    data_credits = pda("dc", n.HELIUM_DATA_CREDITS)
    dc_authority = pda("dc-mint-authority", n.HELIUM_DATA_CREDITS)
    breaker = pda("mint_windowed_breaker", n.CIRCUIT_BREAKER)
    b.balance(hnt_acct, n.HNT, owner, 8, hnt_burned + 10**8, 10**8)
    b.balance(dc_acct, n.DC, owner, 0, 0, dc_minted)
    i = raw_call(
        b,
        n.HELIUM_DATA_CREDITS,
        anchor_data("mint_data_credits_v0", borsh_option_u64(hnt_burned) + borsh_option_u64(None)),
        [data_credits, owner, hnt_acct, dc_acct, owner, owner, n.HNT, n.DC, breaker,
         n.CIRCUIT_BREAKER, TOKEN_PROGRAM, SYSTEM_PROGRAM],
    )
    token_call(
        b, i, TOKEN_PROGRAM,
        spl("burn", account=hnt_acct, mint=n.HNT, authority=owner, amount=hnt_burned), 2,
    )
    raw_call(
        b, n.CIRCUIT_BREAKER, anchor_data("mint_v0", borsh_u64(dc_minted)),
        [n.DC, dc_acct, dc_authority, breaker, TOKEN_PROGRAM], index=i, depth=2,
    )
    token_call(
        b, i, TOKEN_PROGRAM,
        spl("mintTo", mint=n.DC, account=dc_acct, mintAuthority=breaker, amount=dc_minted), 3,
    )
    return b.build()


def helium_burn_delegated_data_credits(
    seed: str, slot: int, block_time: int | None, amount: int, *, version: int | str = 0
) -> dict[str, Any]:
    """``data_credits.burn_delegated_data_credits_v0`` (args ``{amount: u64}``): Data Credits
    delegated to a sub-DAO are burned for network usage (SPL ``burn`` at height 2)."""
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    oracle = wallet("helium-dc-burn-oracle")
    _header(b, oracle)
    delegated = pda("delegated_data_credits", n.HELIUM_DATA_CREDITS)
    escrow = token_account(delegated, n.DC)
    b.balance(escrow, n.DC, delegated, 0, amount + 10**9, 10**9, lookup=True)
    i = raw_call(
        b,
        n.HELIUM_DATA_CREDITS,
        anchor_data("burn_delegated_data_credits_v0", borsh_u64(amount)),
        [oracle, pda("dc", n.HELIUM_DATA_CREDITS), delegated, escrow, n.DC, TOKEN_PROGRAM],
    )
    token_call(
        b, i, TOKEN_PROGRAM,
        spl("burn", account=escrow, mint=n.DC, authority=delegated, amount=amount), 2,
    )
    return b.build()


def helium_issue_rewards(
    seed: str,
    slot: int,
    block_time: int | None,
    epoch: int,
    mints: list[tuple[str, int]],
    *,
    version: int | str = 0,
) -> dict[str, Any]:
    """``helium_sub_daos.issue_rewards_v0`` (args ``{epoch: u64}``): the epoch's HNT emission
    minted through the circuit breaker (``mint_v0`` at height 2, SPL ``mintTo`` at 3) to
    each (owner, amount) of ``mints`` (treasury, rewards escrow, delegator pool)."""
    b = TxBuilder(signature(seed), slot, block_time, version=version)
    _header(b, wallet("helium-epoch-crank"))
    breaker = pda("mint_windowed_breaker", n.CIRCUIT_BREAKER)
    i = raw_call(
        b,
        n.HELIUM_SUB_DAOS,
        anchor_data("issue_rewards_v0", borsh_u64(epoch)),
        [pda("dao", n.HELIUM_SUB_DAOS), pda("sub_dao", n.HELIUM_SUB_DAOS), n.HNT, breaker],
    )
    for owner, amount in mints:
        acct = token_account(owner, n.HNT)
        b.balance(acct, n.HNT, owner, 8, 0, amount, lookup=True)
        raw_call(
            b, n.CIRCUIT_BREAKER, anchor_data("mint_v0", borsh_u64(amount)),
            [n.HNT, acct, breaker, TOKEN_PROGRAM], index=i, depth=2,
        )
        token_call(
            b, i, TOKEN_PROGRAM,
            spl("mintTo", mint=n.HNT, account=acct, mintAuthority=breaker, amount=amount), 3,
        )
    return b.build()
