"""The chaos schedule (scripts/testnet_chaos.py): one seed, one schedule, and its rules hold
for every seed, duration, set of faults and network size."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from scripts.testnet_chaos import EVENT_GAP, FAULTS, schedule

SKEW_LIMIT = 30.0


def test_one_seed_one_schedule():
    kinds = ["kill", "partition", "restart", "clock-skew"]
    first = schedule(random.Random(5), 60, kinds, 4, SKEW_LIMIT)
    assert first == schedule(random.Random(5), 60, kinds, 4, SKEW_LIMIT)
    assert first != schedule(random.Random(6), 60, kinds, 4, SKEW_LIMIT)
    assert {f.kind for f in first} == set(kinds)


@settings(max_examples=200, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    duration=st.floats(1, 120),
    kinds=st.lists(st.sampled_from(FAULTS), min_size=1, unique=True),
    count=st.integers(1, 32),
)
def test_schedule_rules(seed, duration, kinds, count):
    faults = schedule(random.Random(seed), duration, kinds, count, SKEW_LIMIT)
    down_until = [0.0] * count
    partition_until = 0.0
    last = -1.0
    for fault in faults:
        assert 0 <= fault.at < duration and fault.at >= last
        last = fault.at
        assert fault.kind in kinds
        if fault.kind == "partition":
            assert fault.at >= partition_until  # one partition at a time
            assert fault.groups is not None
            assert sorted(sum(fault.groups, [])) == list(range(count))  # two sides, everyone
            assert all(fault.groups) and len(fault.groups) == 2
            partition_until = fault.at + fault.span
        elif fault.kind in ("kill", "restart", "clock-skew"):
            assert fault.node is not None and 0 <= fault.node < count
            assert down_until[fault.node] <= fault.at  # never hit a node that is down
            up = sum(1 for t in down_until if t <= fault.at)
            assert up >= 2  # someone stays up
            if fault.kind == "kill":
                assert 1.0 <= fault.span <= 4.0
                down_until[fault.node] = fault.at + fault.span
            assert abs(fault.offset) <= SKEW_LIMIT
            assert fault.offset == 0 or fault.kind == "clock-skew"
    if duration > 2 * EVENT_GAP[1] and count >= 2:
        assert faults  # a run of some length has faults
