"""What the hostile-peer tests share: a raw client the node has established, and bodies
of empty arrays nested to given counts (the shape that costs a decoder most)."""

from __future__ import annotations

import ipaddress
import random
from typing import TYPE_CHECKING, Any

from tests.framework.util import wait_until
from tests.framework.wire import USER_AGENT, WireClient

if TYPE_CHECKING:
    from network.peer import Peer
    from node.runtime.node import Node


async def hostile_peer(node: Node, **options: Any) -> tuple[WireClient, Peer]:
    """A raw client that completed the handshake (``options`` as ``WireClient.to_node``
    takes them), and the node's Peer for it."""
    client = await WireClient.to_node(node, **options)
    await wait_until(
        lambda: any(p.user_agent == USER_AGENT for p in node.peers.peers()),
        what="the raw client's handshake",
    )
    return client, next(p for p in node.peers.peers() if p.user_agent == USER_AGENT)


def nested(counts: tuple[int, ...]) -> list:
    """The smallest body with ``counts[d]`` values at depth ``d + 1``: empty arrays, each
    depth's spread over the arrays of the one above (at least one value per depth but the
    last, so that the last can be reached)."""
    counts = (*(max(c, 1) for c in counts[:-1]), *counts[-1:])

    def build(depth: int, parents: int) -> list[list]:
        if depth == len(counts):
            return [[] for _ in range(parents)]
        children = build(depth + 1, counts[depth])
        share, extra = divmod(counts[depth], parents)
        out, start = [], 0
        for k in range(parents):
            end = start + share + (k < extra)
            out.append(children[start:end])
            start = end
        return out

    (body,) = build(0, 1)
    return body


def global_host(rng: random.Random) -> str:
    """A random IPv4 address routable on the internet (what a flood of `addr` carries)."""
    while True:
        octets = (
            rng.randrange(1, 224),
            rng.randrange(256),
            rng.randrange(256),
            rng.randrange(1, 255),
        )
        host = ".".join(map(str, octets))
        if ipaddress.ip_address(host).is_global:
            return host
