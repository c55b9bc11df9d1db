"""Concentration measures pinned by hand-computed cases (unknown blocks in the denominator
only; the Nakamoto coefficient needs strictly more than half), the measures against their
definitions computed another way, and the one-pass `measures` agreeing with the
individual functions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from convmon.monitor import concentration as c
from tests.aggregates import oracle

# (counts, top1, top2, top3, HHI on 0..10000, Nakamoto), worked out by hand.
HAND_COMPUTED = [
    pytest.param({"a": 5, "b": 3, "c": 2}, 0.5, 0.8, 1.0, 3800.0, 2,
                 id="a holds exactly half: not a majority alone"),
    pytest.param({"a": 51, "b": 49}, 0.51, 1.0, 1.0, 5002.0, 1, id="51 of 100 is a majority"),
    pytest.param({"a": 50, "b": 50}, 0.5, 1.0, 1.0, 5000.0, 2, id="tie at 50%"),
    pytest.param({"a": 25, "b": 25, "c": 25, "d": 25}, 0.25, 0.5, 0.75, 2500.0, 3,
                 id="two of four equal pools hold exactly half"),
    pytest.param({"a": 4, "b": 3, "unknown": 3}, 0.4, 0.7, 0.7, 2500.0, 2,
                 id="unknown is not an entity"),
    pytest.param({"a": 50, "unknown": 50}, 0.5, 0.5, 0.5, 2500.0, 0,
                 id="known blocks reach exactly half: no coefficient"),
    pytest.param({"a": 50, "b": 1, "unknown": 49}, 0.5, 0.51, 0.51, 2501.0, 2,
                 id="the one block past half"),
    pytest.param({"foundryusa": 300, "antpool": 220, "viabtc": 100, "f2pool": 100,
                  "unknown": 80}, 0.375, 0.65, 0.775, 2475.0, 2, id="a day-like window"),
    pytest.param({"a": 7}, 1.0, 1.0, 1.0, 10000.0, 1, id="one pool"),
    pytest.param({"unknown": 10}, 0.0, 0.0, 0.0, 0.0, 0, id="only unknown"),
    pytest.param({}, 0.0, 0.0, 0.0, 0.0, 0, id="empty window"),
    pytest.param({"a": 3, "b": 0}, 1.0, 1.0, 1.0, 10000.0, 1, id="a zero count is no entity"),
]


@pytest.mark.parametrize(("counts", "top1", "top2", "top3", "hhi", "nakamoto"), HAND_COMPUTED)
def test_hand_computed(
    counts: dict[str, int], top1: float, top2: float, top3: float, hhi: float, nakamoto: int
) -> None:
    assert c.top_share(counts, 1) == pytest.approx(top1)
    assert c.top_share(counts, 2) == pytest.approx(top2)
    assert c.top_share(counts, 3) == pytest.approx(top3)
    assert c.hhi(counts) == pytest.approx(hhi)
    assert c.nakamoto(counts) == nakamoto
    assert c.measures(counts) == pytest.approx({
        "top1_share": top1, "top2_share": top2, "top3_share": top3, "hhi": hhi,
        "nakamoto": nakamoto,
    })


def test_shares_include_unknown_and_skip_empty() -> None:
    assert c.shares({"a": 3, "unknown": 1, "b": 0}) == {"a": 0.75, "unknown": 0.25}
    assert c.shares({}) == {}


COUNTS = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "unknown"]),
                         st.integers(min_value=0, max_value=2016))


@given(COUNTS)
def test_measures_match_their_definitions(counts: dict[str, int]) -> None:
    for n in (1, 2, 3):
        assert c.top_share(counts, n) == pytest.approx(float(oracle.top_share(counts, n)))
    assert c.hhi(counts) == pytest.approx(float(oracle.hhi(counts)))
    assert c.nakamoto(counts) == oracle.nakamoto(counts)


@given(COUNTS)
def test_measures_match_the_individual_functions(counts: dict[str, int]) -> None:
    m = c.measures(counts)
    assert m["top1_share"] == c.top_share(counts, 1)
    assert m["top2_share"] == c.top_share(counts, 2)
    assert m["top3_share"] == c.top_share(counts, 3)
    assert m["hhi"] == c.hhi(counts)
    assert m["nakamoto"] == c.nakamoto(counts)
