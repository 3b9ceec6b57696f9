"""Applying a block to the UTXO set and its indexes, inside the caller's LMDB write transaction.

``connect_block`` spends the block's inputs, creates its outputs and writes
its undo data, ``txindex``, ``addrhist`` and ``chain`` entries;
``disconnect_block`` reverses that with the undo data (its undo record and
``txindex`` entries stay, unused while the block is not on the active chain).  Both only
write: the caller owns the transaction, so a whole reorg still commits (or
aborts) as one.  ``UtxoStats`` follows the set's count and amount; ``utxo_digest``
hashes a scan of it.

Per transaction a connect writes one ``utxo`` record per input (where the coin
it spends was created) and per output (next to the block's other outputs: the
key is height, position, index), one ``txindex`` record (in the small
``txrecent`` tree until ``ChainState.merge_recent_txindex``), and
per block one ``addrhist`` record per address it touches: every write dirties a
page that the synced commit flushes, so nothing is written that a reader does
not need (docs/design.md, "Storage").
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import lmdb

from node.consensus import rules
from node.consensus.params import NetworkParams
from node.consensus.sigcache import VerifiedTxs
from node.primitives.block import Block
from node.primitives.encoding import decode_stored, encode, encode_array, encode_uint
from node.primitives.errors import BlockValidationError, ValidationError
from node.primitives.tx import Coin
from node.storage.schema import (
    COIN_KEY_SIZE,
    Databases,
    addr_hist_entry,
    addr_hist_key,
    coin_fields,
    coin_from_record,
    coin_key,
    coin_key_prefix,
    coin_value,
    encode_coin,
    height_key,
    outpoint_from_record,
    outpoint_key,
    tx_location_position,
    tx_location_prefix,
    undo_entry,
)

_U32 = struct.Struct(">I")
DIGEST_MODULUS = 1 << 256  # the UTXO digest is a sum of 256-bit hashes modulo this


def digest_term(outpoint: bytes, coin: bytes) -> int:
    """One coin's term of the UTXO digest: int_be(sha256(outpoint ‖ coin)), of its
    ``outpoint_key`` and its ``encode_coin`` record: the same whatever the storage layout."""
    return int.from_bytes(hashlib.sha256(outpoint + coin).digest(), "big")


def stored_digest_term(key: bytes, value: bytes) -> int:
    """``digest_term`` of the coin in a ``utxo`` record."""
    return digest_term(
        outpoint_key(*outpoint_from_record(key, value)), encode_coin(coin_from_record(key, value))
    )


def utxo_digest(records: Iterable[tuple[bytes, bytes]]) -> int:
    """The order-free digest of a UTXO set given as (outpoint key, coin record) pairs: the
    sum of their ``digest_term`` modulo 2^256 (docs/design.md, "UTXO set digest").
    Computed on demand by a scan (``ChainState.utxo_set_info``), as Bitcoin Core's
    gettxoutsetinfo does, not kept up to date by every connect: that cost one sha256
    per coin created or spent."""
    return sum(digest_term(key, value) for key, value in records) % DIGEST_MODULUS


@dataclass
class UtxoStats:
    """Running totals of the UTXO set, updated with every block connected or disconnected."""

    count: int = 0  # number of unspent outputs
    amount: int = 0  # base units they hold

    def apply(self, created: int, created_amount: int, spent: int, spent_amount: int) -> None:
        """A block's worth of changes: ``created``/``spent`` coins and their amounts."""
        self.count += created - spent
        self.amount += created_amount - spent_amount

    def copy(self) -> UtxoStats:
        return UtxoStats(self.count, self.amount)

    def record(self) -> bytes:
        return encode([self.count, self.amount])


class TxLocator:
    """Reads ``txindex`` entries inside one LMDB transaction: ``txrecent`` first, which
    holds the entries connected since the last merge and so the newer of two."""

    def __init__(self, txn: lmdb.Transaction[bytes], db: Databases) -> None:
        recent, index = txn.cursor(db=db["txrecent"]), txn.cursor(db=db["txindex"])
        self._find_recent, self._recent = recent.set_key, recent.value
        self._find_index, self._index = index.set_key, index.value

    def raw(self, txid: bytes) -> bytes | None:
        """The ``txindex`` value of ``txid`` (``tx_location_prefix`` + position), if any."""
        if self._find_recent(txid):
            return self._recent()
        if self._find_index(txid):
            return self._index()
        return None


class CoinFinder:
    """Finds outpoints in ``utxo`` inside one LMDB transaction: ``txindex`` gives the
    block and position of the outpoint's transaction, ``height_of`` that block's height
    (None if unknown), and the key (height, position, index) the coin, whose value must
    repeat the txid (``txindex`` keeps entries of disconnected blocks)."""

    def __init__(
        self, txn: lmdb.Transaction[bytes], db: Databases, height_of: Callable[[bytes], int | None]
    ) -> None:
        self._locate = TxLocator(txn, db).raw
        self._height_of = height_of

    def key(self, txid: bytes, index: int) -> bytes | None:
        """The ``utxo`` key outpoint (``txid``, ``index``) has if it is unspent."""
        location = self._locate(txid)
        if location is None:
            return None
        height = self._height_of(location[3:35])
        if height is None:
            return None
        return coin_key(height, tx_location_position(location), index)


def connect_block(
    txn: lmdb.Transaction[bytes],
    db: Databases,
    block: Block,
    block_hash: bytes,
    height: int,
    median_time_past: int,
    params: NetworkParams,
    stats: UtxoStats,
    height_of: Callable[[bytes], int | None],
    verified: VerifiedTxs | None = None,
) -> list:
    """Apply ``block`` at ``height`` inside ``txn``; raise if it breaks a rule.
    ``height_of`` gives the height of a block hash (``CoinFinder``); a transaction in
    ``verified`` (its signatures checked by our mempool) has no signature checks.

    Returns the block's signature checks: the caller verifies them (in one
    batch with other blocks) before committing."""
    rules.check_block_contextual(block, height, median_time_past)
    utxo = txn.cursor(db=db["utxo"])
    utxo_put, utxo_pop = utxo.put, utxo.pop
    txindex_put = txn.cursor(db=db["txrecent"]).put  # merged into txindex later
    find = CoinFinder(txn, db, height_of).key
    fees = 0
    checks: list = []
    spent = spent_amount = 0
    undo: list[bytes] = []  # the spent coins' undo entries, in spending order
    created = created_amount = 0
    history: dict[bytes, list[bytes]] = {}  # address -> addrhist entries of this block
    location = tx_location_prefix(block_hash)
    for pos, tx in enumerate(block.txs):
        txid = tx.txid
        touched: set[bytes] = set()
        if pos > 0:
            coins: list[Coin | None] = []
            for txin in tx.inputs:
                # Spent coins are popped as they are read: a second spend of one coin
                # (in this block) then finds nothing, and a failure aborts the transaction.
                key = find(txin.prev_txid, txin.prev_index)
                value = utxo_pop(key) if key is not None else None
                if key is None or value is None:
                    coins.append(None)
                    continue
                if value[-32:] != txin.prev_txid:
                    utxo_put(key, value)  # another tx's coin, found through a stale entry
                    coins.append(None)
                    continue
                coin = coin_from_record(key, value)
                coins.append(coin)
                undo.append(undo_entry(key, value))
                spent_amount += coin.amount
                touched.add(coin.addr_hash)
            try:
                fees += rules.check_tx_inputs(tx, coins, height, params)
            except ValidationError as exc:
                raise BlockValidationError(exc.code, f"tx {txid.hex()}: {exc.message}") from None
            found = cast(list[Coin], coins)  # check_tx_inputs raised if one was missing
            if verified is None or not verified.take(txid):
                checks.extend(rules.signature_checks(tx, found, params.network_id))
            spent += len(coins)
        created += len(tx.outputs)
        prefix = coin_key_prefix(height, pos)
        for n, out in enumerate(tx.outputs):
            utxo_put(prefix + _U32.pack(n), coin_value(out.amount, out.addr_hash, txid))
            created_amount += out.amount
            touched.add(out.addr_hash)
        txindex_put(txid, location + encode_uint(pos))
        entry = addr_hist_entry(pos, txid)
        for addr in touched:
            history.setdefault(addr, []).append(entry)
    rules.check_coinbase_amount(block, height, fees, params)
    stats.apply(created, created_amount, spent, spent_amount)
    hist_put = txn.cursor(db=db["addrhist"]).put
    for addr, entries in history.items():
        hist_put(addr_hist_key(addr, height), b"".join(entries))
    txn.put(block_hash, encode_array(undo), db=db["undo"])
    txn.put(height_key(height), block_hash, db=db["chain"])
    return checks


def connect_genesis_allocations(
    txn: lmdb.Transaction[bytes],
    db: Databases,
    block: Block,
    block_hash: bytes,
    stats: UtxoStats,
) -> None:
    """Create the outputs of a chain spec's genesis coinbase (its allocations) inside ``txn``,
    with their ``txindex`` and ``addrhist`` entries, as ``connect_block`` would at height 0.
    The genesis block is never disconnected, so it has no undo record.  Built-in networks do
    not call this: their one genesis output is unspendable (docs/protocol.md §12)."""
    coinbase = block.txs[0]
    txid = coinbase.txid
    prefix = coin_key_prefix(0, 0)
    for n, out in enumerate(coinbase.outputs):
        txn.put(prefix + _U32.pack(n), coin_value(out.amount, out.addr_hash, txid), db=db["utxo"])
    txn.put(txid, tx_location_prefix(block_hash) + encode_uint(0), db=db["txrecent"])
    entry = addr_hist_entry(0, txid)
    for addr in {out.addr_hash for out in coinbase.outputs}:
        txn.put(addr_hist_key(addr, 0), entry, db=db["addrhist"])
    stats.apply(len(coinbase.outputs), coinbase.total_out(), 0, 0)


def disconnect_block(
    txn: lmdb.Transaction[bytes],
    db: Databases,
    block: Block,
    block_hash: bytes,
    height: int,
    stats: UtxoStats,
) -> None:
    """Undo ``block`` (at ``height``) inside ``txn`` with its stored undo data."""
    utxo = txn.cursor(db=db["utxo"])
    utxo_put, utxo_pop = utxo.put, utxo.pop
    raw_undo = txn.get(block_hash, db=db["undo"])
    assert raw_undo is not None, "a connected block has undo data"
    undo = decode_stored(raw_undo)  # key + value of each spent coin
    removed = removed_amount = 0
    restored = restored_amount = 0
    touched: set[bytes] = set()  # every address with an addrhist record here
    for pos in range(len(block.txs) - 1, -1, -1):
        tx = block.txs[pos]
        prefix = coin_key_prefix(height, pos)
        for n, out in enumerate(tx.outputs):
            if utxo_pop(prefix + _U32.pack(n)) is None:
                raise RuntimeError(f"UTXO set corrupt: {tx.txid.hex()}:{n} missing on disconnect")
            removed += 1
            removed_amount += out.amount
            touched.add(out.addr_hash)
        if pos > 0:
            for _ in tx.inputs:
                record = undo.pop()
                value = record[COIN_KEY_SIZE:]
                utxo_put(record[:COIN_KEY_SIZE], value)
                amount, addr_hash, _ = coin_fields(value)
                restored += 1
                restored_amount += amount
                touched.add(addr_hash)
    # txindex entries stay: one random-key delete per transaction saved, and readers
    # (ChainState.get_tx_location) ignore entries whose block is not on the active chain
    stats.apply(restored, restored_amount, removed, removed_amount)
    hist_db = db["addrhist"]
    for addr in touched:
        txn.delete(addr_hist_key(addr, height), db=hist_db)
    txn.delete(height_key(height), db=db["chain"])
    txn.put(b"tip", block.header.prev_hash, db=db["meta"])
