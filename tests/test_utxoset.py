"""UTXO set statistics (node/utxoset.py): per-block updates equal per-coin ones."""
from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from node.encoding import encode, encode_uint
from node.store import coin_suffix, encode_coin, encode_coin_fields, outpoint_key, tx_location_prefix
from node.tx import Coin
from node.utxoset import UtxoStats


def _record(amount: int) -> tuple[bytes, bytes, int]:
    key = outpoint_key(os.urandom(32), amount % 7)
    return key, encode_coin(Coin(amount, os.urandom(20), amount % 1000, amount % 2 == 0)), amount


@given(st.lists(st.integers(1, 2**50), max_size=30), st.integers(0, 30))
@settings(max_examples=50, deadline=None)
def test_apply_per_block_equals_add_per_coin(amounts, spend_count):
    """Folding a block's created and spent coins into the digest once equals adding and
    removing them one by one (the sum is order-free, modulo 2^256)."""
    base = [_record(a) for a in amounts]
    start = UtxoStats()
    for key, value, amount in base:
        start.add(key, value, amount, +1)
    spent = base[:spend_count]
    created = [_record(a + 1) for a in amounts[:5]]
    one_by_one = start.copy()
    for key, value, amount in spent:
        one_by_one.add(key, value, amount, -1)
    for key, value, amount in created:
        one_by_one.add(key, value, amount, +1)
    per_block = start.copy()
    per_block.apply([k + v for k, v, _ in created], sum(a for _, _, a in created),
                    [k + v for k, v, _ in spent], sum(a for _, _, a in spent))
    assert per_block == one_by_one
    assert 0 <= per_block.digest_sum < 2**256


@given(st.integers(1, 2**64 - 1), st.binary(min_size=20, max_size=20), st.integers(0, 2**64 - 1),
       st.booleans())
@settings(max_examples=100, deadline=None)
def test_coin_records_built_field_by_field_equal_encode_coin(amount, addr_hash, height, coinbase):
    suffix = coin_suffix(height, coinbase)
    assert encode_coin_fields(amount, addr_hash, suffix) == encode_coin(Coin(amount, addr_hash, height, coinbase))


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_tx_location_prefix_plus_position_equals_encode(block_hash, position):
    assert tx_location_prefix(block_hash) + encode_uint(position) == encode([block_hash, position])
