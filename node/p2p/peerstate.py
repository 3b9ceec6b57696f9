"""What the node knows of each established peer, in one table that sync and relay share.

The network layer (``network.Peer``) knows a connection; this is what the node's
P2P code adds to it: the best header the peer is known to have, the blocks
asked of it, the inventory it is known to have, its download branch.  Bitcoin
Core keeps the same in ``CNodeState`` (net_processing), apart from ``CNode``.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import ValuesView
from dataclasses import dataclass, field

from network.peer import Peer
from node.chain.index import BlockIndexEntry
from node.chain.presync import HeadersPresync

KNOWN_INVENTORY = 50_000  # hashes remembered per peer as "it has this"
ASKED_WHOLE = 8  # blocks remembered per peer as asked whole after a compact block


class BoundedSet:
    """A set that forgets its oldest members beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def add(self, item: bytes) -> None:
        self._items[item] = None
        self._items.move_to_end(item)
        if len(self._items) > self.limit:
            self._items.popitem(last=False)

    def __contains__(self, item: object) -> bool:
        return item in self._items

    def clear(self) -> None:
        self._items.clear()


@dataclass(eq=False)
class PeerState:
    """What the node knows of one established peer."""

    peer: Peer  # the connection
    # most-work header the peer is known to have
    best_known: BlockIndexEntry | None = None
    # block hash -> monotonic time requested
    in_flight: dict[bytes, float] = field(default_factory=dict)
    # txids/hashes it has
    known: BoundedSet = field(default_factory=lambda: BoundedSet(KNOWN_INVENTORY))
    # branch to download, fork+1 .. best_known
    path: list[BlockIndexEntry] = field(default_factory=list)
    path_for: BlockIndexEntry | None = None  # best_known the path was computed for
    # path[:cursor] were requested, arrived or had data when considered
    cursor: int = 0
    lacks: set[bytes] = field(default_factory=set)  # blocks it answered ``notfound`` for
    last_new_block: float = 0.0  # monotonic time it last sent a block that became our tip
    presync: HeadersPresync | None = None  # its low-work header chain being checked, if any
    presync_progress: float = 0.0  # monotonic time that presync last took a batch
    compact: bool = False  # it sent ``sendcmpct`` of our encoding: blocks go to it compact
    compact_hb: bool = False  # it asked for compact blocks before validation (high-bandwidth)
    # blocks asked of it whole because its compact block did not rebuild: it answers for
    # them as for the compact block (relayed early), not as for a ``block``
    asked_whole: BoundedSet = field(default_factory=lambda: BoundedSet(ASKED_WHOLE))
    # txids accepted since its last ``inv``, in order, to announce when its timer fires
    tx_to_send: dict[bytes, None] = field(default_factory=dict)
    inv_timer: asyncio.TimerHandle | None = None  # armed while tx_to_send waits (trickle.py)


class PeerTable:
    """The established peers' states by peer id.  ``BlockSync`` adds a state when a
    handshake completes and removes it on disconnect (after releasing its requests)."""

    def __init__(self) -> None:
        self._states: dict[int, PeerState] = {}

    def add(self, peer: Peer) -> PeerState:
        state = self._states[peer.id] = PeerState(peer)
        return state

    def remove(self, peer: Peer) -> PeerState | None:
        return self._states.pop(peer.id, None)

    def get(self, peer: Peer) -> PeerState | None:
        return self._states.get(peer.id)

    def by_id(self, peer_id: int) -> PeerState | None:
        return self._states.get(peer_id)

    def values(self) -> ValuesView[PeerState]:
        """The states, live: take ``list(...)`` to change the table while iterating."""
        return self._states.values()

    def __len__(self) -> int:
        return len(self._states)
