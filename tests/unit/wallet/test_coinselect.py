"""Coin selection (wallet/coinselect.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wallet.coinselect import DEFAULT_SIZE_MODEL, DUST_THRESHOLD, SizeModel, Utxo, select_coins
from wallet.errors import InsufficientFundsError

SIZE = DEFAULT_SIZE_MODEL  # 17 + 140 per input + 32 per output bytes


def utxos(*amounts: int) -> list[Utxo]:
    return [Utxo(bytes([i]) * 32, i, amount, f"tobol1addr{i}") for i, amount in enumerate(amounts)]


def test_size_model():
    assert SIZE(1, 2) == 17 + 140 + 64
    assert SizeModel(10, 100, 30)(2, 1) == 10 + 200 + 30


def test_smallest_single_output_that_covers():
    coins = utxos(5_000, 200_000, 50_000, 60_000)
    chosen = select_coins(coins, 40_000, fee_rate=10)
    assert [u.amount for u in chosen.inputs] == [50_000]
    assert chosen.fee == SIZE(1, 2) * 10
    assert chosen.change == 50_000 - 40_000 - chosen.fee
    assert chosen.size == SIZE(1, 2)


def test_single_output_must_cover_the_fee_too():
    # 40_000 alone is short of 40_000 + fee: the next larger single output is used
    chosen = select_coins(utxos(40_000, 90_000), 40_000, fee_rate=1)
    assert [u.amount for u in chosen.inputs] == [90_000]


def test_largest_first_when_no_single_output_covers():
    coins = utxos(30_000, 10_000, 40_000, 20_000, 5_000)
    chosen = select_coins(coins, 68_000, fee_rate=10)
    assert [u.amount for u in chosen.inputs] == [40_000, 30_000, 20_000]
    assert chosen.total_in == chosen.amount + chosen.fee + chosen.change


def test_dust_change_goes_to_the_fee():
    fee_plain = SIZE(1, 1) * 5
    coin = 100_000 + fee_plain + 700  # 700 over: change would be dust
    chosen = select_coins(utxos(coin), 100_000, fee_rate=5)
    assert chosen.change == 0
    assert chosen.fee == fee_plain + 700
    assert chosen.size == SIZE(1, 1)


def test_change_at_the_dust_threshold_is_kept():
    fee_change = SIZE(1, 2) * 5
    chosen = select_coins(utxos(100_000 + fee_change + DUST_THRESHOLD), 100_000, fee_rate=5)
    assert chosen.change == DUST_THRESHOLD
    assert chosen.fee == fee_change


def test_custom_dust_threshold_and_size_function():
    chosen = select_coins(
        utxos(10_000),
        9_000,
        fee_rate=1,
        dust_threshold=100,
        size=lambda n_in, n_out: 100 * n_in + 10 * n_out,
    )
    assert (chosen.fee, chosen.change) == (120, 880)


def test_zero_fee_rate():
    chosen = select_coins(utxos(10_000, 3_000), 2_000, fee_rate=0)
    assert (chosen.fee, chosen.change, chosen.inputs[0].amount) == (0, 1_000, 3_000)


def test_insufficient_funds():
    with pytest.raises(InsufficientFundsError) as info:
        select_coins(utxos(10_000, 20_000), 30_000, fee_rate=1)
    assert info.value.code == "insufficient-funds"
    assert f"need {30_000 + SIZE(2, 1)}, spendable 30000" in info.value.message
    with pytest.raises(InsufficientFundsError, match="spendable 0"):
        select_coins([], 1, fee_rate=1)


def test_uneconomic_outputs_do_not_help():
    # each 100-unit output costs 140 bytes * 1/byte to spend
    with pytest.raises(InsufficientFundsError):
        select_coins(utxos(*[100] * 50), 1_000, fee_rate=1)


def test_bad_arguments():
    with pytest.raises(ValueError):
        select_coins(utxos(1_000), 0, fee_rate=1)
    with pytest.raises(ValueError):
        select_coins(utxos(1_000), 10, fee_rate=-1)
    with pytest.raises(TypeError):
        select_coins(utxos(1_000), 10, fee_rate=1.5)
    with pytest.raises(ValueError):
        select_coins(utxos(1_000) * 2, 10, fee_rate=1)
    with pytest.raises(ValueError):
        Utxo(b"\0" * 32, 0, -1, "tobol1x")


def test_deterministic():
    coins = utxos(7_000, 7_000, 7_000, 7_000)
    first = select_coins(coins, 20_000, fee_rate=1)
    assert select_coins(list(reversed(coins)), 20_000, fee_rate=1) == first


amounts = st.lists(st.integers(min_value=0, max_value=2_000_000), max_size=12)


@settings(max_examples=300, deadline=None)
@given(
    amounts=amounts,
    target=st.integers(min_value=1, max_value=5_000_000),
    fee_rate=st.integers(min_value=0, max_value=50),
    dust=st.integers(min_value=0, max_value=5_000),
    payments=st.integers(min_value=1, max_value=3),
)
def test_selection_properties(amounts, target, fee_rate, dust, payments):
    coins = utxos(*amounts)
    try:
        chosen = select_coins(
            coins, target, fee_rate, dust_threshold=dust, payment_outputs=payments
        )
    except InsufficientFundsError:
        # No set of k outputs pays: in particular not the k largest.
        ranked = sorted(amounts, reverse=True)
        for k in range(1, len(ranked) + 1):
            assert sum(ranked[:k]) < target + SIZE(k, payments) * fee_rate
        return
    n_outputs = payments + (1 if chosen.change else 0)
    assert chosen.total_in == target + chosen.fee + chosen.change
    assert chosen.change == 0 or chosen.change >= max(dust, 1)
    assert chosen.size == SIZE(len(chosen.inputs), n_outputs)
    assert chosen.fee >= chosen.size * fee_rate
    assert len({u.outpoint for u in chosen.inputs}) == len(chosen.inputs)
    # dust given to the fee is bounded by what a change output would have cost + dust
    if chosen.change == 0:
        assert chosen.fee - chosen.size * fee_rate < max(dust, 1) + SIZE.per_output * fee_rate
    # a single output is used whenever one suffices
    if any(a >= target + SIZE(1, payments) * fee_rate for a in amounts):
        assert len(chosen.inputs) == 1
