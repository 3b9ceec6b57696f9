"""Compact blocks (Bitcoin: BIP152) in Obol's encoding: the messages, short ids, and
rebuilding a block from the transactions a node already has.

==============  ==============================================================
type            body
==============  ==============================================================
``sendcmpct``   [high_bandwidth, version]      0/1; version COMPACT_ENCODING (1)
``cmpctblock``  [header, nonce, [short id, ...], [[index, tx], ...]]
``getblocktxn`` [block hash, [index, ...]]     the transactions of a compact block missing
``blocktxn``    [block hash, [tx, ...]]        the answer, in the order asked
==============  ==============================================================

A short id is the first SHORT_ID_SIZE bytes of keyed BLAKE2b of the txid, keyed by
``sha256(header ‖ nonce)`` (Bitcoin uses SipHash-2-4 over the wtxid; BLAKE2b is in the
standard library and as keyed).  The key changes with every block and sender, so ids
that collide in one block do not collide in the next.  Prefilled transactions (the
coinbase always) carry absolute indexes in increasing order; the short ids fill the
other positions in order.

Nothing here does I/O: ``compact_relay.py`` decides who gets what, and when.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from node.p2p.messages import MAX_BLOCK_TXS
from node.primitives.block import Block, BlockHeader, merkle_root
from node.primitives.crypto import sha256
from node.primitives.encoding import (
    element_bytes,
    encode,
    encode_array,
    expect_bytes,
    expect_int,
    expect_list,
)
from node.primitives.errors import DecodeError
from node.primitives.tx import Transaction

COMPACT_ENCODING = 1  # the only ``sendcmpct`` version (Bitcoin: 1 = txid, 2 = wtxid)
SHORT_ID_SIZE = 6  # bytes of a short transaction id (Bitcoin: 6)
NONCE_MAX = 2**64 - 1  # the sender's per-block nonce, uint64


@dataclass(frozen=True, slots=True)
class CompactBlock:
    """A block announced by its header, the short ids of its transactions, and the
    transactions the sender expects the receiver to lack (the coinbase)."""

    header: BlockHeader  # the block's header (its hash is the block's)
    nonce: int  # the sender's random uint64, part of the short-id key
    short_ids: tuple[bytes, ...]  # SHORT_ID_SIZE bytes each, for the positions not prefilled
    prefilled: tuple[tuple[int, Transaction], ...]  # (absolute index, tx), indexes increasing

    @property
    def tx_count(self) -> int:
        return len(self.short_ids) + len(self.prefilled)

    def to_list(self) -> list:
        return [
            self.header.to_list(),
            self.nonce,
            list(self.short_ids),
            [[i, tx.to_list()] for i, tx in self.prefilled],
        ]

    def encoded(self) -> bytes:
        """The body's canonical bytes, built from the header's and transactions' own."""
        prefilled = [encode_array([encode(i), tx.raw]) for i, tx in self.prefilled]
        return encode_array(
            [
                self.header.raw,
                encode(self.nonce),
                encode_array([encode(s) for s in self.short_ids]),
                encode_array(prefilled),
            ]
        )


def short_id_key(header: BlockHeader, nonce: int) -> bytes:
    """The 32-byte key of a compact block's short ids: ``sha256(header ‖ nonce)``, the
    nonce as 8 bytes big-endian (Bitcoin: the SipHash key from SHA256(header ‖ nonce))."""
    return sha256(header.raw + nonce.to_bytes(8, "big"))


def short_id(key: bytes, txid: bytes) -> bytes:
    """The short id of ``txid`` under ``key``."""
    return hashlib.blake2b(txid, key=key, digest_size=SHORT_ID_SIZE).digest()


def make_compact(block: Block, nonce: int) -> CompactBlock:
    """The compact form of ``block``: the coinbase prefilled, every other tx by short id."""
    key = short_id_key(block.header, nonce)
    ids = tuple(short_id(key, tx.txid) for tx in block.txs[1:])
    return CompactBlock(block.header, nonce, ids, ((0, block.txs[0]),))


# --- parsing ---------------------------------------------------------------------------------


def parse_sendcmpct(body: object) -> tuple[bool, int]:
    """``(high_bandwidth, version)``; a version we do not know is valid (ignored)."""
    high, version = expect_list(body, 2, "sendcmpct")
    expect_int(high, 0, 1, "sendcmpct.high_bandwidth")
    expect_int(version, 0, 2**32 - 1, "sendcmpct.version")
    return bool(high), version


def parse_cmpctblock(body: object, raw: bytes | None = None) -> CompactBlock:
    """A ``cmpctblock`` body; ``raw`` (its canonical bytes) if known.  DecodeError
    ``bad-cmpctblock`` for a shape no valid block has: more transactions than a block
    holds, prefilled indexes not increasing or beyond the count, none at all."""
    header_obj, nonce, ids_obj, pre_obj = expect_list(body, 4, "cmpctblock")
    if raw is None:
        raw = encode(body)
    header_raw, _, _, pre_raw = element_bytes(raw)
    header = BlockHeader.from_list(header_obj, header_raw)
    expect_int(nonce, 0, NONCE_MAX, "cmpctblock.nonce")
    for sid in expect_list(ids_obj, None, "cmpctblock.short_ids"):
        expect_bytes(sid, SHORT_ID_SIZE, what="short id")
    expect_list(pre_obj, None, "cmpctblock.prefilled")
    count = len(ids_obj) + len(pre_obj)
    if count == 0 or count > MAX_BLOCK_TXS:
        raise DecodeError("bad-cmpctblock", f"{count} transactions")
    prefilled = []
    last = -1
    for entry, entry_raw in zip(pre_obj, element_bytes(pre_raw), strict=True):
        index, tx_obj = expect_list(entry, 2, "prefilled entry")
        if not isinstance(index, int) or isinstance(index, bool):
            raise DecodeError("bad-cmpctblock", "prefilled index: expected integer")
        if not last < index < count:
            raise DecodeError("bad-cmpctblock", f"prefilled index {index} out of order or range")
        last = index
        _, tx_raw = element_bytes(entry_raw)
        prefilled.append((index, Transaction.from_list(tx_obj, tx_raw)))
    return CompactBlock(header, nonce, tuple(ids_obj), tuple(prefilled))


def parse_getblocktxn(body: object) -> tuple[bytes, list[int]]:
    """``(block hash, indexes)``: indexes strictly increasing (``bad-getblocktxn``); their
    range is checked against the block by the server."""
    block_hash, indexes = expect_list(body, 2, "getblocktxn")
    expect_bytes(block_hash, 32, what="getblocktxn.hash")
    expect_list(indexes, None, "getblocktxn.indexes")
    last = -1
    for index in indexes:
        if not isinstance(index, int) or isinstance(index, bool) or index <= last:
            raise DecodeError("bad-getblocktxn", "indexes must be increasing integers")
        last = index
    return block_hash, indexes


def parse_blocktxn(body: object, raw: bytes | None = None) -> tuple[bytes, list[Transaction]]:
    block_hash, txs_obj = expect_list(body, 2, "blocktxn")
    expect_bytes(block_hash, 32, what="blocktxn.hash")
    expect_list(txs_obj, None, "blocktxn.txs")
    if raw is None:
        raw = encode(body)
    _, txs_raw = element_bytes(raw)
    txs = [
        Transaction.from_list(t, r) for t, r in zip(txs_obj, element_bytes(txs_raw), strict=True)
    ]
    return block_hash, txs


# --- rebuilding ------------------------------------------------------------------------------


class PartialBlock:
    """A compact block being rebuilt: its slots, filled from the prefilled transactions and
    from the candidates whose short id matches exactly one slot (Bitcoin:
    ``PartiallyDownloadedBlock``).  ``duplicate`` is True if two slots share a short id:
    then no candidate can be placed safely and the block must be fetched whole."""

    def __init__(self, compact: CompactBlock) -> None:
        self.compact = compact
        self.slots: list[Transaction | None] = [None] * compact.tx_count
        self._by_id: dict[bytes, int] = {}  # short id -> slot index
        self.duplicate = False  # two positions of the block share a short id
        self.key = short_id_key(compact.header, compact.nonce)  # of this block's short ids
        self._matched: dict[int, bytes] = {}  # slot -> first candidate txid that matched it
        self._clashed: set[int] = set()  # slots more than one candidate matched
        prefilled = dict(compact.prefilled)
        free = (i for i in range(compact.tx_count) if i not in prefilled)
        for index, tx in compact.prefilled:
            self.slots[index] = tx
        for index, sid in zip(free, compact.short_ids, strict=True):
            if sid in self._by_id:
                self.duplicate = True
            self._by_id[sid] = index

    def match(self, txids: Iterable[bytes]) -> None:
        """Look the candidates ``txids`` up by short id (may be called for several chunks);
        a slot that two different candidates match is left empty."""
        if self.duplicate:
            return
        key = self.key
        for txid in txids:
            index = self._by_id.get(short_id(key, txid))
            if index is None:
                continue
            seen = self._matched.setdefault(index, txid)
            if seen != txid:
                self._clashed.add(index)

    def place(self, fetch: Callable[[bytes], Transaction | None]) -> int:
        """Fill the slots matched by exactly one candidate with ``fetch(txid)`` (None: it is
        gone meanwhile, the slot stays empty).  Returns how many slots were filled."""
        placed = 0
        for index, txid in self._matched.items():
            if index in self._clashed:
                continue
            tx = fetch(txid)
            if tx is not None:
                self.slots[index] = tx
                placed += 1
        self._matched.clear()
        self._clashed.clear()
        return placed

    def missing(self) -> list[int]:
        """The indexes still empty, in order."""
        return [i for i, tx in enumerate(self.slots) if tx is None]

    def fill_missing(self, txs: Sequence[Transaction]) -> bool:
        """Put the ``blocktxn`` answer in the empty slots, in order; False if the count does
        not match what was asked."""
        missing = self.missing()
        if len(txs) != len(missing):
            return False
        for index, tx in zip(missing, txs, strict=True):
            self.slots[index] = tx
        return True

    def block(self) -> Block | None:
        """The rebuilt block once every slot is filled, or None if its merkle root is not the
        header's: a short-id collision put a wrong transaction in a slot (not the sender's
        fault; the block is fetched whole)."""
        txs = self.slots
        if any(tx is None for tx in txs):
            return None
        full: list[Transaction] = [tx for tx in txs if tx is not None]
        if merkle_root([tx.txid for tx in full]) != self.compact.header.merkle_root:
            return None
        raw = encode_array([self.compact.header.raw, encode_array([tx.raw for tx in full])])
        return Block(self.compact.header, tuple(full), raw)
