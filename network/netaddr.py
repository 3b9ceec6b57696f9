"""Address scopes: where an IP address means something, and who may tell us about it.

Bitcoin Core stores and relays only addresses that are routable on the internet
(``CNetAddr::IsRoutable``).  Obol's local test network runs on loopback and its
network-namespace variant on private 10.x addresses, so such addresses must keep
working between nodes that share such a network.  The rule (docs/protocol.md §14.10):

* an address of no use to anyone (unspecified, multicast, broadcast, reserved,
  documentation ranges) is never stored or relayed;
* a *global* address may come from anyone;
* a *private* address (RFC 1918, shared, link-local, benchmarking, IPv6 unique
  local) only from a peer that is itself private or loopback: one on a private
  network with us;
* a *loopback* address only from a loopback peer: a remote node that tells us
  "127.0.0.1:port" would make us dial a service of our own machine.

The same rule decides to whom an address is told: only to a peer that would learn it.

The module also holds address groups (Core's netgroup, used by the inbound slots and
the address book's buckets).  An address is parsed once (``parse_ip``) and its scope and
group are then integer arithmetic: the address book computes both for every entry of
every ``addr``.
"""

from __future__ import annotations

import enum
import ipaddress

LOCAL_SOURCE = "local"  # source of addresses from our own configuration and handshakes
IPV4_GROUP_BITS = 16  # an IPv4 address group is a /16 (Core: GetGroup)
IPV6_GROUP_BITS = 32  # an IPv6 address group is a /32

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Scope(enum.IntEnum):
    """Where an address can be reached from; a larger value reaches further."""

    UNUSABLE = 0  # nowhere: never stored, never relayed
    LOOPBACK = 1  # this machine only
    PRIVATE = 2  # a private network
    GLOBAL = 3  # the internet


UNUSABLE_NETWORKS = (
    "0.0.0.0/8",  # "this network" (RFC 1122), 0.0.0.0 included
    "192.0.0.0/24",  # IETF protocol assignments (RFC 6890)
    "192.0.2.0/24",  # documentation TEST-NET-1 (RFC 5737)
    "198.51.100.0/24",  # documentation TEST-NET-2
    "203.0.113.0/24",  # documentation TEST-NET-3
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, 255.255.255.255 (broadcast) included
    "::/128",  # unspecified
    "ff00::/8",  # multicast
    "2001:db8::/32",  # documentation (RFC 3849)
    "100::/64",  # discard-only (RFC 6666)
)
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")
PRIVATE_NETWORKS = (
    "10.0.0.0/8",  # RFC 1918
    "172.16.0.0/12",  # RFC 1918
    "192.168.0.0/16",  # RFC 1918
    "100.64.0.0/10",  # shared address space, carrier-grade NAT (RFC 6598)
    "169.254.0.0/16",  # link-local (RFC 3927)
    "198.18.0.0/15",  # benchmarking (RFC 2544)
    "fc00::/7",  # unique local (RFC 4193)
    "fe80::/10",  # link-local
)
#: (IP version, network as an integer, netmask as an integer, scope), tested in order
_RANGES = tuple(
    (net.version, int(net.network_address), int(net.netmask), found)
    for texts, found in (
        (UNUSABLE_NETWORKS, Scope.UNUSABLE),
        (LOOPBACK_NETWORKS, Scope.LOOPBACK),
        (PRIVATE_NETWORKS, Scope.PRIVATE),
    )
    for net in map(ipaddress.ip_network, texts)
)


def parse_ip(host: str) -> IPAddress | None:
    """The address of the IP literal ``host`` (brackets allowed, IPv4-mapped IPv6 as
    IPv4); None if it is not one."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def ip_scope(ip: IPAddress) -> Scope:
    value, version = int(ip), ip.version
    for net_version, network, mask, found in _RANGES:
        if net_version == version and value & mask == network:
            return found
    return Scope.GLOBAL


def ip_group(ip: IPAddress) -> str:
    """The address group of ``ip``: ``"4:a.b.0.0"`` for IPv4 (/16), ``"6:…"`` for IPv6
    (/32), the whole address for loopback, which is a group of its own."""
    if ip.is_loopback:
        return "local:" + ip.compressed
    if isinstance(ip, ipaddress.IPv4Address):
        prefix = int(ip) >> (32 - IPV4_GROUP_BITS)  # the /16: two octets
        return f"4:{prefix >> 8}.{prefix & 0xFF}.0.0"
    keep = ((1 << IPV6_GROUP_BITS) - 1) << (128 - IPV6_GROUP_BITS)
    return f"6:{ipaddress.IPv6Address(int(ip) & keep).compressed}"


def scope(host: str) -> Scope:
    """The scope of the IP literal ``host``; UNUSABLE for anything else."""
    ip = parse_ip(host)
    return Scope.UNUSABLE if ip is None else ip_scope(ip)


def source_scope(source: str) -> Scope:
    """How far the peer ``source`` is from us.  Our own configuration and handshakes
    (LOCAL_SOURCE), and a source that is no IP address (a tool's), are as near as loopback."""
    found = scope(source)
    return Scope.LOOPBACK if found is Scope.UNUSABLE else found


def may_learn(host: str, source: str) -> bool:
    """``source`` may tell us about ``host``: the address is usable and reaches at least as
    far as the source is from us (a private address only from a private or loopback peer,
    a loopback address only from a loopback peer)."""
    reach = scope(host)
    return reach is not Scope.UNUSABLE and source_scope(source) <= reach
