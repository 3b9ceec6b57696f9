"""Permissions granted to peers by address (Bitcoin Core: ``NetPermissionFlags``, ``-whitelist``).

A rule reads as Core's ``-whitelist``: ``FLAGS@NETWORK``, for example
``noban,mempool@10.0.0.0/8`` or ``noban@::1``.  A connection gets the union of
the flags of every rule whose network holds its remote address.

* ``noban``: misbehaviour disconnects the peer but never discourages (or bans)
  its address, and the eviction of inbound connections (``slots.py``) never
  picks it, nor does the per-group inbound limit apply.
* ``mempool``: the peer may ask for our whole mempool with ``mempool`` (BIP35);
  the node tells it so in ``version`` (``grants``), and a peer without it that
  asks is disconnected.
* ``addr``: the peer's ``addr`` messages are not rate-limited (``gossip.py``; Core's
  ``NetPermissionFlags::Addr``), for a trusted seeder or crawler that pushes many.
* ``notrickle``: transactions we accept are announced to it at once, not batched on the
  peer's timer (node/p2p/trickle.py; Core does this for ``noban`` peers), for a watcher
  that must learn of each transaction without delay.

By default the loopback addresses (127.0.0.0/8 and ::1) get noban and mempool: every tool of
the operator (the wallet, the local test network, health checks) runs there,
and whoever can connect from them already has the machine.  Bitcoin Core
likewise never discourages a local peer (``PeerManagerImpl::MaybeDiscourageAndDisconnect``).
They do not get ``addr``, as Core's implicit whitelist flags do not: nothing local needs
to push thousands of addresses, and a local peer's flood is bounded like anyone's.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass

from .protocol import canonical_host

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PermissionFlag(enum.Flag):
    """What a peer may do that others may not."""

    NONE = 0
    NOBAN = enum.auto()  # never discouraged nor evicted; disconnected on misbehaviour only
    MEMPOOL = enum.auto()  # may send `mempool` and get our pool's inventory
    ADDR = enum.auto()  # its `addr` messages are not rate-limited
    NOTRICKLE = enum.auto()  # accepted transactions are announced to it at once, unbatched


#: flag names as written in a rule
FLAG_NAMES = {
    "noban": PermissionFlag.NOBAN,
    "mempool": PermissionFlag.MEMPOOL,
    "addr": PermissionFlag.ADDR,
    "notrickle": PermissionFlag.NOTRICKLE,
}
#: bit of the `version` field ``grants`` for each flag a node tells its peer it has
GRANT_BITS = {PermissionFlag.MEMPOOL: 1}


@dataclass(frozen=True)
class Permission:
    """One rule: the flags given to every address of ``network``."""

    flags: PermissionFlag  # what the matching peers may do
    network: IPNetwork  # the addresses the rule covers (a single host is a /32 or /128)

    @classmethod
    def parse(cls, text: str) -> Permission:
        """``noban,mempool@127.0.0.0/8``; ValueError on an unknown flag or a bad network."""
        names, sep, network = text.strip().rpartition("@")
        if not sep or not names:
            raise ValueError(f"permission {text!r}: expected FLAGS@NETWORK")
        flags = PermissionFlag.NONE
        for name in names.split(","):
            flag = FLAG_NAMES.get(name.strip().lower())
            if flag is None:
                raise ValueError(f"permission {text!r}: unknown flag {name!r}")
            flags |= flag
        try:
            net = ipaddress.ip_network(canonical_host(network), strict=False)
        except ValueError:
            raise ValueError(f"permission {text!r}: bad network {network!r}") from None
        return cls(flags, net)

    def covers(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(canonical_host(host))
        except ValueError:
            return False
        return ip.version == self.network.version and ip in self.network


LOCAL_PERMISSIONS = (
    Permission(PermissionFlag.NOBAN | PermissionFlag.MEMPOOL, ipaddress.ip_network("127.0.0.0/8")),
    Permission(PermissionFlag.NOBAN | PermissionFlag.MEMPOOL, ipaddress.ip_network("::1/128")),
)


def permissions_for(host: str, rules: tuple[Permission, ...]) -> PermissionFlag:
    """The union of the flags of every rule that covers ``host``."""
    flags = PermissionFlag.NONE
    for rule in rules:
        if rule.covers(host):
            flags |= rule.flags
    return flags


def encode_grants(flags: PermissionFlag) -> int:
    """The `version` field ``grants``: the bits of the flags we tell the peer it has."""
    return sum(bit for flag, bit in GRANT_BITS.items() if flag in flags)


def decode_grants(grants: int) -> PermissionFlag:
    """The flags a peer's ``grants`` says we have with it (unknown bits ignored)."""
    flags = PermissionFlag.NONE
    for flag, bit in GRANT_BITS.items():
        if grants & bit:
            flags |= flag
    return flags
