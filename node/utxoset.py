"""Applying a block to the UTXO set and its indexes, inside the caller's LMDB write transaction.

``connect_block`` spends the block's inputs, creates its outputs and writes
its undo data, ``txindex``, ``addrhist`` and ``chain`` entries;
``disconnect_block`` reverses that with the undo data (its undo record and
``txindex`` entries stay, unused while the block is not on the active chain).  Both only
write: the caller owns the transaction, so a whole reorg still commits (or
aborts) as one.  ``UtxoStats`` follows the set's count and amount; ``utxo_digest``
hashes a scan of it.

Per transaction a connect writes (inputs) + (outputs) + 1 (``txindex``) LMDB
records at random keys, and per block one ``addrhist`` record per address it
touches: every write dirties a page that the synced commit flushes, so
nothing is written that a reader does not need (docs/design.md, "Storage").
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterable

from . import rules
from .block import Block
from .encoding import decode_stored, element_bytes, encode, encode_array, encode_uint
from .errors import BlockValidationError, ValidationError
from .params import NetworkParams
from .store import (addr_hist_entry, addr_hist_key, coin_suffix, decode_coin, encode_coin_fields,
                    height_key, outpoint_key, tx_location_prefix)
from .tx import Coin

DIGEST_MODULUS = 1 << 256       # the UTXO digest is a sum of 256-bit hashes modulo this


def digest_term(key: bytes, value: bytes) -> int:
    """One coin's term of the UTXO digest: int_be(sha256(key ‖ value))."""
    return int.from_bytes(hashlib.sha256(key + value).digest(), "big")


def utxo_digest(records: Iterable[tuple[bytes, bytes]]) -> int:
    """The order-free digest of a UTXO set given as (``utxo`` key, value) pairs: the sum
    of their ``digest_term`` modulo 2^256 (docs/design.md, "UTXO set digest").
    Computed on demand by a scan (``ChainState.utxo_set_info``), as Bitcoin Core's
    gettxoutsetinfo does, not kept up to date by every connect: that cost one sha256
    per coin created or spent."""
    return sum(digest_term(key, value) for key, value in records) % DIGEST_MODULUS


@dataclass
class UtxoStats:
    """Running totals of the UTXO set, updated with every block connected or disconnected."""
    count: int = 0         # number of unspent outputs
    amount: int = 0        # base units they hold

    def apply(self, created: int, created_amount: int, spent: int, spent_amount: int) -> None:
        """A block's worth of changes: ``created``/``spent`` coins and their amounts."""
        self.count += created - spent
        self.amount += created_amount - spent_amount

    def copy(self) -> "UtxoStats":
        return UtxoStats(self.count, self.amount)

    def record(self) -> bytes:
        return encode([self.count, self.amount])


def connect_block(txn, db: dict, block: Block, block_hash: bytes, height: int,
                  median_time_past: int, params: NetworkParams, stats: UtxoStats) -> list:
    """Apply ``block`` at ``height`` inside ``txn``; raise if it breaks a rule.

    Returns the block's signature checks: the caller verifies them (in one
    batch with other blocks) before committing."""
    rules.check_block_contextual(block, height, median_time_past)
    utxo = txn.cursor(db=db["utxo"])
    utxo_put, utxo_pop = utxo.put, utxo.pop
    txindex_put = txn.cursor(db=db["txindex"]).put
    fees = 0
    checks: list = []
    spent = spent_amount = 0
    undo: list[bytes] = []          # the spent coins' values, in spending order
    created = created_amount = 0
    history: dict[bytes, list[bytes]] = {}   # address -> addrhist entries of this block
    coin_tails = (coin_suffix(height, True), coin_suffix(height, False))   # coinbase, other
    location = tx_location_prefix(block_hash)
    for pos, tx in enumerate(block.txs):
        txid = tx.txid
        touched: set[bytes] = set()
        if pos > 0:
            # Spent coins are popped as they are read: a second spend of one coin
            # (in this block) then finds nothing, and a failure aborts the transaction.
            keys = [outpoint_key(txin.prev_txid, txin.prev_index) for txin in tx.inputs]
            raws = [utxo_pop(key) for key in keys]
            coins: list[Coin | None] = [decode_coin(r) if r is not None else None for r in raws]
            try:
                fees += rules.check_tx_inputs(tx, coins, height, params)
            except ValidationError as exc:
                raise BlockValidationError(exc.code, f"tx {txid.hex()}: {exc.message}") from None
            checks.extend(rules.signature_checks(tx, coins, params.network_id))
            for coin in coins:
                spent_amount += coin.amount
                touched.add(coin.addr_hash)
            spent += len(coins)
            undo.extend(raws)
        tail = coin_tails[pos > 0]
        created += len(tx.outputs)
        for n, out in enumerate(tx.outputs):
            key = outpoint_key(txid, n)
            value = encode_coin_fields(out.amount, out.addr_hash, tail)
            utxo_put(key, value)
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


def disconnect_block(txn, db: dict, block: Block, block_hash: bytes, height: int,
                     stats: UtxoStats) -> None:
    """Undo ``block`` (at ``height``) inside ``txn`` with its stored undo data."""
    utxo = txn.cursor(db=db["utxo"])
    utxo_put, utxo_pop = utxo.put, utxo.pop
    undo_raw = txn.get(block_hash, db=db["undo"])
    undo_values = element_bytes(undo_raw)            # the spent coins' utxo values, as stored
    undo_coins = decode_stored(undo_raw)             # the same, decoded
    removed = removed_amount = 0
    restored = restored_amount = 0
    touched: set[bytes] = set()                      # every address with an addrhist record here
    for pos in range(len(block.txs) - 1, -1, -1):
        tx = block.txs[pos]
        txid = tx.txid
        for n, out in enumerate(tx.outputs):
            key = outpoint_key(txid, n)
            value = utxo_pop(key)
            if value is None:
                raise RuntimeError(f"UTXO set corrupt: {txid.hex()}:{n} missing on disconnect")
            removed += 1
            removed_amount += out.amount
            touched.add(out.addr_hash)
        if pos > 0:
            for txin in reversed(tx.inputs):
                value = undo_values.pop()
                amount, addr_hash, _, _ = undo_coins.pop()
                key = outpoint_key(txin.prev_txid, txin.prev_index)
                utxo_put(key, value)
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
