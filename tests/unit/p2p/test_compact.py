"""Compact blocks (node/p2p/compact.py): the encoding round-trips, short ids are what the
key makes them, and a block is rebuilt from any mix of known and missing transactions,
with collisions leading to the whole block."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.p2p import compact
from node.p2p.compact import (
    SHORT_ID_SIZE,
    CompactBlock,
    PartialBlock,
    make_compact,
    parse_blocktxn,
    parse_cmpctblock,
    parse_getblocktxn,
    short_id,
    short_id_key,
)
from node.primitives import encoding
from node.primitives.block import Block, BlockHeader, merkle_root
from node.primitives.errors import DecodeError
from node.primitives.tx import Transaction


def _tx(k: int) -> Transaction:
    return Transaction.from_list(
        [1, [[k.to_bytes(32, "big"), 0, bytes(64), bytes(32)]], [[1, bytes(20)]], 0]
    )


def _block(count: int, nonce: int = 0) -> Block:
    coinbase = Transaction.from_list([1, [[bytes(32), 5, b"x", b""]], [[50, bytes(20)]], 0])
    txs = [coinbase, *(_tx(k + 1) for k in range(count))]
    header = BlockHeader.create(1, bytes(32), merkle_root([t.txid for t in txs]), 0, 0, nonce)
    return Block.create(header, txs)


blocks = st.builds(_block, st.integers(0, 40), st.integers(0, 2**64 - 1))
nonces = st.integers(0, 2**64 - 1)


@settings(max_examples=50, deadline=None)
@given(blocks, nonces)
def test_cmpctblock_round_trips(block, nonce):
    cmpct = make_compact(block, nonce)
    raw = cmpct.encoded()
    assert raw == encoding.encode(cmpct.to_list())
    assert parse_cmpctblock(encoding.decode(raw), raw) == cmpct
    assert parse_cmpctblock(cmpct.to_list()) == cmpct
    assert cmpct.tx_count == len(block.txs) and cmpct.prefilled[0] == (0, block.txs[0])


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), nonces, blocks)
def test_short_ids_are_six_bytes_of_the_keyed_hash(txid, nonce, block):
    key = short_id_key(block.header, nonce)
    assert key == compact.sha256(block.header.raw + nonce.to_bytes(8, "big"))
    sid = short_id(key, txid)
    assert len(sid) == SHORT_ID_SIZE and sid == short_id(key, txid)
    assert short_id_key(block.header, nonce ^ 1) != key  # another nonce, another key
    assert sid == compact.hashlib.blake2b(txid, key=key, digest_size=6).digest()


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 30), st.data())
def test_rebuilt_from_any_subset_plus_the_missing(count, data):
    """Whatever subset the receiver has (in any order, with extras), the missing indexes are
    exactly the others, and filling them gives back the block byte for byte."""
    block = _block(count)
    have = data.draw(st.sets(st.integers(1, count)))
    extras = [_tx(1000 + k) for k in range(data.draw(st.integers(0, 5)))]
    pool = {t.txid: t for t in [*(block.txs[i] for i in have), *extras]}
    partial = PartialBlock(make_compact(block, data.draw(nonces)))
    partial.match(data.draw(st.permutations(list(pool))))
    partial.place(pool.get)
    missing = partial.missing()
    assert missing == sorted(set(range(1, count + 1)) - have)
    assert partial.fill_missing([block.txs[i] for i in missing])
    rebuilt = partial.block()
    assert rebuilt is not None and rebuilt.raw == block.raw and rebuilt.hash == block.hash


def test_a_wrong_transaction_under_a_short_id_means_no_block():
    """A slot filled by a transaction that only shares the short id: the merkle root does
    not match, and ``block()`` says so (the caller fetches the block whole)."""
    block, other = _block(2), _tx(99)
    key = short_id_key(block.header, 0)
    forged = CompactBlock(
        block.header,
        0,
        (short_id(key, other.txid), short_id(key, block.txs[2].txid)),
        ((0, block.txs[0]),),
    )
    partial = PartialBlock(forged)
    partial.match([other.txid, block.txs[2].txid])
    assert partial.place({other.txid: other, block.txs[2].txid: block.txs[2]}.get) == 2
    assert partial.missing() == [] and partial.block() is None


def test_two_candidates_with_one_short_id_leave_the_slot_to_getblocktxn(monkeypatch):
    block = _block(2)
    monkeypatch.setattr(compact, "short_id", lambda key, txid: txid[:SHORT_ID_SIZE])
    cmpct = make_compact(block, 0)
    clash = block.txs[1].txid[:SHORT_ID_SIZE] + bytes(26)  # same 6 bytes, another txid
    partial = PartialBlock(cmpct)
    partial.match([block.txs[1].txid, clash, block.txs[2].txid])
    partial.place({block.txs[1].txid: block.txs[1], block.txs[2].txid: block.txs[2]}.get)
    assert partial.missing() == [1]


def test_repeated_short_ids_in_a_block_mean_the_whole_block():
    block = _block(2)
    cmpct = make_compact(block, 0)
    twice = CompactBlock(block.header, 0, (cmpct.short_ids[0],) * 2, cmpct.prefilled)
    assert PartialBlock(twice).duplicate


def test_a_blocktxn_of_the_wrong_count_does_not_fill():
    block = _block(3)
    partial = PartialBlock(make_compact(block, 0))
    assert not partial.fill_missing(list(block.txs[1:3]))
    assert partial.fill_missing(list(block.txs[1:]))


@pytest.mark.parametrize(
    "body",
    [
        lambda h: [h, 0, [], []],  # no transaction
        lambda h: [h, 0, [bytes(6)], [[1, _tx(1).to_list()], [0, _tx(2).to_list()]]],  # order
        lambda h: [h, 0, [], [[1, _tx(1).to_list()]]],  # beyond the count
    ],
)
def test_malformed_cmpctblocks(body):
    with pytest.raises(DecodeError) as err:
        parse_cmpctblock(body(_block(0).header.to_list()))
    assert err.value.code == "bad-cmpctblock"


def test_getblocktxn_and_blocktxn_shapes():
    assert parse_getblocktxn([bytes(32), [0, 3, 9]]) == (bytes(32), [0, 3, 9])
    for indexes in ([1, 1], [2, 1], [True]):
        with pytest.raises(DecodeError) as err:
            parse_getblocktxn([bytes(32), indexes])
        assert err.value.code == "bad-getblocktxn"
    txs = [_tx(1), _tx(2)]
    assert parse_blocktxn([bytes(32), [t.to_list() for t in txs]]) == (bytes(32), txs)
