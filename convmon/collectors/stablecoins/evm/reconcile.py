"""Checks of the token registry against the chain.

In: the JSON-RPC endpoint and the configured tokens. Out: decimals mismatches (reported
through `CollectorHealth` and the log; the configured value is kept so a misconfiguration
never silently rescales amounts) and ``stablecoin.supply`` events from ``totalSupply()``
(one id per token per block), which the aggregates compare with tracked net issuance to
measure drift.
"""

from __future__ import annotations

import logging

from convmon.collectors.stablecoins.evm.decode import SOURCE
from convmon.collectors.stablecoins.evm.errors import ChainMismatch, RpcError
from convmon.collectors.stablecoins.evm.rpc import EthRpc
from convmon.collectors.stablecoins.evm.tokens import TokenRegistry
from convmon.monitor.events import Amount, Event, StablecoinSupply
from convmon.monitor.health import CollectorHealth

log = logging.getLogger(__name__)

DECIMALS = "0x313ce567"
TOTAL_SUPPLY = "0x18160ddd"
ETHERSCAN_TOKEN = "https://etherscan.io/token/"


async def check_chain_id(rpc: EthRpc, chain: str, expected: int) -> None:
    """Raise `ChainMismatch` when the node serves another chain than configured."""
    actual = int(await rpc.call("eth_chainId", []), 16)
    if actual != expected:
        raise ChainMismatch(
            f"the endpoint of chain {chain!r} serves chain id {actual}, configured "
            f"collectors.stablecoins.evm.chains.{chain}.chain_id is {expected}")


async def check_decimals(
    rpc: EthRpc, registry: TokenRegistry, health: CollectorHealth
) -> dict[str, int]:
    """``{symbol: on-chain decimals}`` for every token whose ``decimals()`` differs from
    the configuration. Tokens whose call fails are skipped; a failing endpoint raises (the
    caller retries the whole check)."""
    mismatches: dict[str, int] = {}
    for token in registry:
        try:
            onchain = await rpc.eth_call_uint(token.address, DECIMALS)
        except RpcError as exc:  # the contract has no decimals(); transport errors propagate
            log.info("decimals() not checked",
                     extra={"token": token.symbol, "error": repr(exc)[:200]})
            continue
        if onchain is None or onchain == token.decimals:
            continue
        mismatches[token.symbol] = onchain
        log.error("token decimals mismatch",
                  extra={"collector": health.name, "token": token.symbol,
                         "onchain": onchain, "configured": token.decimals})
        await health.error(
            "decimals_mismatch",
            f"{token.symbol} decimals() = {onchain} on chain, {token.decimals} configured; "
            "keeping the configured value")
    return mismatches


async def supply_events(
    rpc: EthRpc, registry: TokenRegistry, health: CollectorHealth, block: int, *,
    block_time: float, observed_at: float, chain: str = "ethereum", source: str = SOURCE,
    id_prefix: str = "eth", token_link: str = ETHERSCAN_TOKEN,
) -> list[Event]:
    events: list[Event] = []
    for token in registry:
        try:
            supply = await rpc.eth_call_uint(token.address, TOTAL_SUPPLY, block)
        except Exception as exc:
            await health.error("total_supply", f"{token.symbol}: {exc}"[:300])
            continue
        if supply is None:
            continue
        events.append(Event(
            id=f"{id_prefix}:supply:{token.symbol}:{block}",
            chain=chain,
            source=source,
            observed_at=observed_at,
            occurred_at=block_time,
            position=block,
            payload=StablecoinSupply(
                token=token.symbol, chain=chain, track=token.track,
                contract=token.address, amount=Amount(supply, token.decimals),
                tx="", method="totalSupply", link=token_link + token.address,
            ),
        ))
    return events
