"""A cancellation that a library swallowed still stops the EVM collector's loops.

On Python 3.11 ``asyncio.wait_for`` (used inside web3's request path) can return a result
that raced with the task's cancellation instead of raising it; the request then shows only
in ``Task.cancelling()``. Loops that call the chain once per token or per message must
check it, or a shutdown waits for them forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from convmon.collectors.stablecoins.evm.reconcile import check_decimals, supply_events
from convmon.collectors.stablecoins.evm.tokens import DEFAULT_TOKENS, TokenRegistry


class SwallowingRpc:
    """Answers every call after a long wait, and answers instead of raising when cancelled
    during it (what a racing ``wait_for`` does)."""

    def __init__(self) -> None:
        self.calls = 0
        self.waiting = asyncio.Event()

    async def eth_call_uint(self, *_args: Any) -> int:
        self.calls += 1
        self.waiting.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return 6
        return 6


class NoHealth:
    async def error(self, *_args: Any) -> None:
        raise AssertionError("no call failed")


async def _cancel_during_first_call(coro: Any, rpc: SwallowingRpc) -> None:
    task = asyncio.create_task(coro)
    await rpc.waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert rpc.calls == 1


async def test_supply_events_stop_after_a_swallowed_cancellation() -> None:
    registry = TokenRegistry(DEFAULT_TOKENS)
    assert len(list(registry)) > 1
    rpc = SwallowingRpc()
    await _cancel_during_first_call(
        supply_events(rpc, registry, NoHealth(), 1, block_time=0.0, observed_at=0.0),  # type: ignore[arg-type]
        rpc,
    )


async def test_decimals_check_stops_after_a_swallowed_cancellation() -> None:
    registry = TokenRegistry(DEFAULT_TOKENS)
    rpc = SwallowingRpc()
    await _cancel_during_first_call(check_decimals(rpc, registry, NoHealth()), rpc)  # type: ignore[arg-type]
