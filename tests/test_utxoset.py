"""UTXO set statistics and digest (node/utxoset.py)."""
from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from node.encoding import encode, encode_uint
from node.store import coin_suffix, encode_coin, encode_coin_fields, outpoint_key, tx_location_prefix
from node.tx import Coin
from node.utxoset import UtxoStats, utxo_digest


def _record(amount: int) -> tuple[bytes, bytes, int]:
    key = outpoint_key(os.urandom(32), amount % 7)
    return key, encode_coin(Coin(amount, os.urandom(20), amount % 1000, amount % 2 == 0)), amount


@given(st.lists(st.integers(1, 2**50), min_size=1, max_size=30), st.randoms(use_true_random=False))
@settings(max_examples=50, deadline=None)
def test_digest_is_order_free_and_changes_with_any_coin(amounts, rng):
    """The digest of a set does not depend on the order of its coins (so not on the
    history of connects and reorgs that built it), and any coin added changes it."""
    records = [_record(a)[:2] for a in amounts]
    shuffled = list(records)
    rng.shuffle(shuffled)
    digest = utxo_digest(records)
    assert utxo_digest(shuffled) == digest
    assert 0 <= digest < 2**256
    assert utxo_digest(records + [_record(7)[:2]]) != digest
    assert utxo_digest([]) == 0


def test_stats_apply_counts_a_block():
    stats = UtxoStats(10, 1000)
    stats.apply(3, 300, 2, 150)
    assert stats == UtxoStats(11, 1150) and stats.copy() == stats and stats.copy() is not stats


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
