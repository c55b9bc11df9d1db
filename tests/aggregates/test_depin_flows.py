"""The ``depin_flows`` root on the real Redis: emissions against burns over 24 h / 7 d / 30 d,
revenue at the price of the burn's time (none without one), week-over-week change, burn
regularity, supply reconciliation and its drift, idempotent redelivery, and the metrics."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from convmon.monitor.clock import ManualClock
from convmon.monitor.events import Amount, DepinBurn, DepinEmission, DepinSupply, Event
from convmon.monitor.keys import Keys
from tests.aggregates.conftest import MakeStore
from tests.aggregates.factories import T0, price

HOUR, DAY = 3600.0, 86400.0
HNT = "hntyVP6YFm1Hg25TN9WGLqM12b8TQmcknKrdu1oxWux"


def flow(kind: str, seq: int, t: float, units: int, *, token: str = "HNT", decimals: int = 8,
         purpose: str = "rewards", network: str = "helium", credits: bool = False) -> Event:
    cls = DepinEmission if kind == "emission" else DepinBurn
    return Event(
        id=f"sol:depin:{kind}:sig{seq}:1.0",
        chain="solana",
        source="solana/test",
        observed_at=t,
        occurred_at=t,
        position=seq,
        payload=cls(
            network=network, token=token, mint=HNT, amount=Amount(units, decimals),
            purpose=purpose, program="prog", credits=credits, tx=f"sig{seq}",
            instruction_path="1.0", method="mintTo" if kind == "emission" else "burn",
            slot=seq, block_time=int(t),
        ),
    )


def supply(seq: int, t: float, units: int) -> Event:
    return Event(
        id=f"sol:depin:supply:{HNT}:{seq}", chain="solana", source="solana/test",
        observed_at=t, occurred_at=t, position=seq,
        payload=DepinSupply(network="helium", token="HNT", mint=HNT,
                            amount=Amount(units, 8), slot=seq),
    )


async def hnt(store: Any) -> dict[str, Any]:
    snap = await store.snapshot(["depin_flows"])
    token: dict[str, Any] = snap["depin_flows"]["tokens"]["HNT"]
    return token


async def test_windows_ratio_and_net_emission(make_store: MakeStore, clock: ManualClock) -> None:
    store = await make_store()
    now = T0
    events = [
        flow("emission", 1, now - 40 * DAY, 999 * 10**8),  # outside every window
        flow("emission", 2, now - 20 * DAY, 100 * 10**8),
        flow("emission", 3, now - 3 * DAY, 50 * 10**8),
        flow("emission", 4, now - 2 * HOUR, 10 * 10**8),
        flow("burn", 5, now - 5 * HOUR, 4 * 10**8, purpose="data_credits"),
        flow("burn", 6, now - 10 * DAY, 200 * 10**8, purpose="data_credits"),
        flow("burn", 7, now - 1 * HOUR, 1 * 10**8, purpose="unknown"),
    ]
    assert all(await store.apply(events))
    assert not any(await store.apply(events))  # redelivery changes nothing
    t = await hnt(store)
    assert (t["emitted_24h"], t["burned_24h"]) == (10.0, 5.0)
    assert (t["emitted_7d"], t["burned_7d"]) == (60.0, 5.0)
    assert (t["emitted_30d"], t["burned_30d"]) == (160.0, 205.0)
    assert t["net_emission_30d"] == -45.0 and t["net_emission_24h"] == 5.0
    assert t["burn_emission_ratio_24h"] == 0.5
    assert t["burn_emission_ratio_30d"] == 205.0 / 160.0
    assert t["emitted_total"] == 1159.0 and t["burned_total"] == 205.0
    assert t["burned_by_purpose"] == {"data_credits": 204.0, "unknown": 1.0}
    assert t["since_last_burn_s"] == HOUR and t["network"] == "helium"
    assert t["daily_mean_emitted_30d"] == 160.0 / 30.0  # 40 days of history: 30 covered
    # Time passes: the 24 h window empties, nothing else needed to move it.
    clock.advance(DAY)
    later = await hnt(store)
    assert later["emitted_24h"] == 0.0 and later["burn_emission_ratio_24h"] is None


async def test_revenue_uses_the_price_at_burn_time(
    make_store: MakeStore, clock: ManualClock
) -> None:
    store = await make_store(price_staleness_s=600.0)
    now = T0
    await store.apply([price("HNT", 2.0, now - 8 * DAY)])
    await store.apply([flow("burn", 1, now - 8 * DAY + 60, 100 * 10**8)])  # priced at 2.0
    await store.apply([price("HNT", 5.0, now - HOUR)])
    await store.apply([flow("burn", 2, now - HOUR + 30, 10 * 10**8)])  # priced at 5.0
    await store.apply([flow("burn", 3, now - 3 * DAY, 7 * 10**8)])  # no price then
    # Fetched late (after the 5.0 price): valued at the 2.0 of its own time.
    await store.apply([flow("burn", 4, now - 8 * DAY + 120, 50 * 10**8)])
    t = await hnt(store)
    assert t["revenue_usd_24h"] == 50.0
    assert t["revenue_usd_7d"] == 50.0 and t["unpriced_burns_7d"] == 1
    assert t["revenue_usd_prev_7d"] == 300.0
    assert t["revenue_wow_change"] == 50.0 / 300.0 - 1.0
    assert t["burned_wow_change"] == 17.0 / 150.0 - 1.0


async def test_no_price_known_means_no_revenue(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply([flow("burn", 1, T0 - HOUR, 10**8, token="HONEY", decimals=9,
                            network="hivemapper")])
    snap = await store.snapshot(["depin_flows"])
    honey = snap["depin_flows"]["tokens"]["HONEY"]
    assert honey["revenue_usd_24h"] is None and honey["burned_24h"] == 0.1
    assert honey["revenue_wow_change"] is None


async def test_burn_days_and_history(make_store: MakeStore) -> None:
    store = await make_store()
    events = [flow("burn", i, T0 - i * DAY - HOUR, 10**8) for i in range(10)]
    events += [flow("burn", 100 + i, T0 - 2 * HOUR - i * 60, 10**8) for i in range(3)]
    await store.apply(events)
    t = await hnt(store)
    assert t["burn_days_30d"] == 10
    assert t["history_s"] == 9 * DAY + HOUR
    assert t["daily_mean_emitted_30d"] == 0.0


async def test_supply_drift_against_the_flows_seen(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply([supply(1, T0 - 3 * HOUR, 1000 * 10**8)])
    t = await hnt(store)
    assert t["supply"] == 1000.0 and t["supply_drift"] == 0.0
    await store.apply([flow("emission", 2, T0 - 2 * HOUR, 30 * 10**8),
                       flow("burn", 3, T0 - 2 * HOUR, 10 * 10**8)])
    await store.apply([supply(4, T0 - HOUR, 1020 * 10**8)])
    assert (await hnt(store))["supply_drift"] == 0.0  # every flow was seen
    await store.apply([supply(5, T0 - HOUR // 2, 1025 * 10**8)])  # 5 HNT minted unseen...
    assert (await hnt(store))["supply_drift"] == 5.0
    await store.apply([supply(0, T0 - 4 * HOUR, 1 * 10**8)])  # an older sample arrives late
    assert (await hnt(store))["supply"] == 1025.0
    # ... until the flow (slot 5, still queued when the sample was taken) is applied.
    await store.apply([flow("emission", 5, T0 - HOUR // 2, 5 * 10**8)])
    assert (await hnt(store))["supply_drift"] == 0.0
    # A flow older than the first sample arriving late changes nothing either.
    await store.apply([flow("burn", 0, T0 - 4 * HOUR, 7 * 10**8)])
    assert (await hnt(store))["supply_drift"] == 0.0
    # A flow newer than the last sample waits for the next sample.
    await store.apply([flow("emission", 6, T0 - 60, 2 * 10**8)])
    assert (await hnt(store))["supply_drift"] == 0.0
    await store.apply([supply(7, T0 - 30, 1027 * 10**8)])
    assert (await hnt(store))["supply_drift"] == 0.0


async def test_credits_are_their_own_series_and_metrics(
    make_store: MakeStore, redis: Redis, keys: Keys
) -> None:
    store = await make_store()
    await store.apply([
        flow("burn", 1, T0 - HOUR, 5 * 10**8, purpose="data_credits"),
        flow("emission", 2, T0 - HOUR, 500_000, token="DC", decimals=0, credits=True,
             purpose="data_credits"),
        flow("burn", 3, T0 - HOUR, 200_000, token="DC", decimals=0, credits=True,
             purpose="network_usage"),
        flow("emission", 4, T0 - HOUR, 10 * 10**8),
    ])
    snap = await store.snapshot(["depin_flows"])
    dc = snap["depin_flows"]["tokens"]["DC"]
    assert dc["credits"] and dc["emitted_24h"] == 500_000.0 and dc["burned_24h"] == 200_000.0
    families = {f.name: f for f in await store.state_metrics()}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for name in ("convmon_depin_emitted_tokens", "convmon_depin_burned_tokens",
                            "convmon_depin_net_emission_tokens",
                            "convmon_depin_burn_emission_ratio")
               for s in families[name].samples}
    assert samples[("convmon_depin_emitted_tokens_total",
                    (("network", "helium"), ("token", "HNT")))] == 10.0
    assert samples[("convmon_depin_burned_tokens_total",
                    (("network", "helium"), ("purpose", "network_usage"), ("token", "DC")))] \
        == 200_000.0
    assert samples[("convmon_depin_net_emission_tokens",
                    (("network", "helium"), ("token", "HNT"), ("window", "30d")))] == 5.0
    assert samples[("convmon_depin_burn_emission_ratio",
                    (("network", "helium"), ("token", "HNT"), ("window", "24h")))] == 0.5
    assert not families["convmon_depin_revenue_usd"].samples  # no HNT price known
    cluster_safe = await redis.keys(f"{keys.prefix}:*depin:flow:*")
    assert cluster_safe and all(b"{agg:market}" in k for k in cluster_safe)
