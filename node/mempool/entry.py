"""One mempool transaction, kept compact, and what the pool's memory costs.

A pool of tens of thousands of transactions must not hold each as a tree of
Python objects (a decoded ``Transaction`` is ~900 bytes of heap for ~200 bytes
of encoding).  An entry keeps the canonical bytes and the few numbers the pool
sorts and sums by; the transaction is decoded again when it is needed whole
(block templates, API views, relay), which is rare next to holding it.

The pool is capped by its estimated memory footprint (Bitcoin Core's
``-maxmempool`` counts ``DynamicMemoryUsage`` the same way), so a full pool
is bounded in RSS whatever the transactions look like.  The estimate is
checked against ``tracemalloc`` in the tests.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from node.primitives.crypto import ADDR_HASH_SIZE
from node.primitives.encoding import decode_stored
from node.primitives.tx import Coin, Transaction, TxOut

# a spent coin: amount, addr_hash, height, coinbase (33 bytes)
SPENT_COIN = struct.Struct(">Q20sI?")

# Heap cost estimates in bytes (CPython 3.11, 64-bit; pymalloc rounds every block up to 16).
ALLOC_GRAIN = 16  # bytes: pymalloc's size classes
DICT_SLOT = 64  # bytes: one key in a large dict (hash index + entry + growth headroom)
INT_BYTES = 32  # bytes: an int below 2^60 (28, rounded)
FLOAT_BYTES = 32  # bytes: a float (24, rounded)
SMALL_INTS = range(-5, 257)  # ints CPython keeps as shared singletons: no heap of their own


BYTES_HEADER = sys.getsizeof(b"")  # bytes: a bytes object's size beyond its contents (33)


def _heap(obj: object) -> int:
    """``sys.getsizeof`` rounded up to the allocator's grain."""
    return _grain(sys.getsizeof(obj))


def _int_heap(value: int) -> int:
    """Heap bytes an int field holds (none for the shared small ints, such as 0)."""
    return 0 if value in SMALL_INTS else INT_BYTES


def _grain(size: int) -> int:
    return -(-size // ALLOC_GRAIN) * ALLOC_GRAIN


def _heap_bytes(length: int) -> int:
    """Heap bytes of a bytes object of ``length`` (without calling getsizeof on one)."""
    return _grain(BYTES_HEADER + length)


def outpoint_key(txid: bytes, index: int) -> bytes:
    """The 36-byte key naming output ``index`` of ``txid`` (cheaper than an OutPoint tuple)."""
    return txid + index.to_bytes(4, "big")


def pack_coins(coins: Sequence[Coin]) -> bytes:
    return b"".join(SPENT_COIN.pack(c.amount, c.addr_hash, c.height, c.coinbase) for c in coins)


def unpack_coins(packed: bytes) -> list[Coin]:
    return [Coin(*fields) for fields in SPENT_COIN.iter_unpack(packed)]


@dataclass(slots=True, eq=False)
class Relatives:
    """Totals of an entry's in-pool ancestors and descendants, the entry itself excluded,
    kept up to date by the pool as entries come and go (Bitcoin Core's CTxMemPoolEntry
    "with ancestors" / "with descendants" state)."""

    ancestors_count: int = 0  # transactions
    ancestors_size: int = 0  # bytes of their encodings
    ancestors_fees: int = 0  # base units
    descendants_count: int = 0  # transactions
    descendants_size: int = 0  # bytes of their encodings

    def usage(self) -> int:
        """Heap bytes: the object and its ints (the shared small ones cost nothing)."""
        return (
            RELATIVES_BYTES
            + _int_heap(self.ancestors_count)
            + _int_heap(self.ancestors_size)
            + _int_heap(self.ancestors_fees)
            + _int_heap(self.descendants_count)
            + _int_heap(self.descendants_size)
        )


@dataclass(slots=True, eq=False)
class MempoolEntry:
    raw: bytes  # the transaction's canonical encoding
    txid: bytes  # sha256d(raw); also its key in the pool
    fee: int  # base units: inputs minus outputs
    spent_packed: bytes  # the coins its inputs spend, SPENT_COIN each, in input order
    time: float  # unix seconds when it entered
    parent_set: set[bytes] | None = None  # txids of pool transactions it spends (None: none)
    child_set: set[bytes] | None = None  # txids of pool transactions spending it (None: none)
    relatives: Relatives | None = None  # its package totals (None: no pool relatives, most)

    @classmethod
    def create(
        cls, tx: Transaction, fee: int, spent: Sequence[Coin], time: float, parents: set[bytes]
    ) -> MempoolEntry:
        return cls(tx.raw, tx.txid, fee, pack_coins(spent), time, parents or None)

    @property
    def tx(self) -> Transaction:
        """The transaction, decoded again from the bytes the pool checked when it entered
        (they passed every shape check then: none again, and the txid is known)."""
        return Transaction.from_stored(decode_stored(self.raw), self.raw, self.txid)

    @property
    def spent(self) -> list[Coin]:
        return unpack_coins(self.spent_packed)

    @property
    def parents(self) -> set[bytes] | frozenset[bytes]:
        return self.parent_set if self.parent_set is not None else frozenset()

    @property
    def children(self) -> set[bytes] | frozenset[bytes]:
        return self.child_set if self.child_set is not None else frozenset()

    @property
    def size(self) -> int:
        return len(self.raw)

    @property
    def fee_rate(self) -> float:
        return self.fee / len(self.raw)

    def add_to_relatives(
        self,
        ancestors: int,
        ancestors_size: int,
        fees: int,
        descendants: int,
        descendants_size: int,
    ) -> None:
        """Add to its package totals (negative: take away); none left drops the object."""
        r = self.relatives
        if r is None:
            r = self.relatives = Relatives()
        r.ancestors_count += ancestors
        r.ancestors_size += ancestors_size
        r.ancestors_fees += fees
        r.descendants_count += descendants
        r.descendants_size += descendants_size
        if r.ancestors_count == 0 and r.descendants_count == 0:
            self.relatives = None

    @property
    def ancestors_count(self) -> int:
        """Its in-pool ancestors, itself excluded."""
        return self.relatives.ancestors_count if self.relatives is not None else 0

    @property
    def ancestors_size(self) -> int:
        return self.relatives.ancestors_size if self.relatives is not None else 0

    @property
    def ancestors_fees(self) -> int:
        return self.relatives.ancestors_fees if self.relatives is not None else 0

    @property
    def descendants_count(self) -> int:
        """Its in-pool descendants, itself excluded."""
        return self.relatives.descendants_count if self.relatives is not None else 0

    @property
    def descendants_size(self) -> int:
        return self.relatives.descendants_size if self.relatives is not None else 0

    @property
    def count_with_ancestors(self) -> int:
        return self.ancestors_count + 1

    @property
    def size_with_ancestors(self) -> int:
        return self.ancestors_size + len(self.raw)

    @property
    def fees_with_ancestors(self) -> int:
        return self.ancestors_fees + self.fee

    @property
    def count_with_descendants(self) -> int:
        return self.descendants_count + 1

    @property
    def size_with_descendants(self) -> int:
        return self.descendants_size + len(self.raw)

    def output(self, index: int) -> TxOut | None:
        """Output ``index`` of the transaction, or None if it has no such output."""
        outputs = decode_stored(self.raw)[2]
        return TxOut(*outputs[index]) if index < len(outputs) else None

    def input_keys(self) -> list[bytes]:
        """The outpoint keys its inputs spend."""
        return [outpoint_key(txid, index) for txid, index, _, _ in decode_stored(self.raw)[1]]

    def may_touch(self, addr_hash: bytes) -> bool:
        """False if it certainly neither pays nor spends from ``addr_hash`` (a byte search;
        a True must be confirmed on the decoded transaction)."""
        return addr_hash in self.raw or addr_hash in self.spent_packed

    def usage(self) -> int:
        """Estimated heap bytes this entry holds, with its keys in the pool's two dicts."""
        inputs = len(self.spent_packed) // SPENT_COIN.size
        size = (
            ENTRY_BYTES
            + _heap_bytes(len(self.raw))
            + _heap_bytes(len(self.spent_packed))
            + inputs * (_heap_bytes(len(self.txid) + 4) + DICT_SLOT)
        )  # spenders' keys
        if self.parent_set is not None:
            size += _heap(self.parent_set)
        if self.child_set is not None:
            size += _heap(self.child_set)
        if self.relatives is not None:
            size += self.relatives.usage()
        return size


RELATIVES_BYTES = _heap(Relatives())  # bytes: the totals object, without its ints

# The parts of every entry's usage that do not depend on the transaction: the entry
# object, its txid, fee and time, and its slot in the pool's dict of entries.
ENTRY_BYTES = (
    _heap(MempoolEntry(b"", bytes(32), 0, b"", 0.0))
    + _heap_bytes(32)
    + INT_BYTES
    + FLOAT_BYTES
    + DICT_SLOT
)


def decoded_usage(tx: Transaction) -> int:
    """Estimated heap bytes of ``tx`` decoded, beyond its bytes and txid (its entry holds
    the same objects), with its slot in the pool's dict of decoded transactions.
    Arithmetic only: it is counted for every transaction the pool takes."""
    size = (
        DECODED_TX_BYTES
        + _tuple_heap(len(tx.inputs))
        + _tuple_heap(len(tx.outputs))
        + _int_heap(tx.version)
        + _int_heap(tx.locktime)
    )
    for txin in tx.inputs:
        size += TXIN_BYTES + _int_heap(txin.prev_index)
        size += _heap_bytes(len(txin.signature)) + _heap_bytes(len(txin.pubkey))
    for out in tx.outputs:
        size += TXOUT_BYTES + _int_heap(out.amount)
    return size


def _tuple_heap(length: int) -> int:
    return _grain(TUPLE_HEADER + 8 * length)


TUPLE_HEADER = sys.getsizeof(())  # bytes: a tuple beyond its item pointers
# the transaction object and its dict slot; an input's tuple and prev_txid; an output's
# tuple and addr_hash (their other fields vary, and are added per field)
DECODED_TX_BYTES = _heap(Transaction(0, (), (), 0)) + DICT_SLOT
TXIN_BYTES = _tuple_heap(4) + _heap_bytes(32)
TXOUT_BYTES = _tuple_heap(2) + _heap_bytes(ADDR_HASH_SIZE)
