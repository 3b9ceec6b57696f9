"""Misbehaviour disconnects and discourages, never bans; a stray HTTP request costs nothing.

Issue 14, item 9.  Before: any non-P2P bytes on the P2P port (a ``curl``, a health
check, a wallet pointed at the wrong port) banned 127.0.0.1 for a day, cutting every
local node off.  Now (as Bitcoin Core 0.21+): bytes of another protocol only close the
connection; real misbehaviour closes it and *discourages* the address (refused only
when inbound slots are full, never dialled), except for a peer with the ``noban``
permission (loopback by default), which is only disconnected.  A ban is the
operator's decision (``POST /bans``).
"""

from __future__ import annotations

import asyncio
import http.client

import pytest

from network.frames import encode_frame
from node.consensus.params import REGTEST
from node.primitives import encoding
from tests.framework.daemon import Daemon
from tests.framework.nodes import fast_net, node_network
from tests.framework.util import wait_until
from tests.framework.wire import WireClient

HTTP_REQUEST = b"GET /api/v1/tip HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"
NO_PERMISSIONS = ()  # loopback's default noban and mempool taken away


async def send_http_request(port: int) -> bool:
    """Write an HTTP request to ``port``; True once the node closed the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(HTTP_REQUEST)
    await writer.drain()
    try:
        closed = await asyncio.wait_for(reader.read(65536), 5.0) == b""
    except ConnectionError:
        closed = True
    writer.transport.abort()
    return closed


@pytest.mark.parametrize("permissions", ["default", "none"])
async def test_an_http_request_on_the_p2p_port_is_dropped_and_never_punished(tmp_path, permissions):
    """With or without loopback's noban: the connection is closed, 127.0.0.1 is neither
    banned nor discouraged, and a well-behaved local node connects right after."""
    net = fast_net() if permissions == "default" else fast_net(permissions=NO_PERMISSIONS)
    async with node_network(tmp_path, 1, "none", net=net) as nodes:
        (a,) = nodes
        assert await send_http_request(a.peers.listen_port)
        await wait_until(lambda: not a.peers.connections(), what="the HTTP connection dropped")
        assert a.peers.bans() == [] and not a.peers.is_discouraged("127.0.0.1")
        assert a.peers.stats()["discouragements"] == 0
        b = await nodes.add("b", peers=[a])  # returns once both ends have the handshake
        assert len(a.peers.peers()) == 1 and len(b.peers.peers()) == 1


async def test_a_noban_local_peer_that_misbehaves_is_disconnected_not_discouraged(tmp_path):
    """Loopback has noban by default: a local client sending a frame with a broken
    checksum is disconnected, and its address is not discouraged (nor banned)."""
    async with node_network(tmp_path, 1, "none") as nodes:
        (a,) = nodes
        client = await WireClient.to_node(a)
        bad = bytearray(encode_frame(a.params.magic, encoding.encode(["ping", [2]])))
        bad[8] ^= 0xFF  # the checksum
        client.send_raw(bytes(bad))
        assert await client.closed_by_peer()
        assert a.peers.bans() == [] and not a.peers.is_discouraged("127.0.0.1")
        again = await WireClient.to_node(a)  # welcome back at once
        again.close()


async def test_misbehaviour_without_noban_discourages_but_never_bans(tmp_path):
    """Without loopback's noban a misbehaving client gets 127.0.0.1 discouraged: still
    accepted while an inbound slot is free, refused once they are full, never dialled
    from the address book; no ban is written."""
    net = fast_net(permissions=NO_PERMISSIONS, max_inbound=2)
    async with node_network(tmp_path, 1, "none", net=net) as nodes:
        (a,) = nodes
        client = await WireClient.to_node(a)
        client.send("inv", "not an inv")  # malformed: score 100
        assert await client.closed_by_peer()
        await wait_until(lambda: a.peers.is_discouraged("127.0.0.1"), what="discouragement")
        assert a.peers.bans() == [] and not (tmp_path / "a" / "bans.json").exists()
        assert a.peers.discouraged.get("127.0.0.1").reason == "bad-encoding"

        first = await WireClient.to_node(a)  # a free slot: accepted
        second = await WireClient.to_node(a)
        await wait_until(lambda: len(a.peers.peers()) == 2, what="two discouraged peers in")
        assert all(p.discouraged for p in a.peers.peers())
        third = await WireClient.to_node(a, handshake=False)
        assert await third.closed_by_peer(), "a discouraged host took a full node's slot"
        assert len(a.peers.connections()) == 2

        a.peers.addrbook.add([("127.0.0.1", 1, 0.0)], source="127.0.0.2")
        assert a.peers.addrbook.select(is_banned=a.peers.is_shunned) is None
        for c in (first, second):
            c.close()


def test_a_curl_on_a_real_nodes_p2p_port_bans_nobody(tmp_path):
    """A real ``obol-node``: an HTTP client pointed at the P2P port gets its connection
    closed, and the admin API lists no ban afterwards; a P2P client connects."""
    with Daemon(tmp_path / "node") as node:
        conn = http.client.HTTPConnection("127.0.0.1", node.p2p_port, timeout=5)
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.request("GET", "/api/v1/tip")
            conn.getresponse()
        conn.close()
        assert node.client.ok("GET", "bans") == []

        async def handshake() -> None:
            client = await WireClient.connect(
                node.p2p_port, encoding, REGTEST.magic, genesis_hash=REGTEST.genesis_hash
            )
            await client.handshake()
            client.close()

        asyncio.run(handshake())
        assert node.client.ok("GET", "bans") == []
