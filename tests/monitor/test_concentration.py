"""Concentration measures: known values, unknown in the denominator only, and the one-pass
`measures` agreeing with the individual functions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from convmon.monitor import concentration as c


def test_known_values() -> None:
    counts = {"foundryusa": 300, "antpool": 220, "viabtc": 100, "unknown": 80, "f2pool": 100}
    assert c.top_share(counts, 2) == 520 / 800
    assert c.nakamoto(counts) == 2
    assert round(c.hhi(counts), 6) == round(
        sum((100 * v / 800) ** 2 for k, v in counts.items() if k != "unknown"), 6
    )
    assert c.nakamoto({"unknown": 10}) == 0
    assert c.shares({}) == {}


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "unknown"]),
                       st.integers(min_value=0, max_value=2016)))
def test_measures_match_the_individual_functions(counts: dict[str, int]) -> None:
    m = c.measures(counts)
    assert m["top1_share"] == c.top_share(counts, 1)
    assert m["top2_share"] == c.top_share(counts, 2)
    assert m["top3_share"] == c.top_share(counts, 3)
    assert m["hhi"] == c.hhi(counts)
    assert m["nakamoto"] == c.nakamoto(counts)
