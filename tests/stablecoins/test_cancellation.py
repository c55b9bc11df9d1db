"""A cancellation that web3's request path swallowed still stops the EVM collector.

On Python 3.11 ``asyncio.wait_for`` (used inside web3's providers) can return a result that
raced with the task's cancellation instead of raising it; the request then shows only in
``Task.cancelling()``. Every chain call goes through `EthRpc.call`, which checks it, so the
loops that call the chain once per token or per range stop instead of calling on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from convmon.collectors.stablecoins.evm.reconcile import check_decimals, supply_events
from convmon.collectors.stablecoins.evm.rpc import EthRpc
from convmon.collectors.stablecoins.evm.tokens import DEFAULT_TOKENS, TokenRegistry


class SwallowingProvider:
    """Answers every request after a long wait, and answers instead of raising when
    cancelled during it (what a racing ``wait_for`` does)."""

    def __init__(self) -> None:
        self.requests = 0
        self.waiting = asyncio.Event()

    async def make_request(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.requests += 1
        self.waiting.set()
        answer = {"jsonrpc": "2.0", "id": self.requests, "result": "0x" + "00" * 31 + "06"}
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return answer
        return answer


class NoHealth:
    async def error(self, *_args: Any) -> None:
        raise AssertionError("no call failed")


async def _cancel_during_first_call(coro: Any, provider: SwallowingProvider) -> None:
    task = asyncio.create_task(coro)
    await provider.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert provider.requests == 1


async def test_supply_events_stop_after_a_swallowed_cancellation() -> None:
    registry = TokenRegistry(DEFAULT_TOKENS)
    assert len(list(registry)) > 1
    provider = SwallowingProvider()
    await _cancel_during_first_call(
        supply_events(EthRpc(provider), registry, NoHealth(), 1,  # type: ignore[arg-type]
                      block_time=0.0, observed_at=0.0),
        provider,
    )


async def test_decimals_check_stops_after_a_swallowed_cancellation() -> None:
    registry = TokenRegistry(DEFAULT_TOKENS)
    provider = SwallowingProvider()
    await _cancel_during_first_call(
        check_decimals(EthRpc(provider), registry, NoHealth()), provider)  # type: ignore[arg-type]
