"""UTXO set statistics and digest (node/chain/connect.py)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from node.chain.connect import UtxoStats, digest_term, stored_digest_term, utxo_digest
from node.primitives.encoding import encode, encode_uint
from node.primitives.tx import Coin, OutPoint
from node.storage.schema import (
    COIN_KEY_SIZE,
    coin_fields,
    coin_from_record,
    coin_key,
    coin_key_prefix,
    coin_value,
    encode_coin,
    outpoint_from_record,
    outpoint_key,
    tx_location_position,
    tx_location_prefix,
    undo_entry,
)


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


_U32 = st.integers(0, 2**32 - 1)


@given(
    st.integers(0, 2**64 - 1),
    st.binary(min_size=20, max_size=20),
    st.binary(min_size=32, max_size=32),
    _U32,
    _U32,
    _U32,
)
@settings(max_examples=200, deadline=None)
def test_utxo_records_round_trip(amount, addr_hash, txid, height, position, index):
    """A utxo value built field by field is ``encode([amount, addr_hash, txid])`` and is
    sliced back to its fields (every size of amount); the key sorts by (height, position,
    index), starts with the transaction's prefix, and gives back the coin and outpoint;
    an undo entry is the bin of key and value."""
    key, value = coin_key(height, position, index), coin_value(amount, addr_hash, txid)
    assert value == encode([amount, addr_hash, txid])
    assert coin_fields(value) == (amount, addr_hash, txid)
    assert len(key) == COIN_KEY_SIZE and key.startswith(coin_key_prefix(height, position))
    assert coin_from_record(key, value) == Coin(amount, addr_hash, height, position == 0)
    assert outpoint_from_record(key, value) == OutPoint(txid, index)
    assert undo_entry(key, value) == encode(key + value)
    # the coin's digest term is its layout-free one
    assert stored_digest_term(key, value) == digest_term(
        outpoint_key(txid, index), encode_coin(Coin(amount, addr_hash, height, position == 0))
    )


@given(st.tuples(_U32, _U32, _U32), st.tuples(_U32, _U32, _U32))
@settings(max_examples=100, deadline=None)
def test_coin_keys_sort_as_their_fields(a, b):
    assert (coin_key(*a) < coin_key(*b)) == (a < b)


@given(st.binary(min_size=32, max_size=32), st.integers(0, 2**32 - 1))
@settings(max_examples=50, deadline=None)
def test_tx_location_prefix_plus_position_equals_encode(block_hash, position):
    raw = tx_location_prefix(block_hash) + encode_uint(position)
    assert raw == encode([block_hash, position])
    assert tx_location_position(raw) == position
