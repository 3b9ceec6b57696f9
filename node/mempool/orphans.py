"""Orphan transactions: ones whose inputs are unknown, kept a while in case a parent comes.

Bitcoin Core's ``TxOrphanage``.  A transaction relayed before its parent (or
whose parent this node has not seen yet) would otherwise be validated again
every time a peer sends it, and forgotten; here it is kept, bounded in count,
size and time, and offered to the mempool again when a transaction it spends
is accepted.  One peer cannot fill the pool for everyone: a peer over its share
loses its own oldest orphan first, and a pool full of many peers' orphans
loses one at random (an attacker cannot predict which to push out).  What is
pushed out or expires is reported (``on_evict``), so that the relay can refuse
it for a while rather than validate it again when it is sent again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from node.primitives.tx import MAX_TX_SIZE, Transaction

MAX_ORPHAN_TXS = 100  # orphan transactions kept (Bitcoin: DEFAULT_MAX_ORPHAN_TRANSACTIONS)
MAX_ORPHANS_PER_PEER = 25  # of those, from one peer
MAX_ORPHAN_SIZE = MAX_TX_SIZE  # bytes: a larger transaction is not kept
ORPHAN_EXPIRY = 20 * 60  # seconds an orphan is kept (Bitcoin: ORPHAN_TX_EXPIRE_TIME)


@dataclass(frozen=True, slots=True)
class Orphan:
    tx: Transaction  # the transaction
    peer: int  # id of the peer it came from
    expires: float  # clock time after which it is dropped


class OrphanTxPool:
    """Orphans by txid, with an index from each txid they spend to the orphans spending it."""

    def __init__(
        self,
        limit: int = MAX_ORPHAN_TXS,
        per_peer: int = MAX_ORPHANS_PER_PEER,
        rng: random.Random | None = None,
        on_evict: Callable[[bytes], None] = lambda txid: None,
    ) -> None:
        self.limit = limit
        self.per_peer = per_peer
        self.on_evict = on_evict  # called with each txid pushed out or expired
        self._rng = rng or random.Random()
        self._orphans: dict[bytes, Orphan] = {}
        self._by_parent: dict[bytes, set[bytes]] = {}  # txid spent -> orphan txids
        self._per_peer: dict[int, list[bytes]] = {}  # peer id -> its orphans, oldest first

    def __len__(self) -> int:
        return len(self._orphans)

    def __contains__(self, txid: object) -> bool:
        return txid in self._orphans

    def count_from(self, peer_id: int) -> int:
        return len(self._per_peer.get(peer_id, ()))

    def add(self, tx: Transaction, peer_id: int, now: float) -> bool:
        """Keep ``tx`` from peer ``peer_id``; False if it is not kept (too big, or known)."""
        if tx.txid in self._orphans or tx.size > MAX_ORPHAN_SIZE:
            return False
        mine = self._per_peer.setdefault(peer_id, [])
        if len(mine) >= self.per_peer:
            self._evict(mine[0])
        elif len(self._orphans) >= self.limit:
            self._evict(self._rng.choice(list(self._orphans)))
        self._orphans[tx.txid] = Orphan(tx, peer_id, now + ORPHAN_EXPIRY)
        for txin in tx.inputs:
            self._by_parent.setdefault(txin.prev_txid, set()).add(tx.txid)
        self._per_peer.setdefault(peer_id, []).append(tx.txid)
        return True

    def children_of(self, txid: bytes) -> list[Orphan]:
        """Remove and return the orphans that spend an output of ``txid``."""
        found = [self._orphans[o] for o in self._by_parent.get(txid, ()) if o in self._orphans]
        for orphan in found:
            self._erase(orphan.tx.txid)
        return found

    def forget(self, txids: list[bytes]) -> None:
        """Drop these orphans if kept (confirmed in a block, or accepted another way)."""
        for txid in txids:
            if txid in self._orphans:
                self._erase(txid)

    def peer_gone(self, peer_id: int) -> int:
        """Drop the orphans of a disconnected peer; return how many."""
        mine = list(self._per_peer.get(peer_id, ()))
        for txid in mine:
            self._erase(txid)
        return len(mine)

    def expire(self, now: float) -> int:
        """Drop the orphans past their expiry; return how many."""
        old = [txid for txid, o in self._orphans.items() if o.expires < now]
        for txid in old:
            self._evict(txid)
        return len(old)

    def _evict(self, txid: bytes) -> None:
        self._erase(txid)
        self.on_evict(txid)

    def _erase(self, txid: bytes) -> None:
        orphan = self._orphans.pop(txid)
        for txin in orphan.tx.inputs:
            spenders = self._by_parent.get(txin.prev_txid)
            if spenders is not None:
                spenders.discard(txid)
                if not spenders:
                    del self._by_parent[txin.prev_txid]
        mine = self._per_peer.get(orphan.peer)
        if mine is not None:
            mine.remove(txid)
            if not mine:
                del self._per_peer[orphan.peer]
