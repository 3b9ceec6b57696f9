"""Block sync between in-process nodes on real loopback sockets.

Scenarios: a chain mined at one end of a line reaches the other end; a node
joining late downloads a long chain headers-first from two peers; two halves of
a network mine apart and, joined, converge on the branch with more work; a peer
that announces headers but never sends the blocks is replaced; and nodes on
their own loopback addresses ban only each other.
"""

from node.chain.chainstate import TXRECENT_MERGE
from tests.framework.blocktools import Wallet
from tests.framework.nodes import fast_net, join, node_network, split, sync_blocks
from tests.framework.util import scenario_log, wait_until
from tests.framework.wire import WireClient

log = scenario_log(__name__)


def index_entries(node) -> tuple[int, int]:
    """(txrecent, txindex) entry counts of a node's store."""
    return tuple(node.chain.reader.db_entries(name) for name in ("txrecent", "txindex"))


async def test_line_of_three_syncs_chain_mined_at_one_end(tmp_path):
    """Three nodes in a line (a <- b <- c): blocks mined at a reach c through b."""
    async with node_network(tmp_path, 3, "line") as (a, b, c):
        await a.generate(30, Wallet().addr)
        await sync_blocks([a, b, c])
        assert c.chain.height == 30
        assert c.chain.utxo_stats == a.chain.utxo_stats
        log.info("one more block, relayed rather than synced")
        await a.generate(1, Wallet().addr)
        await sync_blocks([a, b, c])
        assert c.chain.height == 31


async def test_new_node_syncs_long_chain_from_peers(tmp_path):
    """A fresh node joining late downloads 2,000+ blocks headers-first from two peers."""
    async with node_network(tmp_path, 2, "line") as net:
        a, b = net
        await a.generate(2100, Wallet().addr)
        await sync_blocks([a, b], timeout=120)
        log.info("c joins, dialling both a and b")
        c = await net.add(peers=[a, b])
        await sync_blocks([a, b, c], timeout=120)
        assert c.chain.height == 2100
        assert c.chain.reader.utxo_digest() == a.chain.reader.utxo_digest()
        # more than TXRECENT_MERGE transactions: the node merged txrecent into txindex
        # after relaying, and every transaction is found wherever its entry is
        await wait_until(lambda: index_entries(c)[0] < TXRECENT_MERGE, what="txrecent merged")
        recent, merged = index_entries(c)
        assert merged >= TXRECENT_MERGE and recent + merged == 2100  # genesis is not indexed
        for entry in (c.chain.chain[1], c.chain.chain[-1]):
            coinbase = c.chain.reader.get_block(entry.hash).txs[0]
            assert c.chain.reader.get_tx_location(coinbase.txid) == (entry.hash, 0)


async def test_halves_mine_apart_then_converge_on_most_work(tmp_path):
    """Two halves mine separately; after reconnecting every node is on the branch with most work.

    a <- b  x  c <- d      split between b and c
    a: genesis -> 5 blocks
    c: genesis -> 8 blocks (more work: a and b reorganise onto it once b dials c)
    """
    async with node_network(tmp_path, 4, "line") as net:
        a, b, c, d = net
        await split(b, c)
        log.info("each half mines its own branch")
        await a.generate(5, Wallet().addr)
        await c.generate(8, Wallet().addr)
        await sync_blocks([a, b])
        await sync_blocks([c, d])
        assert a.chain.tip.hash != c.chain.tip.hash
        log.info("b dials c: the halves join")
        await join(b, c)
        await sync_blocks(net)
        assert a.chain.height == 8
        assert len({n.chain.reader.utxo_digest() for n in net}) == 1
        assert a.reorgs >= 1


async def test_stalled_peer_is_replaced(tmp_path):
    """A peer that announces headers but never sends blocks is dropped (not banned);
    another serves them."""
    async with node_network(tmp_path, 2, "none", node_args=[{}, {"stall_timeout": 1.0}]) as (a, c):
        await a.generate(40, Wallet().addr)
        staller = await WireClient.to_node(c)
        await staller.expect("getheaders")
        staller.send("headers", [e.header.to_list() for e in a.chain.chain[1:]])
        await staller.expect("getdata")  # c asks the staller for blocks...
        await join(c, a)  # ...and an honest peer arrives
        await sync_blocks([a, c], timeout=30)
        assert await staller.closed_by_peer(timeout=5)
        assert not c.peers.bans()


async def test_nodes_on_distinct_loopback_addresses_ban_only_each_other(tmp_path):
    """Nodes bound to their own loopback address dial from it, so a ban cuts just that node.

    b and c both dial a (a star); a bans b's address: c stays, and only c gets a's blocks.
    """
    hosts = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    own_address = [{"net": fast_net(listen_host=h, bind_host=h)} for h in hosts]
    async with node_network(tmp_path, 3, "star", node_args=own_address) as (a, b, c):
        assert {p.host for p in a.peers.peers()} == {"127.0.0.3", "127.0.0.4"}
        a.peers.ban("127.0.0.3", 60, "partition")
        await wait_until(lambda: len(a.peers.peers()) == 1, what="b cut off")
        await a.generate(2, Wallet().addr)
        await sync_blocks([a, c])
        assert b.chain.height == 0
