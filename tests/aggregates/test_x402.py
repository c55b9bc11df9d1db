"""x402 payment aggregates with a manual clock: per chain/facilitator counts, volumes and
unique payers/payees over 1 h / 24 h / 7 d, redelivery, roll-over, the counters and
gauges, and every key the scripts touch sharing the aggregates' hash tag."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.metrics_core import Metric
from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.events import Amount, Event, PaymentX402
from convmon.monitor.keys import Keys
from convmon.rules.aggregates.payments import micro_units
from tests.aggregates.conftest import MakeStore

pytestmark = pytest.mark.all_redis  # the Lua scripts run on 6.2 too

HOUR = 3600
DAY = 86_400


def payment(n: int, when: float, *, payer: str, payee: str = "0xpayee", units: int = 10_000,
            facilitator: str = "coinbase", chain: str = "base", decimals: int = 6,
            token: str = "USDC", track: str = "regulated") -> Event:
    return Event(
        id=f"x402:{chain}:0x{n:064x}:1", chain=chain, source=f"stablecoins/{chain}",
        observed_at=when, occurred_at=when, position=n,
        payload=PaymentX402(
            chain=chain, token=token, contract="0x833589fcd6edb6e08f4c7c32d4f71b54bda02913",
            payer=payer, payee=payee, amount=Amount(units, decimals), facilitator=facilitator,
            sender="0xdbdf3d8ed80f84c35d01c6c9f9271761bad90ba6", tx=f"0x{n:064x}",
            log_index=2, track=track),
    )


def samples(metrics: list[Metric], name: str) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for m in metrics for s in m.samples
            if s.name == name}


def test_amounts_are_kept_in_micro_units() -> None:
    assert micro_units(1_234_567, 6) == 1_234_567
    assert micro_units(5, 2) == 50_000
    assert micro_units(10**18 + 999, 18) == 10**6


async def test_windows_uniques_and_redelivery(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    now = clock.now()
    batch = [payment(i, now, payer=f"0xp{i % 40}", payee=f"0xq{i % 3}", units=250_000)
             for i in range(100)]
    batch.append(payment(100, now, payer="0xp0", facilitator="unknown"))
    assert all(await store.apply(batch))
    assert not any(await store.apply(batch))  # redelivered: nothing changes
    clock.advance(2 * HOUR)
    assert await store.apply([payment(200, clock.now(), payer="0xnew", units=1_000_000)])
    x402 = (await store.snapshot(["payments"]))["payments"]["x402"]
    assert set(x402) == {"base/coinbase", "base/unknown"}
    cb = x402["base/coinbase"]
    assert (cb["count_1h"], cb["volume_1h"], cb["payers_1h"], cb["payees_1h"]) == (1, 1.0, 1, 1)
    assert (cb["count_24h"], cb["volume_24h"]) == (101, 26.0)
    assert cb["payers_24h"] == pytest.approx(41, abs=1)  # HyperLogLog estimate
    assert cb["payees_24h"] == 4 and cb["since_last_s"] == 0.0
    assert cb["volume_by_token"] == {"USDC": 26.0}
    unknown = x402["base/unknown"]
    assert (unknown["count_24h"], unknown["since_last_s"]) == (1, 2 * HOUR)
    clock.advance(DAY)
    cb = (await store.snapshot(["payments"]))["payments"]["x402"]["base/coinbase"]
    assert (cb["count_24h"], cb["count_7d"], cb["volume_7d"]) == (0, 101, 26.0)
    clock.advance(7 * DAY)
    cb = (await store.snapshot(["payments"]))["payments"]["x402"]["base/coinbase"]
    assert (cb["count_7d"], cb["payers_7d"]) == (0, 0)


async def test_counters_and_gauges(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    now = clock.now()
    await store.apply([payment(1, now, payer="0xa", units=1_500_000),
                       payment(2, now, payer="0xb", units=500_000),
                       payment(3, now, payer="0xa", chain="ethereum", facilitator="unknown")])
    metrics = await store.state_metrics()
    assert samples(metrics, "convmon_payments_x402_total") == {
        ("base", "coinbase"): 2.0, ("ethereum", "unknown"): 1.0}
    assert samples(metrics, "convmon_payments_x402_volume_tokens_total") == {
        ("base", "coinbase", "USDC"): 2.0, ("ethereum", "unknown", "USDC"): 0.01}
    payers = samples(metrics, "convmon_payments_x402_unique_payers")
    assert payers[("base", "coinbase", "1h")] == 2.0 and payers[("base", "coinbase", "7d")] == 2.0
    assert samples(metrics, "convmon_payments_x402_last_payment_age_seconds")[
        ("ethereum", "unknown")] == 0.0
    assert samples(metrics, "convmon_payments_x402_track_share_ratio")[
        ("regulated", "24h")] == 1.0


async def test_track_share_measures_what_machines_pay_with(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    now = clock.now()
    await store.apply([
        payment(1, now, payer="0xa", units=3_000_000),
        payment(2, now, payer="0xb", units=1_000_000, token="USD1", track="machine-native",
                facilitator="payai"),
    ])
    share = (await store.snapshot(["payments"]))["payments"]["track_share"]
    assert share["1h"] == {"regulated": 0.75, "machine-native": 0.25}
    assert share["7d"] == share["1h"]
    clock.advance(2 * DAY)
    assert "24h" not in (await store.snapshot(["payments"]))["payments"]["track_share"]


async def test_every_key_shares_the_aggregates_hash_tag(
    make_store: MakeStore, clock: ManualClock, redis: Redis, keys: Keys
) -> None:
    store = await make_store()
    await store.apply([payment(1, clock.now(), payer="0xa")])
    written: list[Any] = [k async for k in redis.scan_iter(match=f"{keys.prefix}*x402*")]
    # marker, totals, last seen, token tracks, 2 granularities x (hash + 2 HLLs)
    assert len(written) == 10
    assert all(b"{agg:x402}" in key for key in written)
    assert all(key.startswith(keys.aggregate_base("x402").encode()) for key in written)


async def test_event_context_gives_a_payment_its_amount_and_usd_at_peg(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store()
    ctx = await store.event_context(payment(1, clock.now(), payer="0xa", units=2_500_000))
    assert (ctx["amount"], ctx["amount_units"], ctx["decimals"]) == (2.5, "2500000", 6)
    assert (ctx["usd"], ctx["usd_source"]) == (2.5, "peg")
    assert (ctx["kind"], ctx["facilitator"], ctx["chain"]) == ("payment.x402", "coinbase", "base")
