"""Slot exhaustion: sockets that never finish the handshake do not shut honest peers out.

Issue 14, item 7.  Before: 32 sockets from one IP that never handshake took every
inbound slot.  Now an address group (IPv4 /16; each loopback host its own group) holds
at most ``max_inbound_per_group`` inbound connections, and when every slot is taken a
newcomer gets in by evicting an unprotected connection, as Bitcoin Core's
``AttemptToEvictConnection`` does (peers that gave us blocks, low pings, older peers,
diverse groups are kept).  Loopback's default noban is taken away here: noban peers
are never evicted nor limited per group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from network.config import MAX_INBOUND
from tests.framework.blocktools import Wallet
from tests.framework.nodes import fast_net, node_network, sync_blocks
from tests.framework.util import wait_until

SLOW_HANDSHAKE = 60.0  # seconds: the flood's sockets outlive the test unless closed


@contextlib.asynccontextmanager
async def silent_sockets() -> AsyncIterator[list[asyncio.StreamWriter]]:
    """A list to fill with ``open_silent``'s sockets; all are aborted when the block ends."""
    flood: list[asyncio.StreamWriter] = []
    try:
        yield flood
    finally:
        for w in flood:
            w.transport.abort()


async def open_silent(port: int, source: str, count: int) -> list[asyncio.StreamWriter]:
    """``count`` TCP connections from ``source`` that never send a byte."""
    writers = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
        writer.reader = reader  # kept to see whether the node closed it
        writers.append(writer)
    return writers


async def closed_by_node(writer: asyncio.StreamWriter) -> bool:
    try:
        return await asyncio.wait_for(writer.reader.read(1), 5.0) == b""
    except ConnectionError:
        return True


def on_host(host: str):
    """P2P options of a node with a loopback address of its own (its own address group)."""
    return fast_net(bind_host=host, listen_host=host)


def inbound(node) -> list:
    return [p for p in node.peers.connections() if p.direction.value == "inbound"]


async def test_a_flood_from_one_group_leaves_room_for_an_honest_peer(tmp_path):
    """40 silent sockets from 127.0.0.1: at most max_inbound_per_group are kept, the rest
    are refused at once; an honest node dialling from 127.0.0.2 connects and syncs."""
    net = fast_net(
        permissions=(), max_inbound=8, max_inbound_per_group=3, handshake_timeout=SLOW_HANDSHAKE
    )
    async with node_network(tmp_path, 1, "none", net=net) as nodes, silent_sockets() as flood:
        (a,) = nodes
        await a.generate(5, Wallet().addr)
        flood += await open_silent(a.peers.listen_port, "127.0.0.1", 40)
        await wait_until(lambda: len(inbound(a)) == 3, what="the group's 3 slots taken")
        kept = {p.address[1] for p in inbound(a)}
        refused = [w for w in flood if w.get_extra_info("sockname")[1] not in kept]
        assert len(refused) == 37 and all([await closed_by_node(w) for w in refused])
        assert len(inbound(a)) == 3
        b = await nodes.add("b", peers=[a], net=on_host("127.0.0.2"))
        await sync_blocks([a, b])
        assert len(a.peers.peers()) == 1 and a.peers.peers()[0].host == "127.0.0.2"
        assert len(inbound(a)) == 4 <= net.max_inbound


async def test_full_inbound_slots_evict_a_silent_socket_for_an_honest_peer(tmp_path):
    """Every inbound slot taken: one by an honest peer that gave us a block, the others by
    silent sockets from as many loopback groups.  A newcomer evicts a silent socket, the
    block giver stays, and the inbound count never exceeds max_inbound."""
    net = fast_net(permissions=(), handshake_timeout=SLOW_HANDSHAKE)
    async with node_network(tmp_path, 1, "none", net=net) as nodes, silent_sockets() as flood:
        (a,) = nodes
        giver = await nodes.add("giver", peers=[a], net=on_host("127.0.0.3"))
        await giver.generate(1, Wallet().addr)
        await sync_blocks([a, giver])
        (giver_at_a,) = a.peers.peers()
        await wait_until(lambda: giver_at_a.last_block_time > 0, what="the block credited")
        for i in range(MAX_INBOUND - 1):
            flood += await open_silent(a.peers.listen_port, f"127.0.1.{i + 1}", 1)
        await wait_until(lambda: len(inbound(a)) == MAX_INBOUND, what="every inbound slot taken")
        b = await nodes.add("b", peers=[a], net=on_host("127.0.0.2"))
        await sync_blocks([a, b])
        assert a.peers.stats()["evictions"] >= 1
        assert not giver_at_a.closed
        assert {p.host for p in a.peers.peers()} == {"127.0.0.2", "127.0.0.3"}
        assert len(inbound(a)) <= MAX_INBOUND
