"""Block headers, blocks and the merkle tree.

Wire/disk form (canonical msgpack)::

    header = [version, prev_hash, merkle_root, timestamp, bits, nonce]
    block  = [header, [tx, ...]]

``block hash = sha256d(encode(header))``, read as a big-endian integer for the
proof-of-work comparison and shown as hex in that same byte order.

Merkle tree, domain-separated so a leaf can never pass for an inner node::

    leaf = sha256(0x00 || txid)
    node = sha256(0x01 || left || right)

A level with an odd number of nodes promotes its last node unchanged to the
next level (no duplication, so no CVE-2012-2459 mutation).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from node.primitives.crypto import sha256d
from node.primitives.encoding import (
    decode,
    decode_stored,
    element_bytes,
    encode,
    expect_bytes,
    expect_int,
    expect_list,
)
from node.primitives.errors import BlockValidationError
from node.primitives.tx import MAX_UINT32, MAX_UINT64, Transaction

MAX_BLOCK_SIZE = 1_000_000  # bytes of one encoded block (Bitcoin: MAX_BLOCK_SERIALIZED_SIZE/4)
MERKLE_LEAF_PREFIX = b"\x00"
MERKLE_NODE_PREFIX = b"\x01"


@dataclass(frozen=True, slots=True)
class BlockHeader:
    """What proof of work commits to."""

    version: int  # header format version (1)
    prev_hash: bytes  # 32-byte hash of the parent header
    merkle_root: bytes  # 32-byte merkle root of the block's txids
    timestamp: int  # unix seconds; > median of the previous 11, ≤ now + future limit
    bits: int  # compact target (Bitcoin: nBits)
    nonce: int  # free 64-bit field the miner varies
    raw: bytes = field(default=b"", compare=False, repr=False)  # canonical encoding
    hash: bytes = field(default=b"", compare=False, repr=False)  # sha256d(raw)

    @classmethod
    def create(
        cls,
        version: int,
        prev_hash: bytes,
        merkle_root: bytes,
        timestamp: int,
        bits: int,
        nonce: int,
    ) -> BlockHeader:
        raw = encode([version, prev_hash, merkle_root, timestamp, bits, nonce])
        return cls(version, prev_hash, merkle_root, timestamp, bits, nonce, raw, sha256d(raw))

    @classmethod
    def from_list(cls, obj: object, raw: bytes | None = None) -> BlockHeader:
        """Build from the decoded array; ``raw`` (its canonical bytes) if already known."""
        version, prev_hash, merkle_root, timestamp, bits, nonce = expect_list(obj, 6, "header")
        expect_int(version, 0, MAX_UINT32, "header.version")
        expect_bytes(prev_hash, 32, what="header.prev_hash")
        expect_bytes(merkle_root, 32, what="header.merkle_root")
        expect_int(timestamp, 0, MAX_UINT64, "header.timestamp")
        expect_int(bits, 0, MAX_UINT32, "header.bits")
        expect_int(nonce, 0, MAX_UINT64, "header.nonce")
        if raw is None:
            return cls.create(version, prev_hash, merkle_root, timestamp, bits, nonce)
        return cls(version, prev_hash, merkle_root, timestamp, bits, nonce, raw, sha256d(raw))

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockHeader:
        return cls.from_list(decode(data))

    def to_list(self) -> list[Any]:
        """The decoded form, ``[version, prev_hash, merkle_root, timestamp, bits, nonce]``."""
        return [
            self.version,
            self.prev_hash,
            self.merkle_root,
            self.timestamp,
            self.bits,
            self.nonce,
        ]

    def with_nonce(self, nonce: int) -> BlockHeader:
        return BlockHeader.create(
            self.version, self.prev_hash, self.merkle_root, self.timestamp, self.bits, nonce
        )


@dataclass(frozen=True, slots=True)
class Block:
    """A header and its transactions, coinbase first."""

    header: BlockHeader  # the proof-of-work part
    txs: tuple[Transaction, ...]  # coinbase first
    raw: bytes = field(default=b"", compare=False, repr=False)  # canonical encoding
    # True once ``rules.check_block`` passed on this object (its content cannot change): a
    # block rebuilt, checked before early relay and then stored is checked once, not twice
    context_free_ok: bool = field(default=False, compare=False, repr=False)

    @classmethod
    def create(cls, header: BlockHeader, txs: Sequence[Transaction]) -> Block:
        txs = tuple(txs)
        raw = encode([header.to_list(), [t.to_list() for t in txs]])
        return cls(header, txs, raw)

    @classmethod
    def from_bytes(cls, data: bytes) -> Block:
        """Strictly decode a block (DecodeError on any deviation, bad-blk-length if too big)."""
        if len(data) > MAX_BLOCK_SIZE:
            raise BlockValidationError("bad-blk-length", f"{len(data)} bytes > {MAX_BLOCK_SIZE}")
        return cls.from_list(decode(data), data)

    @classmethod
    def from_list(cls, obj: object, raw: bytes | None = None) -> Block:
        """Build from the decoded array (a P2P ``block`` body); ``raw`` if already known.

        The block is encoded (at most) once; the header's and each transaction's
        bytes are then slices of it (``element_bytes``), hashed without re-encoding."""
        header_obj, txs_obj = expect_list(obj, 2, "block")
        expect_list(txs_obj, None, "block.txs")
        if raw is None:
            raw = encode([header_obj, txs_obj])
        if len(raw) > MAX_BLOCK_SIZE:
            raise BlockValidationError("bad-blk-length", f"{len(raw)} bytes > {MAX_BLOCK_SIZE}")
        header_raw, txs_raw = element_bytes(raw)
        header = BlockHeader.from_list(header_obj, header_raw)
        txs = tuple(
            Transaction.from_list(t, r)
            for t, r in zip(txs_obj, element_bytes(txs_raw), strict=True)
        )
        return cls(header, txs, raw)

    @classmethod
    def from_stored(cls, data: bytes) -> Block:
        """Rebuild a block from this node's own ``blocks`` database: it passed the strict
        decoding (``from_bytes``/``from_list``) and the block checks before it was
        written, so it is decoded without the canonical check or shape checks.
        Never for bytes from anyone else."""
        (version, prev_hash, merkle, timestamp, bits, nonce), txs_obj = decode_stored(data)
        header_raw, txs_raw = element_bytes(data)
        header = BlockHeader(
            version, prev_hash, merkle, timestamp, bits, nonce, header_raw, sha256d(header_raw)
        )
        txs = tuple(
            [
                Transaction.from_stored(t, r)
                for t, r in zip(txs_obj, element_bytes(txs_raw), strict=True)
            ]
        )
        return cls(header, txs, data)

    def to_list(self) -> list[Any]:
        """The decoded form, ``[header, [tx, ...]]``."""
        return [self.header.to_list(), [t.to_list() for t in self.txs]]

    @property
    def hash(self) -> bytes:
        return self.header.hash

    @property
    def size(self) -> int:
        return len(self.raw)


def merkle_leaf(txid: bytes) -> bytes:
    """``sha256(0x00 || txid)``: a txid as a leaf of the tree."""
    return hashlib.sha256(MERKLE_LEAF_PREFIX + txid).digest()


def merkle_node(left: bytes, right: bytes) -> bytes:
    """``sha256(0x01 || left || right)``: the parent of two nodes."""
    return hashlib.sha256(MERKLE_NODE_PREFIX + left + right).digest()


def merkle_root(txids: Sequence[bytes]) -> bytes:
    """Domain-separated merkle root; odd nodes are promoted, never duplicated."""
    if not txids:
        return bytes(32)
    level = [merkle_leaf(t) for t in txids]
    while len(level) > 1:
        nxt = [merkle_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def merkle_branch(txids: Sequence[bytes], index: int) -> list[bytes]:
    """The siblings on the way from leaf ``index`` to the root, bottom up (an SPV proof).

    A level where the node is its level's promoted last one has no sibling and adds
    nothing; ``merkle_branch_root`` knows those levels from ``index`` and the count.
    """
    if not 0 <= index < len(txids):
        raise ValueError(f"index {index} outside a tree of {len(txids)} leaves")
    level = [merkle_leaf(t) for t in txids]
    branch: list[bytes] = []
    while len(level) > 1:
        sibling = index ^ 1
        if sibling < len(level):
            branch.append(level[sibling])
        nxt = [merkle_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        index //= 2
    return branch


def merkle_branch_root(txid: bytes, index: int, count: int, branch: Sequence[bytes]) -> bytes:
    """The root that ``branch`` proves leaf ``index`` of ``count`` leaves to be under.

    Walks the levels as ``merkle_root`` builds them: at each level of ``size`` nodes, the
    node at ``index`` pairs with ``index ^ 1`` unless it is the odd last one, which is
    promoted.  ValueError if the branch is longer or shorter than that walk needs, or
    ``index`` is outside ``count`` (a proof must name its place exactly).
    """
    if not 0 <= index < count:
        raise ValueError(f"index {index} outside a tree of {count} leaves")
    node = merkle_leaf(txid)
    size = count
    used = 0
    while size > 1:
        if index ^ 1 < size:
            if used == len(branch):
                raise ValueError("merkle branch too short")
            sibling = branch[used]
            used += 1
            node = merkle_node(node, sibling) if index % 2 == 0 else merkle_node(sibling, node)
        index //= 2
        size = (size + 1) // 2
    if used != len(branch):
        raise ValueError("merkle branch too long")
    return node


def short_hash(block_hash: bytes) -> str:
    """A block hash as logs show it: its first 8 bytes in hex and an ellipsis."""
    return block_hash.hex()[:16] + "…"
