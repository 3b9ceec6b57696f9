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

    def frame(self, payload: bytes) -> bytes:
        """A ready-to-send frame (this network's magic) around an encoded message."""
        ...


class Punisher(Protocol):
    """Misbehaviour accounting for peers (the network layer's ``PeerManager``)."""

    def misbehaving(self, peer: Peer, score: int, code: str, message: str = "") -> None:
        """Add ``score`` to the peer's misbehaviour; at the threshold it is disconnected
        and banned."""
        ...
