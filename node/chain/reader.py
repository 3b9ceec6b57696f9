"""Reads of the stored chain: blocks, coins, transactions, address history, the UTXO set.

The one way layers above the chain (mempool, P2P, API, tests) read what is in
LMDB: none of them opens the environment.  Each read opens its own read
transaction (any thread), unless given one (``reading``) to share a snapshot.
Whether a stored transaction or block counts is judged against the active chain,
which only ``ChainState`` changes; the reader is given a view of it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from itertools import islice
from typing import Any

import lmdb

from node.chain.connect import DIGEST_MODULUS, CoinFinder, TxLocator, stored_digest_term
from node.chain.index import BlockIndex, BlockIndexEntry
from node.primitives.block import Block
from node.primitives.encoding import decode, decode_stored
from node.primitives.tx import Coin, OutPoint, Transaction
from node.storage.schema import (
    COIN_KEY_SIZE,
    coin_fields,
    coin_from_record,
    coin_key_prefix,
    height_key,
    outpoint_from_record,
    parse_addr_hist,
)
from node.storage.store import Store

SCAN_CALLBACK_COINS = 4096  # coins of a UTXO-set scan between two calls of its callback
NO_HEIGHT_LIMIT = 2**64 - 1  # ``before_height`` of an address history read from the newest


class ChainReader:
    """Read-only access to one chain's store."""

    def __init__(
        self, store: Store, index: BlockIndex, on_active_chain: Callable[[BlockIndexEntry], bool]
    ) -> None:
        self._env = store.env
        self._db = store.db
        self._index = index
        self._on_active_chain = on_active_chain
        self._utxo_info: dict[str, Any] | None = None  # the last utxo_set_info (for its tip)

    def reading(self) -> lmdb.Transaction[bytes]:
        """A read transaction to share among many reads (``with reader.reading() as txn``):
        one snapshot, begun once.  Only on the chain thread, and not across a change."""
        return self._env.begin()

    def height_of(self, block_hash: bytes) -> int | None:
        """The height of a known block (``connect.CoinFinder``), None if unknown."""
        entry = self._index.get(block_hash)
        return entry.height if entry is not None else None

    # --- blocks ----------------------------------------------------------------------

    def get_block(self, block_hash: bytes) -> Block | None:
        raw = self.get_block_raw(block_hash)
        return Block.from_stored(raw) if raw is not None else None

    def get_block_raw(self, block_hash: bytes) -> bytes | None:
        """A stored block's bytes as they came (and were checked canonical)."""
        with self._env.begin() as txn:
            raw: bytes | None = txn.get(block_hash, db=self._db["blocks"])
            return raw

    def get_undo(self, block_hash: bytes) -> list[Coin] | None:
        """The coins a block's inputs spent, in order (undo data), or None if it was never
        connected (or its undo data is gone, after an upgrade from schema 3)."""
        with self._env.begin() as txn:
            raw = txn.get(block_hash, db=self._db["undo"])
        if raw is None:
            return None
        return [coin_from_record(e[:COIN_KEY_SIZE], e[COIN_KEY_SIZE:]) for e in decode(raw)]

    # --- coins -----------------------------------------------------------------------

    def get_coin(self, outpoint: OutPoint) -> Coin | None:
        return self.get_coins([outpoint])[0]

    def get_coins(
        self, outpoints: list[OutPoint], txn: lmdb.Transaction[bytes] | None = None
    ) -> list[Coin | None]:
        """The unspent coins at ``outpoints`` (None where spent or unknown), read in ``txn``
        if given (see ``reading``), else in a read transaction of their own."""
        if txn is None:
            with self._env.begin() as own:
                return self.get_coins(outpoints, own)
        # a cursor: Transaction.get in a read transaction releases the GIL for every key
        # (py-lmdb), and the event loop then keeps it for a switch interval (docs/design.md)
        find = CoinFinder(txn, self._db, self.height_of).key
        cursor = txn.cursor(db=self._db["utxo"])
        found, value = cursor.set_key, cursor.value
        coins: list[Coin | None] = []
        for txid, index in outpoints:
            key = find(txid, index)
            if key is None or not found(key):
                coins.append(None)
                continue
            raw = value()
            # a txindex entry left by a disconnected block can point at another tx's coin
            coins.append(coin_from_record(key, raw) if raw[-32:] == txid else None)
        return coins

    def iter_utxos(self) -> Iterator[tuple[OutPoint, Coin]]:
        with self._env.begin() as txn:
            for key, value in txn.cursor(db=self._db["utxo"]):
                yield outpoint_from_record(key, value), coin_from_record(key, value)

    def utxo_digest(self) -> bytes:
        """The digest of the UTXO set at the tip (``connect.utxo_digest``, 32 bytes)."""
        digest: bytes = self.utxo_set_info()["digest"]
        return digest

    def utxo_set_info(self, every_pages: Callable[[], object] = lambda: None) -> dict[str, Any]:
        """Tip, height, count, amount and digest of one snapshot of the UTXO set, from a
        scan (any thread: one read transaction, remembered until the tip changes).
        ``every_pages`` is called every SCAN_CALLBACK_COINS coins (the daemon's MapBudget:
        a scan maps the whole ``utxo`` tree, and with it most of the file)."""
        with self._env.begin() as txn:
            tip = txn.get(b"tip", db=self._db["meta"])
            assert tip is not None, "a store always has a tip"
            cached = self._utxo_info
            if cached is not None and cached["tip"] == tip:
                return cached
            count = amount = total = 0
            for key, value in txn.cursor(db=self._db["utxo"]):  # one coin at a time
                count += 1
                if count % SCAN_CALLBACK_COINS == 0:
                    every_pages()
                amount += coin_fields(value)[0]
                total += stored_digest_term(key, value)
            digest = (total % DIGEST_MODULUS).to_bytes(32, "big")
        info = {
            "tip": tip,
            "height": self._index[tip].height,
            "count": count,
            "amount": amount,
            "digest": digest,
        }
        self._utxo_info = info
        return info

    # --- transactions ------------------------------------------------------------------

    def get_tx_location(self, txid: bytes) -> tuple[bytes, int] | None:
        """(block hash, position) of a confirmed transaction on the active chain.

        A disconnect leaves its transactions' ``txindex`` entries (as Bitcoin Core's
        txindex does): an entry counts only if its block is on the active chain."""
        with self._env.begin() as txn:
            raw = TxLocator(txn, self._db).raw(txid)
            if raw is None:
                return None
            block_hash, pos = decode_stored(raw)
        entry = self._index.get(block_hash)
        if entry is None or not self._on_active_chain(entry):
            return None
        return block_hash, pos

    def get_transaction(self, txid: bytes) -> tuple[Transaction, BlockIndexEntry] | None:
        loc = self.get_tx_location(txid)
        if loc is None:
            return None
        block = self.get_block(loc[0])
        assert block is not None, "the txindex names a block that is not stored"
        return block.txs[loc[1]], self._index[loc[0]]

    # --- addresses ---------------------------------------------------------------------

    def address_coins(self, addr_hash: bytes) -> list[tuple[OutPoint, Coin]]:
        """The unspent outputs paying ``addr_hash``, by outpoint.

        Every output paying an address was created by a transaction in that
        address's history (``addrhist``), so the coins are those transactions'
        unspent outputs (a ``utxo`` range per transaction: its keys start with its
        height and position) that pay it: no separate per-address coin index is
        written for every block."""
        found: dict[OutPoint, Coin] = {}
        with self._env.begin() as txn:
            utxo = txn.cursor(db=self._db["utxo"])
            for height, position, _ in self._history(addr_hash, None, txn):
                prefix = coin_key_prefix(height, position)
                if not utxo.set_range(prefix):
                    continue
                for key, value in utxo:
                    if not key.startswith(prefix):
                        break
                    if coin_fields(value)[1] == addr_hash:
                        found[outpoint_from_record(key, value)] = coin_from_record(key, value)
        return sorted(found.items())

    def _history(
        self,
        addr_hash: bytes,
        before_height: int | None,
        txn: lmdb.Transaction[bytes] | None = None,
    ) -> Generator[tuple[int, int, bytes], None, None]:
        """(height, position, txid) touching an address below ``before_height``, newest
        first; in ``txn`` if given, else in a read transaction of its own."""
        if txn is None:
            with self._env.begin() as own:
                yield from self._history(addr_hash, before_height, own)
            return
        upper = addr_hash + height_key(
            before_height if before_height is not None else NO_HEIGHT_LIMIT
        )
        cursor = txn.cursor(db=self._db["addrhist"])
        found = cursor.prev() if cursor.set_range(upper) else cursor.last()
        while found and cursor.key().startswith(addr_hash):
            yield from reversed(parse_addr_hist(cursor.key(), cursor.value()))
            found = cursor.prev()

    def address_history(
        self, addr_hash: bytes, limit: int = 50, before_height: int | None = None
    ) -> list[tuple[int, int, bytes]]:
        """Up to ``limit`` confirmed transactions touching an address, newest first."""
        items = self._history(addr_hash, before_height)
        try:
            return list(islice(items, limit))
        finally:
            items.close()  # ends the read transaction now, not when the generator is collected

    def address_history_page(
        self, addr_hash: bytes, limit: int, before_height: int | None
    ) -> tuple[list[tuple[int, int, bytes]], int | None]:
        """A page of ``address_history`` completed to a block boundary (so paging by
        height skips nothing), and the ``before_height`` of the next page (None if last)."""
        page: list[tuple[int, int, bytes]] = []
        items = self._history(addr_hash, before_height)
        try:
            for item in items:
                if len(page) >= limit and item[0] != page[-1][0]:
                    return page, page[-1][0]
                page.append(item)
        finally:
            items.close()  # ends the read transaction now, not when the generator is collected
        return page, None

    # --- raw sub-database reads, for consistency checks and tests ----------------------

    def db_entries(self, name: str) -> int:
        """How many entries the sub-database ``name`` holds (docs/design.md, "Storage")."""
        with self._env.begin() as txn:
            entries: int = txn.stat(self._db[name])["entries"]
            return entries

    def db_get(self, name: str, key: bytes) -> bytes | None:
        """The raw value at ``key`` in the sub-database ``name``."""
        with self._env.begin() as txn:
            value: bytes | None = txn.get(key, db=self._db[name])
            return value

    def db_items(self, name: str) -> list[tuple[bytes, bytes]]:
        """Every (key, value) of the sub-database ``name``, in key order (one snapshot)."""
        with self._env.begin() as txn:
            return list(txn.cursor(db=self._db[name]))
