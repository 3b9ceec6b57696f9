"""BIP35 ``mempool`` is served only to peers with the ``mempool`` permission.

Issue 14, item 8.  A 22-byte ``mempool`` request returned the whole pool's inventory
to anyone.  Now (as Bitcoin Core's ``NetPermissionFlags::Mempool``) only a peer
granted the permission by address gets it; another peer of protocol 3 asking is
disconnected (not punished), an older one (which asks every peer on connect) is only
not answered.  Pools still meet after a partition between nodes that grant each
other the permission (loopback by default), which say so in ``version`` ``grants``.
"""

from __future__ import annotations

import asyncio

import pytest

from network.protocol import GRANTS_VERSION
from node.p2p.messages import INV_TX
from node.primitives import encoding
from node.primitives.tx import OutPoint, TxOut
from tests.framework.blocktools import Wallet, coinbase_coin, spend
from tests.framework.nodes import fast_net, node_network
from tests.framework.util import wait_until
from tests.framework.wire import USER_AGENT, WireClient

POOL_TXS = 25  # transactions in the pool under attack: a parent and 24 children (the limit)
ANSWER_BOUND = 1024  # bytes the node may send an unpermitted asker: handshake, getheaders, ping


async def fill_pool(node):
    """Make ``node``'s mempool hold POOL_TXS transactions."""
    wallet = Wallet()
    [block] = await node.generate(1, wallet.addr)
    await node.generate(node.params.coinbase_maturity, Wallet().addr)
    op, out = coinbase_coin(block)
    share = (out.amount - 10_000) // POOL_TXS
    fan = spend(node.chain, [(op, out)], wallet.key, [TxOut(share, wallet.addr)] * POOL_TXS)
    await node.submit_tx(fan)
    for i in range(POOL_TXS - 1):
        child = spend(
            node.chain,
            [(OutPoint(fan.txid, i), fan.outputs[i])],
            wallet.key,
            [TxOut(share - 1_000, wallet.addr)],
        )
        await node.submit_tx(child)
    assert len(node.mempool) == POOL_TXS


async def messages_until_closed(client: WireClient, timeout: float = 5.0) -> list[str]:
    """The types of every message the node sends until it closes the connection."""
    types = [t for t, _ in client.inbox]
    async with asyncio.timeout(timeout):
        while True:
            try:
                data = await client.reader.read(65536)
            except ConnectionError:
                return types
            if not data:
                return types
            client.decoder.feed(data)
            while (payload := client.decoder.next_payload()) is not None:
                types.append(encoding.decode(payload)[0])


async def the_peer(node, user_agent=USER_AGENT):
    await wait_until(
        lambda: any(p.user_agent == user_agent for p in node.peers.peers()),
        what="the client's handshake",
    )
    return next(p for p in node.peers.peers() if p.user_agent == user_agent)


async def test_an_unpermitted_mempool_request_gets_no_inventory_and_is_disconnected(tmp_path):
    async with node_network(tmp_path, 1, "none", net=fast_net(permissions=())) as nodes:
        (node,) = nodes
        await fill_pool(node)
        client = await WireClient.to_node(node, protocol_version=GRANTS_VERSION)
        peer = await the_peer(node)
        client.send("mempool", [])
        assert "inv" not in await messages_until_closed(client)
        assert peer.closed and peer.close_reason == "mempool-not-permitted"
        assert peer.bytes_out < ANSWER_BOUND
        assert not node.peers.is_discouraged("127.0.0.1") and node.peers.bans() == []


async def test_an_old_peer_asking_without_permission_is_only_not_answered(tmp_path):
    """A protocol-1 peer sends `mempool` on connect by habit: no answer, no disconnect."""
    async with node_network(tmp_path, 1, "none", net=fast_net(permissions=())) as nodes:
        (node,) = nodes
        await fill_pool(node)
        client = await WireClient.to_node(node, protocol_version=1)
        peer = await the_peer(node)
        client.send("mempool", [])
        client.send("ping", [9])  # answered after the mempool request
        assert await client.expect("pong") == [9]
        assert not any(t == "inv" for t, _ in client.inbox)
        assert not peer.closed and peer.bytes_out < ANSWER_BOUND
        client.close()


async def test_a_permitted_peer_gets_the_whole_inventory(tmp_path):
    """Loopback has the mempool permission by default, and `version` says so."""
    async with node_network(tmp_path, 1, "none") as nodes:
        (node,) = nodes
        await fill_pool(node)
        client = await WireClient.to_node(node, protocol_version=GRANTS_VERSION)
        client.send("mempool", [])
        items = await client.expect("inv")
        assert sorted(h for kind, h in items if kind == INV_TX) == sorted(node.mempool.entries)
        client.close()


@pytest.mark.parametrize("grant", [True, False])
async def test_a_node_asks_for_a_pool_only_when_granted(tmp_path, grant):
    """Pools meet on connect where the holder grants the asker `mempool`; where it does
    not, the asker does not ask (and so is not disconnected)."""
    net = fast_net() if grant else fast_net(permissions=())
    async with node_network(tmp_path, 1, "none", net=net) as nodes:
        (a,) = nodes
        await fill_pool(a)
        b = await nodes.add("b", peers=[a], net=fast_net())  # returns once both ends are linked
        if grant:
            await wait_until(lambda: len(b.mempool) == POOL_TXS, what="a's pool offered to b")
        else:
            # b's blocks come after the `mempool` it would have sent, which a would have
            # answered by disconnecting: synced means b did not ask
            await wait_until(lambda: b.chain.height == a.chain.height, what="b synced")
            assert len(b.mempool) == 0 and not a.peers.peers()[0].closed
