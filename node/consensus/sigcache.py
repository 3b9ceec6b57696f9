"""Transactions whose signatures are known good (Bitcoin Core: the script execution cache).

A transaction's signatures are a pure function of its bytes, the coins it spends and
the network id.  Its txid is the hash of all its bytes, signatures included, and a coin
is named by the txid and index of the output that made it, so the same txid always
spends the same coins: once the mempool has verified a transaction's signatures, a
block holding that txid need not verify them again.  Every other rule of the block
(the coins still unspent, maturity, amounts, the coinbase) is checked as before.

This is what lets a block whose transactions every node already holds connect without
a single signature check, as in Core; the cache is only an accelerator, never a source
of validity for anything not verified by this node.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

# txids remembered (~100 bytes each in a dict: ~20 MB).  A full default mempool holds
# fewer; Core's cache is 32 MB.
MAX_VERIFIED = 200_000


class VerifiedTxs:
    """A bounded set of txids whose signatures verified, oldest forgotten first.  Used from
    the event loop and the chain thread: every operation holds the lock."""

    def __init__(self, capacity: int = MAX_VERIFIED) -> None:
        self.capacity = capacity  # txids kept at most
        self._txids: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._txids)

    def add(self, txids: list[bytes]) -> None:
        """Remember ``txids``: their signatures have just been verified."""
        if self.capacity <= 0:
            return
        with self._lock:
            for txid in txids:
                self._txids[txid] = None
            while len(self._txids) > self.capacity:
                self._txids.popitem(last=False)

    def take(self, txid: bytes) -> bool:
        """True if ``txid`` was remembered; it is forgotten (a block has now used it, as
        Core erases an entry once a block's validation read it)."""
        with self._lock:
            return self._txids.pop(txid, False) is None

    def clear(self) -> None:
        with self._lock:
            self._txids.clear()
