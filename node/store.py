"""LMDB environment, sub-databases and key schema.

One environment per datadir (``<datadir>/chain.lmdb``).  Every change to the
chain (connect, disconnect, a whole reorg) is one write transaction, so a
crash at any instant leaves either the old or the new state on disk.

Sub-databases and their keys (all integers big-endian, so keys sort in order):

===========  ==========================================  ==========================================
name         key                                         value (canonical msgpack)
===========  ==========================================  ==========================================
meta         b"schema", b"network", b"tip", b"utxostats"  int / str / hash / [count, amount]
index        block hash (32)                              [header, height, chain_work, status, seq, failure]
blocks       block hash (32)                              the block's canonical bytes
undo         block hash (32)                              [[amount, addr_hash, height, coinbase], ...]
chain        height (8)                                   block hash of the active chain
utxo         txid (32) + index (4)                        [amount, addr_hash, height, coinbase]
txindex      txid (32)                                    [block hash, position in block]
addrhist     addr_hash (20) + height (8)                  (pos (4) + txid (32)) for each tx of that block touching it
===========  ==========================================  ==========================================
"""
from __future__ import annotations

import struct
from pathlib import Path

import lmdb

from .encoding import decode, decode_stored, encode, encode_uint
from .tx import Coin, OutPoint

SCHEMA_VERSION = 3
MAP_SIZE = 64 * 1024**3      # bytes of address space reserved for the database (sparse)
DB_NAMES = ("meta", "index", "blocks", "undo", "chain", "utxo", "txindex", "addrhist")
DROPPED_DBS = ("addrutxo",)  # schema 1's per-address coin index, removed by the upgrade to 2
ADDR_HIST_ENTRY = 36         # bytes of one addrhist entry: position (4) + txid (32)
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class StoreError(Exception):
    """The datadir cannot be used (locked, another network, newer schema)."""


class Store:
    """The LMDB environment and its named sub-databases."""

    def __init__(self, path: Path, network: str, readonly: bool = False) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        # metasync=False: one fdatasync per commit (the data pages), the meta page is
        # flushed by the next commit or the OS; LMDB keeps the database intact, and only
        # an OS crash (never a process crash) can lose the last commit (docs/design.md)
        self.env = lmdb.open(str(path / "chain.lmdb"), map_size=MAP_SIZE,
                             max_dbs=len(DB_NAMES) + len(DROPPED_DBS),
                             subdir=True, sync=True, metasync=False, readahead=False,
                             max_readers=256, readonly=readonly)
        try:
            self.db = {name: self.env.open_db(name.encode()) for name in DB_NAMES}
            with self.env.begin(write=not readonly) as txn:
                found = txn.get(b"network", db=self.db["meta"])
                if found is None and not readonly:
                    txn.put(b"network", network.encode(), db=self.db["meta"])
                    txn.put(b"schema", encode(SCHEMA_VERSION), db=self.db["meta"])
                elif found is not None and found.decode() != network:
                    raise StoreError(f"datadir {path} holds the '{found.decode()}' network, not '{network}'")
                raw_schema = txn.get(b"schema", db=self.db["meta"])
                schema = decode(raw_schema) if raw_schema is not None else SCHEMA_VERSION
                if schema > SCHEMA_VERSION:
                    raise StoreError(f"datadir {path} has schema {schema}, newer than {SCHEMA_VERSION}")
                if schema < SCHEMA_VERSION and not readonly:
                    self._upgrade(txn, schema)
        except BaseException:
            # a refused datadir must not stay open: a second environment on the same
            # files in this process would share (and on close drop) LMDB's locks
            self.env.close()
            raise

    def _upgrade(self, txn, schema: int) -> None:
        """Bring an older datadir to this schema inside ``txn`` (the one that opens it)."""
        if schema < 2:
            self._upgrade_to_2(txn)
        # 2 -> 3: the UTXO digest is computed on demand, no longer stored with the totals
        meta = self.db["meta"]
        stats = txn.get(b"utxostats", db=meta)
        if stats is not None:
            txn.put(b"utxostats", encode(decode(stats)[:2]), db=meta)
        txn.put(b"schema", encode(SCHEMA_VERSION), db=meta)

    def _upgrade_to_2(self, txn) -> None:
        """Schema 1 -> 2: drop ``addrutxo``, and regroup ``addrhist`` from one key per
        (address, height, position, txid) to one key per (address, height) holding that
        block's entries."""
        for name in DROPPED_DBS:
            txn.drop(self.env.open_db(name.encode(), txn=txn), delete=True)
        hist = self.db["addrhist"]
        grouped: dict[bytes, list[bytes]] = {}
        for old_key in txn.cursor(db=hist).iternext(values=False):   # sorted: position order
            grouped.setdefault(old_key[:28], []).append(old_key[28:])
        txn.drop(hist, delete=False)
        cursor = txn.cursor(db=hist)
        for key, entries in grouped.items():
            cursor.put(key, b"".join(entries), append=True)

    def close(self) -> None:
        self.env.close()


# --- key and value codecs ----------------------------------------------------------

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
    return [(height, _U32.unpack_from(value, at)[0], value[at + 4:at + ADDR_HIST_ENTRY])
            for at in range(0, len(value), ADDR_HIST_ENTRY)]


def parse_outpoint(key: bytes) -> OutPoint:
    return OutPoint(key[:32], _U32.unpack_from(key, 32)[0])


def encode_coin(coin: Coin) -> bytes:
    return encode([coin.amount, coin.addr_hash, coin.height, int(coin.coinbase)])


def tx_location_prefix(block_hash: bytes) -> bytes:
    """The ``txindex`` value ``encode([block_hash, position])`` without its last field:
    append ``encode_uint(position)``."""
    return b"\x92\xc4\x20" + block_hash      # a 2-element array, then a 32-byte bin


COIN_PREFIX = b"\x94"              # a coin record: a 4-element array ...
ADDR_HASH_PREFIX = b"\xc4\x14"     # ... whose second field is a 20-byte bin


def coin_suffix(height: int, coinbase: bool) -> bytes:
    """The encoding of a coin's last two fields, shared by all outputs of a block's
    (non-)coinbase transactions."""
    return encode_uint(height) + bytes((int(coinbase),))


def encode_coin_fields(amount: int, addr_hash: bytes, suffix: bytes) -> bytes:
    """``encode_coin(Coin(amount, addr_hash, height, coinbase))``, with ``suffix`` from
    ``coin_suffix(height, coinbase)``: built field by field for connecting blocks."""
    return COIN_PREFIX + encode_uint(amount) + ADDR_HASH_PREFIX + addr_hash + suffix


def decode_coin(data: bytes) -> Coin:
    amount, addr_hash, height, coinbase = decode_stored(data)
    return Coin(amount, addr_hash, height, bool(coinbase))
