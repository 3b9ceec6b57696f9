"""Address gossip limits: how many addresses a peer may make us process, and to whom a
fresh address is passed on (Bitcoin Core's ``ProcessAddrs``, ``RelayAddress``).

* **Rate limit.** Each connection has a token bucket of addresses (Core 22): it
  starts with one token, refills at MAX_ADDR_RATE_PER_SECOND up to
  MAX_ADDR_PROCESSING_TOKEN_BUCKET, and is credited a full ``addr`` when we send
  ``getaddr``, so the answer we asked for fits.  The addresses of an ``addr`` beyond
  the tokens are dropped unread (a random choice of them is kept, so a sender cannot
  pick which get through).  Peers with the ``addr`` permission are not limited.
* **Relay.** An ``addr`` of at most ADDR_RELAY_MAX_ENTRIES entries (not a
  ``getaddr`` answer) has each address it taught us, that was seen within
  ADDR_RELAY_FRESHNESS, passed on at once to ADDR_RELAY_PEERS established peers
  other than its sender that may learn it (``netaddr.may_learn``).  The peers are
  chosen by a keyed hash of the address, the peer and the day, so repeats of one
  address go to the same peers and do not spread further; an address is relayed
  only when the book's record changed (new, or seen later), so a relay that comes
  back is not relayed again.  Since processed addresses are rate-limited, a node
  relays at most ADDR_RELAY_PEERS times what it was allowed to process.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

from .addrman import KnownAddress
from .addrtable import KeyedHash
from .netaddr import may_learn
from .peer import Peer
from .protocol import MAX_ADDR, AddrEntry, format_address
from .ratelimit import TokenBucket

MAX_ADDR_RATE_PER_SECOND = 0.1  # addresses/s a peer may make us process (Core's name and value)
MAX_ADDR_PROCESSING_TOKEN_BUCKET = MAX_ADDR  # addresses: the bucket's burst (Core: 1,000)
ADDR_BUCKET_START = 1.0  # addresses a new connection may send at once (Core)
ADDR_RELAY_MAX_ENTRIES = 10  # entries: a larger `addr` (a getaddr answer) is not relayed (Core)
ADDR_RELAY_FRESHNESS = 600.0  # seconds: only addresses seen this recently are relayed (Core)
ADDR_RELAY_PEERS = 2  # peers each relayed address goes to (Core: 2 if reachable)
ADDR_RELAY_ROTATION = 24 * 3600.0  # seconds: how long the peers chosen for an address stay


def addr_token_bucket() -> TokenBucket:
    """The address bucket of a new connection."""
    return TokenBucket(
        MAX_ADDR_RATE_PER_SECOND, MAX_ADDR_PROCESSING_TOKEN_BUCKET, initial=ADDR_BUCKET_START
    )


def relay_plan(
    key: bytes, entries: Sequence[KnownAddress], now: float, peers: Sequence[Peer], source: Peer
) -> dict[Peer, list[AddrEntry]]:
    """Which peers get which of ``entries`` (the changed records of one small ``addr``
    from ``source``): each fresh one goes to the ADDR_RELAY_PEERS of ``peers`` ranked
    first by a keyed hash (Core's ``RelayAddress``)."""
    plan: dict[Peer, list[AddrEntry]] = {}
    h = KeyedHash(key)
    for entry in entries:
        if not now - ADDR_RELAY_FRESHNESS <= entry.last_seen:
            continue
        name = format_address(entry.host, entry.port)
        offset = h("relay-offset", name) % ADDR_RELAY_ROTATION  # staggered per address
        epoch = int((now + offset) // ADDR_RELAY_ROTATION)
        candidates = [
            p
            for p in peers
            if p is not source and p.established and not p.closed and may_learn(entry.host, p.host)
        ]
        chosen = heapq.nsmallest(
            ADDR_RELAY_PEERS, candidates, key=lambda p: h("relay", name, epoch, p.id)
        )
        item = AddrEntry(entry.host, entry.port, int(entry.last_seen))
        for target in chosen:
            plan.setdefault(target, []).append(item)
    return plan
