"""Bringing a datadir of an older schema to ``schema.SCHEMA_VERSION``, in place.

Each step runs inside the write transaction that opens the datadir, so an
upgrade either completes or leaves the old datadir as it was.

* 1 -> 2: ``addrutxo`` (a per-address coin index) is dropped; ``addrhist`` is
  regrouped from one key per (address, height, position, txid) to one key per
  (address, height).
* 2 -> 3: the UTXO digest is no longer stored in ``meta/utxostats``.
* 3 -> 4: ``utxo`` is keyed by (height, position, index) instead of (txid,
  index), its values become [amount, addr_hash, txid], and ``undo`` holds each
  spent coin's new key and value (docs/design.md, "Storage").
* 4 -> 5: connects write their ``txindex`` entries to ``txrecent`` first; the
  new sub-database starts empty (the store creates it), so nothing is rewritten.
"""

from __future__ import annotations

import lmdb

from node.primitives.block import Block
from node.primitives.encoding import decode, decode_stored, encode, encode_array
from node.storage.schema import (
    DROPPED_DBS,
    SCHEMA_VERSION,
    Databases,
    coin_key,
    coin_value,
    tx_location_position,
    undo_entry,
)


def upgrade(
    env: lmdb.Environment, db: Databases, txn: lmdb.Transaction[bytes], schema: int
) -> None:
    """Apply every step from ``schema`` to ``SCHEMA_VERSION`` inside ``txn`` (of ``env``,
    whose sub-databases are ``db``)."""
    if schema < 2:
        _to_2(env, db, txn)
    if schema < 3:
        _to_3(db, txn)
    if schema < 4:
        _to_4(db, txn)
    txn.put(b"schema", encode(SCHEMA_VERSION), db=db["meta"])


def _to_2(env: lmdb.Environment, db: Databases, txn: lmdb.Transaction[bytes]) -> None:
    for name in DROPPED_DBS:
        txn.drop(env.open_db(name.encode(), txn=txn), delete=True)
    hist = db["addrhist"]
    grouped: dict[bytes, list[bytes]] = {}
    for old_key in txn.cursor(db=hist).iternext(values=False):  # sorted: position order
        grouped.setdefault(old_key[:28], []).append(old_key[28:])
    txn.drop(hist, delete=False)
    cursor = txn.cursor(db=hist)
    for key, entries in grouped.items():
        cursor.put(key, b"".join(entries), append=True)


def _to_3(db: Databases, txn: lmdb.Transaction[bytes]) -> None:
    meta = db["meta"]
    stats = txn.get(b"utxostats", db=meta)
    if stats is not None:
        txn.put(b"utxostats", encode(decode(stats)[:2]), db=meta)


def _to_4(db: Databases, txn: lmdb.Transaction[bytes]) -> None:
    txindex = db["txindex"]

    def position(txid: bytes) -> int:
        # the coin is unspent (or spent by an active block), so its transaction is on the
        # active chain and its txindex entry, written by the last connect, points there
        raw = txn.get(txid, db=txindex)
        assert raw is not None, "an unspent coin's transaction is indexed"
        return tx_location_position(raw)

    coins = list(txn.cursor(db=db["utxo"]))
    txn.drop(db["utxo"], delete=False)
    utxo = txn.cursor(db=db["utxo"])
    for key, value in coins:
        txid, index = key[:32], int.from_bytes(key[32:], "big")
        amount, addr_hash, height, _ = decode_stored(value)
        utxo.put(coin_key(height, position(txid), index), coin_value(amount, addr_hash, txid))
    del coins
    active = set(txn.cursor(db=db["chain"]).iternext(keys=False))
    undo = db["undo"]
    for block_hash in list(txn.cursor(db=undo).iternext(values=False)):
        if block_hash not in active:  # written again if the block is ever reconnected
            txn.delete(block_hash, db=undo)
            continue
        raw_block, raw_undo = txn.get(block_hash, db=db["blocks"]), txn.get(block_hash, db=undo)
        assert raw_block is not None and raw_undo is not None, "an active block is stored"
        block = Block.from_stored(raw_block)
        spent = decode_stored(raw_undo)
        inputs = [txin for tx in block.txs[1:] for txin in tx.inputs]
        entries = [
            undo_entry(
                coin_key(height, position(txin.prev_txid), txin.prev_index),
                coin_value(amount, addr_hash, txin.prev_txid),
            )
            for txin, (amount, addr_hash, height, _) in zip(inputs, spent, strict=True)
        ]
        txn.put(block_hash, encode_array(entries), db=undo)
