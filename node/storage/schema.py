"""The key schema of the chain's LMDB store: sub-databases, keys, values and their codecs.

Sub-databases and their keys (all integers big-endian, so keys sort in order):

=========  ======================================  =============================================
name       key                                     value (canonical msgpack)
=========  ======================================  =============================================
meta       schema, network, tip, utxostats         int / str / hash / [count, amount]
index      block hash (32)                         [header, height, work, status, seq, failure]
blocks     block hash (32)                         the block's canonical bytes
undo       block hash (32)                         [utxo key (12) + value of each spent coin, ...]
chain      height (8)                              block hash of the active chain
utxo       height (4) + position (4) + index (4)   [amount, addr_hash, txid]
txindex    txid (32)                               [block hash, position in block]
txrecent   txid (32)                               as txindex: the entries of recent connects
addrhist   addr_hash (20) + height (8)             pos (4) + txid (32) per block tx touching it
=========  ======================================  =============================================

A coin is keyed by where its transaction sits in the active chain (height,
position in block, output index), not by its outpoint: the outputs a block
creates are then neighbours in the tree, and connecting or disconnecting a
block dirties a few pages instead of one per output (every dirty page is
written and flushed by the commit).  An outpoint is found through ``txindex``
(txid -> block, position); the coin's value repeats its txid, which a reader
compares, since ``txindex`` keeps entries of disconnected blocks.  A coin at
position 0 is a coinbase output.

Connects write their ``txindex`` entries to ``txrecent``, a small tree, and
``ChainState.merge_recent_txindex`` moves them into ``txindex`` in a
transaction of its own once there are TXRECENT_MERGE of them: a block's
entries then dirty a few pages of the small tree instead of one page of the
large one each.  Readers look in ``txrecent`` first (it holds the newer entry).
"""

from __future__ import annotations

import struct

import lmdb

from node.primitives.encoding import encode, encode_uint
from node.primitives.tx import Coin, OutPoint

SCHEMA_VERSION = 5
DB_NAMES = ("meta", "index", "blocks", "undo", "chain", "utxo", "txindex", "txrecent", "addrhist")
DROPPED_DBS = ("addrutxo",)  # schema 1's per-address coin index, removed by the upgrade to 2
ADDR_HIST_ENTRY = 36  # bytes of one addrhist entry: position (4) + txid (32)
COIN_KEY_SIZE = 12  # bytes of a utxo key: height, position, index (u32 each)
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_COIN_KEY = struct.Struct(">III")
_new_tuple = tuple.__new__

Databases = dict[str, "lmdb._Database"]  # a store's open sub-databases by name


def outpoint_key(txid: bytes, index: int) -> bytes:
    return txid + _U32.pack(index)


def height_key(height: int) -> bytes:
    return _U64.pack(height)


def addr_hist_key(addr_hash: bytes, height: int) -> bytes:
    return addr_hash + _U64.pack(height)


def addr_hist_entry(position: int, txid: bytes) -> bytes:
    """One transaction in an addrhist value (values are these, concatenated in block order)."""
    return _U32.pack(position) + txid


def parse_addr_hist(key: bytes, value: bytes) -> list[tuple[int, int, bytes]]:
    """(height, position, txid) of each entry of an addrhist record, in block order."""
    height = _U64.unpack_from(key, 20)[0]
    return [
        (height, _U32.unpack_from(value, at)[0], value[at + 4 : at + ADDR_HIST_ENTRY])
        for at in range(0, len(value), ADDR_HIST_ENTRY)
    ]


def encode_coin(coin: Coin) -> bytes:
    """A coin as one record, [amount, addr_hash, height, coinbase]: the UTXO digest's
    form of it (``utxoset.digest_term``), whatever the layout on disk."""
    return encode([coin.amount, coin.addr_hash, coin.height, int(coin.coinbase)])


def coin_key(height: int, position: int, index: int) -> bytes:
    """The ``utxo`` key of output ``index`` of the transaction at ``position`` in the
    active block at ``height``."""
    return _COIN_KEY.pack(height, position, index)


def coin_key_prefix(height: int, position: int) -> bytes:
    """The first 8 bytes of the keys of one transaction's outputs."""
    return _COIN_KEY.pack(height, position, 0)[:8]


def coin_value(amount: int, addr_hash: bytes, txid: bytes) -> bytes:
    """``encode([amount, addr_hash, txid])``, built field by field for connecting blocks."""
    return b"\x93" + encode_uint(amount) + b"\xc4\x14" + addr_hash + b"\xc4\x20" + txid


def coin_fields(value: bytes) -> tuple[int, bytes, bytes]:
    """(amount, addr_hash, txid) of a ``utxo`` value the node wrote (``coin_value``):
    sliced, the last two fields being of fixed size."""
    amount = value[1] if len(value) == 58 else int.from_bytes(value[2:-56], "big")
    return amount, value[-54:-34], value[-32:]


def coin_from_record(key: bytes, value: bytes) -> Coin:
    """The coin of a ``utxo`` record (a coin at position 0 is a coinbase output)."""
    height, position, _ = _COIN_KEY.unpack(key)
    amount, addr_hash, _ = coin_fields(value)
    return _new_tuple(Coin, (amount, addr_hash, height, position == 0))  # Coin(...), in C


def outpoint_from_record(key: bytes, value: bytes) -> OutPoint:
    """The outpoint of a ``utxo`` record: its txid (in the value) and output index."""
    return OutPoint(value[-32:], _U32.unpack_from(key, 8)[0])


def undo_entry(key: bytes, value: bytes) -> bytes:
    """One spent coin in a block's ``undo`` array: its ``utxo`` key and value as one bin
    (``encode(key + value)``; a coin record is under 256 bytes)."""
    return b"\xc4" + bytes((len(key) + len(value),)) + key + value


def tx_location_position(raw: bytes) -> int:
    """The position field of a ``txindex`` value (``tx_location_prefix`` + uint)."""
    return raw[35] if len(raw) == 36 else int.from_bytes(raw[36:], "big")


def tx_location_prefix(block_hash: bytes) -> bytes:
    """The ``txindex`` value ``encode([block_hash, position])`` without its last field:
    append ``encode_uint(position)``."""
    return b"\x92\xc4\x20" + block_hash  # a 2-element array, then a 32-byte bin
