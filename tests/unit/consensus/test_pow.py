"""Compact bits, work and the ASERT retarget (node/consensus/pow.py, ChainState.next_bits)."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.consensus.params import GENESIS_TIME, MAIN, REGTEST, TESTNET
from node.consensus.pow import (
    asert_target,
    bits_to_target,
    block_work,
    hash_meets_target,
    target_to_bits,
)
from node.primitives.errors import BlockValidationError
from tests.framework.blocktools import make_params, mine_block
from tests.framework.chains import opened_chain

# --- compact bits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bits, target",
    [
        # Bitcoin genesis
        (0x1D00FFFF, 0x00000000FFFF0000000000000000000000000000000000000000000000000000),
        # Bitcoin regtest
        (0x207FFFFF, 0x7FFFFF0000000000000000000000000000000000000000000000000000000000),
        # Bitcoin block 100000 era
        (0x1B0404CB, 0x00000000000404CB000000000000000000000000000000000000000000000000),
    ],
    ids=hex,
)
def test_bits_to_target_bitcoin_known_values(bits, target):
    """Bitcoin's well-known compact values expand to their targets and compress back."""
    assert bits_to_target(bits) == target
    assert target_to_bits(target) == bits


@pytest.mark.parametrize(
    "bits, target, compact",
    [
        (0x01123456, 0x12, 0x01120000),
        (0x02123456, 0x1234, 0x02123400),
        (0x03123456, 0x123456, 0x03123456),
        (0x04123456, 0x12345600, 0x04123456),
        (0x05009234, 0x92340000, 0x05009234),
        (
            0x20123456,
            0x1234560000000000000000000000000000000000000000000000000000000000,
            0x20123456,
        ),
        (0x2100FFFF, 0xFFFF << 240, 0x2100FFFF),
        (0x22000001, 1 << 248, 0x20010000),  # non-normalised input
    ],
    ids=hex,
)
def test_bits_to_target_edge_cases(bits, target, compact):
    """Bitcoin's SetCompact/GetCompact cases: small exponents drop bytes; sign bit kept clear."""
    assert bits_to_target(bits) == target
    assert target_to_bits(target) == compact


def test_target_to_bits_keeps_sign_bit_clear():
    """A target whose top mantissa bit would be set moves one byte up (0x80 -> 0x02008000)."""
    assert target_to_bits(0x80) == 0x02008000
    assert target_to_bits(0x800000) == 0x04008000
    assert bits_to_target(0x02008000) == 0x80


@pytest.mark.parametrize(
    "bits",
    [
        0x04923456,
        0x01FEDCBA,
        0x1D80FFFF,
        0x00800000,  # negative (sign bit set)
        0x00000000,
        0x00123456,
        0x01003456,
        0x02000056,
        0x03000000,
        0x04000000,
        0x1D000000,  # zero
        0x23000001,
        0x21010000,
        0x22010000,
        0xFF123456,  # above 256 bits
    ],
    ids=hex,
)
def test_bits_to_target_rejects_negative_zero_and_overflow(bits):
    """Negative, zero and overflowing compact bits are refused with bad-diffbits."""
    with pytest.raises(BlockValidationError) as err:
        bits_to_target(bits)
    assert err.value.code == "bad-diffbits"


def test_target_to_bits_rejects_non_positive():
    """A zero or negative target has no compact form."""
    for target in (0, -1):
        with pytest.raises(ValueError):
            target_to_bits(target)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 2**256 - 1))
def test_target_to_bits_rounds_down_and_roundtrips(target):
    """Compacting a target keeps 3 significant bytes,
    never rounds up, and compacts again identically."""
    bits = target_to_bits(target)
    rounded = bits_to_target(bits)
    assert rounded <= target
    assert target - rounded < max(1, target >> 15)  # lost at most the bytes below the mantissa
    assert target_to_bits(rounded) == bits


def test_block_work_known_values():
    """Work is 2^256 // (target + 1): Bitcoin's genesis work is 0x100010001."""
    assert block_work(bits_to_target(0x1D00FFFF)) == 0x100010001
    assert block_work(2**256 - 1) == 1
    assert block_work(bits_to_target(0x207FFFFF)) == 2
    assert block_work(0) == 2**256
    assert block_work(2**255 - 1) == 2


def test_hash_meets_target_boundary():
    """A hash equal to the target meets it; one above does not."""
    target = 0x1234 << 200
    assert hash_meets_target(target.to_bytes(32, "big"), target)
    assert not hash_meets_target((target + 1).to_bytes(32, "big"), target)


def test_network_genesis_bits_within_pow_limit():
    """Every network's genesis bits are canonical and not easier than its pow_limit."""
    for params in (MAIN, TESTNET, REGTEST):
        target = bits_to_target(params.genesis_bits)
        assert target <= params.pow_limit
        assert target_to_bits(target) == params.genesis_bits


# --- ASERT -------------------------------------------------------------------------------

SPACING = 600
HALF_LIFE = 2 * 24 * 3600
LIMIT = (1 << 236) - 1
ANCHOR = bits_to_target(0x1D00FFFF)


def asert(time_diff, height_diff, anchor=ANCHOR, limit=LIMIT, spacing=SPACING, half_life=HALF_LIFE):
    return asert_target(anchor, time_diff, height_diff, spacing, half_life, limit)


@pytest.mark.parametrize("height_diff", [0, 1, 2, 100, 10_000])
def test_asert_on_schedule_keeps_the_target(height_diff):
    """Blocks exactly on schedule leave the anchor target unchanged."""
    assert asert(SPACING * height_diff, height_diff) == ANCHOR


@pytest.mark.parametrize("height_diff", [0, 1, 50])
def test_asert_one_half_life_behind_doubles_target(height_diff):
    """One half-life behind schedule doubles the target exactly; two half-lives quadruple it."""
    assert asert(SPACING * height_diff + HALF_LIFE, height_diff) == 2 * ANCHOR
    assert asert(SPACING * height_diff + 2 * HALF_LIFE, height_diff) == 4 * ANCHOR


@pytest.mark.parametrize("height_diff", [1, 50, 1000])
def test_asert_one_half_life_ahead_halves_target(height_diff):
    """One half-life ahead of schedule halves the target; two half-lives quarter it."""
    assert asert(SPACING * height_diff - HALF_LIFE, height_diff) == ANCHOR // 2
    assert asert(SPACING * height_diff - 2 * HALF_LIFE, height_diff) == ANCHOR // 4


def test_asert_fractional_exponent_follows_two_to_the_x():
    """Between whole half-lives the cubic approximation stays within 0.02% of 2^x."""
    for numerator in range(-8, 9):
        x = numerator / 8
        got = asert(SPACING * 10 + numerator * HALF_LIFE // 8, 10)
        assert math.isclose(got / ANCHOR, 2**x, rel_tol=2e-4), (x, got / ANCHOR)


def test_asert_clamps_to_pow_limit():
    """Far behind schedule the target is clamped to pow_limit, never above."""
    assert asert(SPACING + 100 * HALF_LIFE, 1) == LIMIT
    assert asert(SPACING + 100 * HALF_LIFE, 1, anchor=LIMIT) == LIMIT
    assert asert(HALF_LIFE, 0, anchor=LIMIT) == LIMIT


def test_asert_clamps_to_one():
    """Far ahead of schedule the target bottoms out at 1, never 0."""
    assert asert(0, 10_000_000) == 1
    assert asert(-HALF_LIFE, 0, anchor=1) == 1
    assert asert(0, 0, anchor=1) == 1


def test_asert_is_integer_exact_beyond_float_precision():
    """ASERT works on exact integers: odd 200-bit targets keep every bit."""
    anchor = (1 << 200) + 1
    limit = (1 << 255) - 1
    assert asert(SPACING * 7, 7, anchor=anchor, limit=limit) == anchor
    assert asert(SPACING * 7 + HALF_LIFE, 7, anchor=anchor, limit=limit) == 2 * anchor
    assert asert(SPACING * 7 + 3 * HALF_LIFE, 7, anchor=anchor, limit=limit) == 8 * anchor
    # a fractional exponent: result = (anchor * factor) >> 16 = (factor << 184) + (factor >> 16),
    # whose lowest bit (a float would lose it) must be exactly 1
    result = asert(SPACING * 7 + HALF_LIFE // 3, 7, anchor=anchor, limit=limit)
    assert type(result) is int
    assert result % (1 << 184) == 1
    assert 65536 < (result >> 184) < 131072


@settings(max_examples=300, deadline=None)
@given(
    anchor=st.integers(1, LIMIT),
    height_diff=st.integers(0, 100_000),
    t1=st.integers(-(10**8), 10**8),
    t2=st.integers(-(10**8), 10**8),
)
def test_asert_is_monotonic_in_time(anchor, height_diff, t1, t2):
    """A later parent time never yields a smaller target; results stay in [1, pow_limit]."""
    lo, hi = min(t1, t2), max(t1, t2)
    a, b = asert(lo, height_diff, anchor=anchor), asert(hi, height_diff, anchor=anchor)
    assert type(a) is int and type(b) is int
    assert 1 <= a <= b <= LIMIT


@settings(max_examples=200, deadline=None)
@given(frac=st.integers(0, 65535), anchor=st.integers(1 << 100, 1 << 200))
def test_asert_monotonic_across_whole_half_lives(frac, anchor):
    """Within a half-life the target grows with time
    and never exceeds the next half-life's target."""
    limit = (1 << 255) - 1
    # time steps of half_life / 65536 = 1 s with half_life = 65536 s
    t = asert(frac, 0, anchor=anchor, limit=limit, half_life=65536)
    assert anchor <= t <= 2 * anchor
    assert t <= asert(frac + 1, 0, anchor=anchor, limit=limit, half_life=65536)


# --- ChainState.next_bits on a real chain ----------------------------------------------------


def test_next_bits_follows_block_times_on_a_chain(tmp_path):
    """On a make_params() chain, next_bits holds on schedule,
    hardens for fast blocks, eases for slow ones."""
    params = make_params()
    clock = GENESIS_TIME + 10**7
    addr = b"\x01" * 20
    with opened_chain(tmp_path / "chain", params, clock=lambda: clock) as chain:
        genesis_target = bits_to_target(params.genesis_bits)
        assert chain.next_bits(chain.tip) == params.genesis_bits  # child of genesis
        mine_block(chain, addr, time_step=SPACING)  # height 1: the anchor
        assert chain.tip.header.bits == params.genesis_bits
        for _ in range(2):  # on schedule: unchanged
            assert chain.next_bits(chain.tip) == params.genesis_bits
            mine_block(chain, addr, time_step=params.target_spacing)
        assert chain.next_bits(chain.tip) == params.genesis_bits

        targets = [bits_to_target(chain.next_bits(chain.tip))]
        # 1 s apart: harder each block
        for _ in range(3):
            block = mine_block(chain, addr, time_step=1)
            assert chain.tip.hash == block.hash
            targets.append(bits_to_target(chain.next_bits(chain.tip)))
        assert all(b < a for a, b in pairwise(targets))
        # each block 599 s ahead with a 600 s half-life: the target roughly halves
        assert all(0.45 < b / a < 0.55 for a, b in pairwise(targets))
        assert targets[-1] < genesis_target // 4

        rising = [targets[-1]]
        # 1800 s apart: easier each block
        for _ in range(4):
            mine_block(chain, addr, time_step=3 * params.target_spacing)
            rising.append(bits_to_target(chain.next_bits(chain.tip)))
        assert all(b > a for a, b in pairwise(rising))

        for _ in range(3):  # far behind: clamped
            mine_block(chain, addr, time_step=10 * params.asert_half_life)
        assert chain.next_bits(chain.tip) == target_to_bits(params.pow_limit)
        assert chain.height == 13


def test_next_bits_is_constant_without_retarget(tmp_path):
    """With retarget off (regtest) every block must carry genesis_bits whatever the block times."""
    with opened_chain(tmp_path / "chain", REGTEST, clock=lambda: GENESIS_TIME + 10**7) as chain:
        for step in (1, 1, 100_000):
            mine_block(chain, b"\x02" * 20, time_step=step)
            assert chain.next_bits(chain.tip) == REGTEST.genesis_bits
