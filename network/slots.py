"""Inbound slots: address groups, the per-group limit and eviction.

A node has ``max_inbound`` slots for connections others open to it.  An attacker
holding them all (sockets that never finish the handshake, or idle peers) would
shut honest nodes out, so, as Bitcoin Core does:

* **Address groups** (Core's netgroup): IPv4 addresses group by /16, IPv6 by
  /32, so that one provider's block of addresses counts as one source.  At most
  ``max_inbound_per_group`` inbound connections come from one group (Core has no
  such limit and relies on eviction alone; with our 32 slots a cheap cap helps).
  Loopback hosts are each their own group: the local test network gives every
  node its own 127.0.0.x (docs/testnet.md), and a client on loopback already
  owns the machine.
* **Eviction** (Core's ``AttemptToEvictConnection``): when every inbound slot is
  taken, a new connection is admitted by closing one that is not protected.
  Protected are the 4 peers of the highest keyed groups (a secret key per node:
  an attacker cannot choose addresses that win), the 8 lowest pings, the 4 that
  most recently gave us a transaction and the 4 a block, then the older half of
  the rest.  Only established peers earn the ping, transaction and block
  protections (Core's fixed counts would otherwise shelter sockets that never
  finished the handshake in a pool of 32).  Of the rest, discouraged peers go
  first; else the group with the most connections (ties: the one with the
  youngest member) loses its youngest.  Peers with ``noban`` are never evicted
  nor counted against a group.  If nobody is left to evict, the newcomer is
  refused.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .netaddr import ip_group, parse_ip
from .protocol import canonical_host

PROTECT_BY_GROUP = 4  # peers of the highest keyed groups kept (Core: 4)
PROTECT_BY_PING = 8  # lowest-ping peers kept (Core: 8)
PROTECT_BY_TX = 4  # peers that most recently gave us a transaction kept (Core: 4)
PROTECT_BY_BLOCK = 4  # peers that most recently gave us a block kept (Core: 4)
PROTECT_OLDEST_SHARE = 0.5  # share of the remaining, longest connected first, kept (Core: 1/2)


def netgroup(host: str) -> str:
    """The address group of ``host``: ``"4:a.b"`` for IPv4 (/16), ``"6:…"`` for IPv6
    (/32), the whole address for loopback, the lower-cased text for a host name."""
    ip = parse_ip(host)
    return "name:" + canonical_host(host) if ip is None else ip_group(ip)


@dataclass(frozen=True)
class Candidate:
    """What eviction knows of one inbound connection."""

    id: int  # the connection's id (larger = younger)
    group: str  # its address group (``netgroup``)
    connected_seconds: float  # how long it has been open
    established: bool  # the handshake completed
    ping: float | None  # seconds: last ping round trip (None: never answered)
    last_block_time: float  # monotonic seconds it last gave us a new block (0: never)
    last_tx_time: float  # monotonic seconds it last gave us a new transaction (0: never)
    discouraged: bool  # its host was discouraged when it connected: evict first


def keyed_group(group: str, key: bytes) -> int:
    """A per-node secret ordering of groups (Core: nKeyedNetGroup)."""
    return int.from_bytes(hashlib.sha256(key + group.encode()).digest()[:8], "big")


def select_to_evict(candidates: Sequence[Candidate], key: bytes) -> int | None:
    """The id of the connection to close to make room, or None if all are protected."""
    rest = list(candidates)
    _protect(rest, lambda c: keyed_group(c.group, key), PROTECT_BY_GROUP, _age)
    established = [c for c in rest if c.established]
    for sort_key, count in (
        (lambda c: -(c.ping if c.ping is not None else float("inf")), PROTECT_BY_PING),
        (lambda c: c.last_tx_time, PROTECT_BY_TX),
        (lambda c: c.last_block_time, PROTECT_BY_BLOCK),
    ):
        protected = _protect(established, sort_key, count, _age)
        rest = [c for c in rest if c not in protected]
    _protect(rest, lambda c: c.connected_seconds, int(len(rest) * PROTECT_OLDEST_SHARE))
    if not rest:
        return None
    if any(c.discouraged for c in rest):
        rest = [c for c in rest if c.discouraged]
    groups: dict[str, list[Candidate]] = {}
    for c in rest:
        groups.setdefault(c.group, []).append(c)
    biggest = max(groups.values(), key=lambda g: (len(g), max(c.id for c in g)))
    return max(c.id for c in biggest)


def _age(c: Candidate) -> float:
    """Ties in a protection go to the older connection (the attacker's are young)."""
    return c.connected_seconds


def _protect(
    pool: list[Candidate],
    sort_key: Callable[[Candidate], float],
    count: int,
    tie: Callable[[Candidate], float] = lambda c: 0.0,
) -> list[Candidate]:
    """Remove from ``pool`` (in place) the ``count`` with the largest ``sort_key``."""
    ranked = sorted(pool, key=lambda c: (sort_key(c), tie(c)))
    protected = ranked[len(ranked) - count :] if count > 0 else []
    for c in protected:
        pool.remove(c)
    return protected
