"""WAN profiles (scripts/wan.py): seeded, stable when nodes are added, within their ranges."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scripts import wan


@given(st.sampled_from(wan.PROFILES), st.integers(0, 2**32), st.integers(2, 12))
def test_draws_are_seeded_and_a_new_node_changes_no_other_pair(profile, seed, n) -> None:
    drawn = wan.draw(profile, seed, n)
    assert drawn == wan.draw(profile, seed, n)
    bigger = wan.draw(profile, seed, n + 1)
    assert {k: v for k, v in bigger.items() if k[1] < n} == drawn
    assert wan.pair_link(profile, seed, 1, 0) == drawn[(0, 1)]
    for spec in drawn.values():
        assert 0 < spec.delay <= 0.2 and 0 <= spec.jitter <= spec.delay
        assert 0 <= spec.loss < 0.01


def test_world_spans_the_globe_and_lan_does_not() -> None:
    world = [s.delay for s in wan.draw("world", 1, 16).values()]
    lan = [s.delay for s in wan.draw("lan", 1, 16).values()]
    assert min(world) < 0.03 and max(world) > 0.07
    assert max(lan) < 0.001


def test_an_unknown_profile_is_refused() -> None:
    with pytest.raises(ValueError, match="no WAN profile"):
        wan.pair_link("moon", 0, 0, 1)
