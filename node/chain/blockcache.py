"""A small, bounded cache of decoded blocks the chain recently accepted or loaded.

A reorg disconnects the newest blocks of the active chain and connects a side
branch that arrived in earlier calls; both were decoded once already.  Keeping
the last few decoded spares re-reading and re-decoding them from LMDB.  The
cache is bounded by count and by serialized size (least recently used out
first), so a node holding a few large blocks stays small.
"""

from __future__ import annotations

from collections import OrderedDict

from node.primitives.block import Block

MAX_CACHED_BLOCKS = 32  # blocks: covers a 15-deep reorg of both branches
MAX_CACHED_BLOCK_BYTES = 2_000_000  # serialized bytes of the cached blocks (decoded: ~10x)


class BlockCache:
    """Decoded blocks by hash; holds only blocks whose bytes are stored or about to be."""

    def __init__(
        self, max_blocks: int = MAX_CACHED_BLOCKS, max_bytes: int = MAX_CACHED_BLOCK_BYTES
    ) -> None:
        self.max_blocks = max_blocks
        self.max_bytes = max_bytes
        self._blocks: OrderedDict[bytes, Block] = OrderedDict()
        self._bytes = 0  # serialized size of the blocks held

    def get(self, block_hash: bytes) -> Block | None:
        block = self._blocks.get(block_hash)
        if block is not None:
            self._blocks.move_to_end(block_hash)
        return block

    def put(self, block: Block) -> None:
        if block.size > self.max_bytes or self.max_blocks == 0:
            return
        old = self._blocks.pop(block.hash, None)
        if old is not None:
            self._bytes -= old.size
        self._blocks[block.hash] = block
        self._bytes += block.size
        while len(self._blocks) > self.max_blocks or self._bytes > self.max_bytes:
            _, evicted = self._blocks.popitem(last=False)
            self._bytes -= evicted.size

    def __contains__(self, block_hash: bytes) -> bool:
        return block_hash in self._blocks

    def __len__(self) -> int:
        return len(self._blocks)

    @property
    def size(self) -> int:
        """Serialized bytes of the blocks held."""
        return self._bytes
