"""Orphan blocks: blocks whose parent is unknown, kept until the parent arrives.

Bitcoin Core dropped its orphan-block pool for headers-first sync; Obol keeps a
small one so that a block pushed ahead of its parent (a peer one block ahead, a
reorder on the wire) is connected without a second download.  Only a block with
valid proof of work on its own bits may enter: junk must not flush the pool.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from node.consensus.params import NetworkParams
from node.consensus.pow import bits_to_target, hash_meets_target
from node.primitives.block import Block, BlockHeader, short_hash
from node.primitives.errors import BlockValidationError

log = logging.getLogger("obol.chain")

MAX_ORPHANS = 100  # blocks whose parent is unknown, kept until it arrives


def check_orphan_pow(header: BlockHeader, params: NetworkParams) -> None:
    """The context-free part of the header check: the proof of work meets the header's
    own target, which is within the network's limit."""
    target = bits_to_target(header.bits)  # raises bad-diffbits
    if target > params.pow_limit:
        raise BlockValidationError("bad-diffbits", "target above the proof-of-work limit")
    if not hash_meets_target(header.hash, target):
        raise BlockValidationError("high-hash", "proof of work does not meet the target")


class OrphanPool:
    """At most ``limit`` orphan blocks by hash; the oldest goes first when full."""

    def __init__(self, limit: int = MAX_ORPHANS) -> None:
        self.limit = limit
        self._blocks: dict[bytes, tuple[Block, float]] = {}  # hash -> (block, time it came)

    def __len__(self) -> int:
        return len(self._blocks)

    def __contains__(self, block_hash: object) -> bool:
        return block_hash in self._blocks

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._blocks)

    def add(self, block: Block, now: float) -> None:
        if block.hash in self._blocks:
            return
        if len(self._blocks) >= self.limit:
            oldest = min(self._blocks, key=lambda k: self._blocks[k][1])
            del self._blocks[oldest]
        self._blocks[block.hash] = (block, now)
        log.debug(
            "orphan block %s (parent %s unknown)",
            short_hash(block.hash),
            short_hash(block.header.prev_hash),
        )

    def take_children(self, parent_hash: bytes) -> list[Block]:
        """Remove and return the orphans whose parent is ``parent_hash``."""
        children = [h for h, (b, _) in self._blocks.items() if b.header.prev_hash == parent_hash]
        return [self._blocks.pop(h)[0] for h in children]

    def root(self, block_hash: bytes) -> bytes | None:
        """The missing ancestor hash of the orphan chain ending at ``block_hash``, to ask
        peers for (None if ``block_hash`` is no orphan)."""
        item = self._blocks.get(block_hash)
        while item is not None:
            prev = item[0].header.prev_hash
            item = self._blocks.get(prev)
            if item is None:
                return prev
        return None
