"""When accepted transactions are announced: per peer, in batches, on Poisson timers.

Bitcoin Core does not send an ``inv`` the moment a transaction enters its mempool
(``PeerManagerImpl::SendMessages``, ``m_tx_inventory_to_send``): each peer has a queue
of txids to announce, emptied in one ``inv`` when the peer's timer fires.  The timer
is a Poisson process: an outbound peer's next send is an exponential draw of mean
``outbound`` seconds from the last one; inbound peers share one such process of mean
``inbound`` (Core's ``NextInvToInbounds``), so that a spy connecting many times learns
no more than one connection would of where a transaction came from.

The batch is also what makes relay cheap: a receiver asks for all of an ``inv``'s
transactions with one ``getdata`` and validates them together (one signature batch,
one trip to the chain thread), instead of doing that for each transaction while the
node that accepted them keeps submitting.  A transaction still waits ``outbound`` (or
``inbound``) seconds on average at each hop.

* A txid is queued for every peer not known to have it; when the timer fires, those
  no longer in the mempool or learnt meanwhile to be known to the peer are dropped, the
  others go in acceptance order (parents before children) in ``inv`` messages of at
  most MAX_INV entries.
* A peer's queue holds at most TRICKLE_QUEUE_MAX txids: the one that fills it sends the
  ``inv`` at once (Core's INVENTORY_BROADCAST_MAX is what it sends per turn), so that a
  flood of transactions cannot make every peer's queue grow for a whole interval.
* A peer with the ``notrickle`` permission gets each txid at once (Core gives that to
  its ``noban`` peers; here loopback peers are ``noban`` by default, and a local test
  network should batch as a real one does).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

from network.peer import Direction
from network.permissions import PermissionFlag
from node.consensus.params import NetworkParams
from node.p2p.messages import INV_TX, MAX_INV, MSG_INV, InvItem, inv_body
from node.p2p.peerstate import PeerState, PeerTable


@dataclass(frozen=True)
class TrickleIntervals:
    """Mean seconds between two ``inv`` of transactions to one peer."""

    inbound: float  # shared by all inbound peers (Core: INBOUND_INVENTORY_BROADCAST_INTERVAL)
    outbound: float  # each outbound peer's own (Core: OUTBOUND_INVENTORY_BROADCAST_INTERVAL)


# txids queued for one peer that send its ``inv`` before its timer fires (Core:
# INVENTORY_BROADCAST_MAX); ~100 bytes each, so 125 peers' full queues take ~12 MB
TRICKLE_QUEUE_MAX = 1_000

# Core's values, for networks where blocks take minutes and privacy matters
PUBLIC_TRICKLE = TrickleIntervals(inbound=5.0, outbound=2.0)
# regtest: blocks on demand, one machine; short enough that a test's transaction crosses a
# few hops in well under a second, long enough to batch a stream of ~1,000 tx/s by ~50
REGTEST_TRICKLE = TrickleIntervals(inbound=0.1, outbound=0.05)


def default_trickle(params: NetworkParams) -> TrickleIntervals:
    """Regtest's short intervals where blocks are mined on demand, else Core's."""
    return REGTEST_TRICKLE if params.mine_on_demand else PUBLIC_TRICKLE


class TxTrickle:
    """The queues of txids to announce to each peer, and their timers."""

    def __init__(
        self,
        peers: PeerTable,
        in_mempool: Callable[[bytes], bool],
        intervals: TrickleIntervals,
        rng: random.Random | None = None,
    ) -> None:
        self.peers = peers
        self.in_mempool = in_mempool  # still worth announcing
        self.intervals = intervals
        self.rng = rng or random.Random()
        self.queue_max = TRICKLE_QUEUE_MAX  # txids that send a peer's inv at once
        self.next_inbound = 0.0  # loop time of the inbound peers' next send
        self.announced = 0  # txids sent in ``inv`` (metrics, tests)
        self.invs = 0  # ``inv`` messages of transactions sent

    def queue(self, txid: bytes, exclude: object = None) -> None:
        """Announce ``txid`` to every peer (but ``exclude``) not known to have it."""
        for state in self.peers.values():
            if state.peer is exclude or txid in state.known:
                continue
            if state.peer.has_permission(PermissionFlag.NOTRICKLE):
                state.known.add(txid)
                self._send(state, [txid])
                continue
            state.tx_to_send[txid] = None
            if len(state.tx_to_send) >= self.queue_max:
                if state.inv_timer is not None:
                    state.inv_timer.cancel()
                self.flush(state)
            elif state.inv_timer is None:
                self._arm(state)

    def _arm(self, state: PeerState) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if state.peer.direction == Direction.INBOUND:
            if self.next_inbound <= now:
                self.next_inbound = now + self.rng.expovariate(1.0 / self.intervals.inbound)
            when = self.next_inbound
        else:
            when = now + self.rng.expovariate(1.0 / self.intervals.outbound)
        state.inv_timer = loop.call_at(when, self.flush, state)

    def flush(self, state: PeerState) -> None:
        """The peer's timer fired: announce what is queued for it and still worth it."""
        state.inv_timer = None
        pending, state.tx_to_send = state.tx_to_send, {}
        if state.peer.closed or self.peers.by_id(state.peer.id) is not state:
            return
        txids = [t for t in pending if t not in state.known and self.in_mempool(t)]
        for txid in txids:
            state.known.add(txid)
        for start in range(0, len(txids), MAX_INV):
            self._send(state, txids[start : start + MAX_INV])

    def _send(self, state: PeerState, txids: list[bytes]) -> None:
        if not txids:
            return
        state.peer.send(MSG_INV, inv_body([InvItem(INV_TX, t) for t in txids]))
        self.announced += len(txids)
        self.invs += 1
