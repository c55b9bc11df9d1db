"""Template providers in the aggregates: the mapping from change events (idempotent), the
windows folded by provider, and the metrics."""

from __future__ import annotations

from convmon.monitor import concentration
from convmon.monitor.events import BitcoinTemplateCluster, Event
from convmon.rules.aggregates.providers import provider_stats
from tests.aggregates.conftest import MakeStore
from tests.aggregates.factories import T0, block

CYCLE = ["foundryusa", "poolin", "novablock", "viabtc", "f2pool"] * 3 + [
    "foundryusa", "poolin", "novablock", "viabtc", "foundryusa"]


def change(pool: str, provider: str, height: int = 1) -> Event:
    return Event(
        id=f"btc:template:{pool}:{provider}:{height}", chain="bitcoin", source="test",
        observed_at=T0, occurred_at=T0, position=height,
        payload=BitcoinTemplateCluster(pool=pool, provider=provider, confidence=1.0,
                                       matched_heights=5, observed_heights=5, height=height),
    )


def test_provider_stats_fold_pools_and_keep_unknown_unknown() -> None:
    pools = {"poolin": 4, "novablock": 4, "foundryusa": 5, "unknown": 7}
    stats = provider_stats(pools, {"novablock": "poolin"})
    assert stats["providers"]["poolin"] == {"blocks": 8, "share": 0.4, "pools": 2}
    assert stats["providers"]["unknown"]["blocks"] == 7
    assert stats["provider_nakamoto"] == concentration.nakamoto({"poolin": 8, "foundryusa": 5,
                                                                  "unknown": 7})
    assert stats["provider_nakamoto"] == 2 and concentration.nakamoto(pools) == 3


async def test_windows_by_provider_follow_the_change_events(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply([block(900_000 + i, CYCLE[i % len(CYCLE)]) for i in range(200)])
    before = (await store.snapshot(["btc"]))["btc"]
    assert before["template_providers_known"] is False
    w = before["windows"]["1008"]
    assert w["provider_nakamoto"] == w["nakamoto"] == 3
    assert await store.apply([change("novablock", "poolin")]) == [True]
    assert await store.apply([change("novablock", "poolin")]) == [False]  # a replay
    after = (await store.snapshot(["btc"]))["btc"]
    w = after["windows"]["1008"]
    assert after["template_providers_known"] is True
    assert w["nakamoto"] == 3 and w["provider_nakamoto"] == 2
    assert w["providers"]["poolin"]["blocks"] == 80 and w["providers"]["poolin"]["pools"] == 2
    assert w["provider_hhi"] == concentration.hhi({"poolin": 80, "foundryusa": 50, "viabtc": 40,
                                                   "f2pool": 30})
    # It leaves poolin's cluster: the windows follow.
    assert await store.apply([change("novablock", "novablock", 2)]) == [True]
    w = (await store.snapshot(["btc"]))["btc"]["windows"]["1008"]
    assert w["provider_nakamoto"] == 3


async def test_provider_metrics_appear_once_a_mapping_is_known(make_store: MakeStore) -> None:
    store = await make_store()
    await store.apply([block(900_000 + i, CYCLE[i % len(CYCLE)]) for i in range(40)])

    def samples(metrics: list) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        out = {}
        for family in metrics:
            if family.name.startswith("convmon_btc_template_provider"):
                for s in family.samples:
                    out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    assert samples(await store.state_metrics()) == {}
    await store.apply([change("novablock", "poolin")])
    found = samples(await store.state_metrics())
    key = ("convmon_btc_template_provider_share_ratio",
           (("provider", "poolin"), ("window", "144")))
    assert found[key] == 0.4
    assert found[("convmon_btc_template_provider_nakamoto_coefficient",
                  (("window", "144"),))] == 2
