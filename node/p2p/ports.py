"""What the P2P code needs of the node and of the network layer, declared, so that it
gets collaborators rather than the whole ``Node`` (btcd: ``netsync.Config``).

``runtime.Node`` provides ``NodePort``; ``network.PeerManager`` provides ``Punisher``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from network.peer import Peer
from node.chain.chainstate import AcceptResult
from node.primitives.block import Block
from node.primitives.tx import Transaction

T = TypeVar("T")

# The stages of a block's path through a node, each timed per block into the histogram
# ``obol_block_stage_seconds{stage=...}`` (docs/api.md).  A block mined by the node itself
# has no decode or early-relay stage.
# relay: a block message's decoded body made a Block (ids hashed); for a compact block,
# also rebuilt from the mempool (or, once its ``blocktxn`` came, finished from it)
STAGE_DECODE = "decode"
STAGE_EARLY_RELAY = "early_relay"  # pre-relay checks (header, proof of work, context-free
# rules) and the push to high-bandwidth peers as ``powblock``
STAGE_QUEUE = "queue"  # queued for validation until the chain thread starts accepting it
STAGE_VALIDATE = "validate"  # ``accept_blocks`` on the chain thread, its commit excepted
STAGE_COMMIT = "commit"  # the LMDB commit of the switch that connected it
STAGE_TIP = "tip"  # accepted until relay, miner and event subscribers were told (event loop)
BLOCK_STAGES = (
    STAGE_DECODE,
    STAGE_EARLY_RELAY,
    STAGE_QUEUE,
    STAGE_VALIDATE,
    STAGE_COMMIT,
    STAGE_TIP,
)


class NodePort(Protocol):
    """The running node: its chain thread, its validation queues, its frame format."""

    async def in_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the chain thread, the only one that changes chain or mempool."""
        ...

    def queue_block(self, block: Block, requested: bool = True) -> asyncio.Future[AcceptResult]:
        """Queue a block for validation; the future holds its outcome or ValidationError.
        ``requested`` False: a peer pushed it unasked (stored only if worth it)."""
        ...

    def queue_tx(self, tx: Transaction, source: Any, on_outcome: Callable[[Any], None]) -> None:
        """Queue a transaction for the mempool (announced to peers other than ``source``
        once accepted); ``on_outcome`` is called with the entry or the error."""
        ...

    def block_stage(self, stage: str, seconds: float) -> None:
        """Record that one block spent ``seconds`` in ``stage`` (one of ``BLOCK_STAGES``)."""
        ...

    def frame(self, payload: bytes) -> bytes:
        """A ready-to-send frame (this network's magic) around an encoded message."""
        ...


class Punisher(Protocol):
    """Misbehaviour accounting for peers (the network layer's ``PeerManager``)."""

    def misbehaving(self, peer: Peer, score: int, code: str, message: str = "") -> None:
        """Add ``score`` to the peer's misbehaviour; at the threshold it is disconnected
        and banned."""
        ...
