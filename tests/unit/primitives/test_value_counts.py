"""Counting values per nesting depth before decoding (``encoding.exceeded_depth``).

The count is the first step of decoding a peer's message: it must refuse more values
than allowed without building them, agree with what decoding would have built, and
answer the same in C (``_formatcheck``) and in Python.
"""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.primitives import encoding
from node.primitives.encoding import decode, encode, exceeded_depth
from node.primitives.errors import DecodeError

COUNTERS = {
    "c": encoding._exceeded_depth,
    "python": encoding._exceeded_depth_python,
}

values = st.recursive(
    st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=300) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=6),
    max_leaves=40,
)
limits = st.lists(st.integers(0, 12), max_size=6).map(tuple)


def counts_per_depth(value: object) -> list[int]:
    """Values at depth 1, 2, ... of a decoded value: what decoding it builds."""
    counts: list[int] = []
    level = [value]
    while True:
        level = [item for v in level if isinstance(v, list) for item in v]
        if not level:
            return counts
        counts.append(len(level))


def over_limit(value: object, max_values: tuple[int, ...]) -> set[int]:
    """The depths at which a decoded value holds more values than ``max_values`` allows."""
    return {
        depth
        for depth, count in enumerate(counts_per_depth(value), start=1)
        if depth > len(max_values) or count > max_values[depth - 1]
    }


def outcome(count, data: bytes, max_values: tuple[int, ...]) -> object:
    try:
        return count(data, max_values)
    except (DecodeError, ValueError):
        return "refused"


def test_the_c_counter_is_built_and_used():
    assert encoding._exceeded_depth is not None


@settings(max_examples=400, deadline=None)
@given(values, limits)
def test_a_value_within_its_limits_passes_and_one_over_them_is_refused(value, max_values):
    """The answer is a depth over its limit (the first one met in byte order), or None
    when there is none."""
    answer = exceeded_depth(encode(value), max_values)
    over = over_limit(value, max_values)
    assert answer in over if over else answer is None


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_exact_counts_pass(value):
    """The counts of what decode builds, as limits, are enough; one less at any depth is not."""
    data = encode(value)
    counts = tuple(counts_per_depth(value))
    assert exceeded_depth(data, counts) is None
    for depth in range(len(counts)):
        fewer = counts[:depth] + (counts[depth] - 1,) + counts[depth + 1 :]
        assert exceeded_depth(data, fewer) == depth + 1
    if counts:
        assert exceeded_depth(data, counts[:-1]) == len(counts)


def _mangled(data: bytes, draw) -> bytes:
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["cut", "append", "flip"]))
        if action == "cut" and buf:
            del buf[draw(st.integers(0, len(buf) - 1)) :]
        elif action == "append":
            buf += draw(st.binary(min_size=1, max_size=4))
        elif buf:
            buf[draw(st.integers(0, len(buf) - 1))] = draw(st.integers(0, 255))
    return bytes(buf)


@st.composite
def byte_strings(draw) -> bytes:
    choice = draw(st.integers(0, 2))
    if choice == 0:
        return draw(st.binary(max_size=64))
    data = encode(draw(values))
    return data if choice == 1 else _mangled(data, draw)


@settings(max_examples=1000, deadline=None)
@given(byte_strings(), limits)
def test_c_and_python_give_the_same_answer_for_any_bytes(data, max_values):
    assert outcome(COUNTERS["c"], data, max_values) == outcome(COUNTERS["python"], data, max_values)


@settings(max_examples=500, deadline=None)
@given(byte_strings())
def test_whatever_passes_the_count_is_one_value_or_refused_by_decode(data):
    """Passing the count never lets through bytes that are not one value: decode either
    refuses them for their form (shortest encoding, UTF-8) or returns one value."""
    big = (10**6,) * 8
    try:
        passed = exceeded_depth(data, big) is None
    except DecodeError:
        with pytest.raises(DecodeError):
            decode(data)
        return
    if passed:
        try:
            decode(data)
        except DecodeError as exc:
            assert "not part of the format" not in exc.message


@pytest.mark.parametrize("count", COUNTERS.values(), ids=list(COUNTERS))
@pytest.mark.parametrize(
    "data, why",
    [
        (b"", "truncated"),
        (b"\x92\x01", "truncated"),
        (b"\xdd\x00\x00\x00\x05\x90", "truncated"),  # 5 elements claimed, 1 byte left
        (b"\xc4\x05ab", "truncated"),
        (b"\xdc\x00", "truncated"),
        (b"\x90\x90", "trailing bytes"),
        (b"\x91\x80", "map"),
        (msgpack.packb([1, {"a": 1}]), "map"),
        (b"\x91\xc0", "bool/nil"),
        (b"\x91\xc3", "bool/nil"),
        (b"\x91\xcb" + bytes(8), "float"),
        (b"\x91\xd4\x01\x02", "ext"),
        (b"\x91\xc1", "reserved marker"),
    ],
)
def test_bytes_that_are_not_one_value_are_refused(count, data, why):
    with pytest.raises((DecodeError, ValueError), match=why):
        count(data, (5, 5, 5))


@pytest.mark.parametrize("count", COUNTERS.values(), ids=list(COUNTERS))
def test_a_flood_is_refused_at_its_first_header(count):
    """4 MiB of empty arrays: the count is refused at the array's header, not read."""
    flood = b"\x92\xa3inv\xdd" + (4 * 2**20).to_bytes(4, "big") + b"\x90" * (4 * 2**20)
    assert count(flood, (2, 50_000, 100_000)) == 2
    # and one array per depth, deeper than allowed
    deep = b"\x91" * 10 + b"\x90"
    assert count(deep, (1, 1, 1)) == 4


@pytest.mark.parametrize("count", COUNTERS.values(), ids=list(COUNTERS))
def test_counts_add_up_over_all_arrays_of_a_depth(count):
    data = encode([[1, 2], [3], [4, 5, 6]])
    assert count(data, (3, 6)) is None
    assert count(data, (3, 5)) == 2
    assert count(data, (2, 6)) == 1
    assert count(encode([[], [], []]), (3,)) is None  # empty arrays add nothing deeper


def test_more_depths_than_supported_is_a_caller_error():
    with pytest.raises(ValueError):
        exceeded_depth(b"\x90", (1,) * (encoding.MAX_LIMIT_DEPTHS + 1))
