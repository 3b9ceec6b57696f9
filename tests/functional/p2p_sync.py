"""P2P scenarios with in-process nodes on real loopback sockets."""

from tests.framework.blocktools import Wallet, spend
from node.chain.chainstate import TXRECENT_MERGE
from node.primitives.tx import TxOut
from tests.framework.nodes import addr, start_node, wait_synced
from tests.framework.util import wait_until


def index_entries(node) -> tuple[int, int]:
    """(txrecent, txindex) entry counts of a node's store."""
    return tuple(node.chain.reader.db_entries(name) for name in ("txrecent", "txindex"))


async def test_line_of_three_syncs_chain_mined_at_one_end(tmp_path):
    """Three nodes in a line (a-b-c): blocks mined at a reach c through b."""
    a = await start_node(tmp_path / "a")
    b = await start_node(tmp_path / "b", peers=[addr(a)])
    c = await start_node(tmp_path / "c", peers=[addr(b)])
    try:
        await wait_until(lambda: len(b.peers.peers()) == 2, what="b connected to a and c")
        await a.generate(30, Wallet().addr)
        await wait_synced([a, b, c])
        assert c.chain.height == 30
        assert c.chain.utxo_stats == a.chain.utxo_stats
        await a.generate(1, Wallet().addr)
        await wait_synced([a, b, c])
        assert c.chain.height == 31
    finally:
        for n in (a, b, c):
            await n.stop()


async def test_tx_reaches_far_end_mempool(tmp_path):
    """A transaction submitted at one end of a line reaches the other end's mempool."""
    w = Wallet()
    a = await start_node(tmp_path / "a")
    b = await start_node(tmp_path / "b", peers=[addr(a)])
    c = await start_node(tmp_path / "c", peers=[addr(b)])
    try:
        await wait_until(lambda: len(b.peers.peers()) == 2, what="line connected")
        await a.generate(1, w.addr)
        await a.generate(a.params.coinbase_maturity, Wallet().addr)
        await wait_synced([a, b, c])
        block1 = a.chain.reader.get_block(a.chain.chain[1].hash)
        from tests.framework.blocktools import coinbase_coin
        coin = coinbase_coin(block1)
        tx = spend(a.chain, [coin], w.key, [TxOut(coin[1].amount - 10_000, w.addr)])
        await c.submit_tx(tx)
        await wait_until(lambda: tx.txid in a.mempool, what="tx in a's mempool")
        assert tx.txid in b.mempool
    finally:
        for n in (a, b, c):
            await n.stop()


async def test_new_node_syncs_long_chain_from_peers(tmp_path):
    """A fresh node joining late downloads 2,000+ blocks headers-first from two peers."""
    a = await start_node(tmp_path / "a")
    b = await start_node(tmp_path / "b", peers=[addr(a)])
    nodes = [a, b]
    try:
        await a.generate(2100, Wallet().addr)
        await wait_synced([a, b], timeout=120)
        c = await start_node(tmp_path / "c", peers=[addr(a), addr(b)])
        nodes.append(c)
        await wait_synced([a, b, c], timeout=120)
        assert c.chain.height == 2100
        assert c.chain.reader.utxo_digest() == a.chain.reader.utxo_digest()
        # more than TXRECENT_MERGE transactions: the node merged txrecent into txindex
        # after relaying, and every transaction is found wherever its entry is
        await wait_until(lambda: index_entries(c)[0] < TXRECENT_MERGE, what="txrecent merged")
        recent, merged = index_entries(c)
        assert merged >= TXRECENT_MERGE and recent + merged == 2100   # genesis is not indexed
        for entry in (c.chain.chain[1], c.chain.chain[-1]):
            coinbase = c.chain.reader.get_block(entry.hash).txs[0]
            assert c.chain.reader.get_tx_location(coinbase.txid) == (entry.hash, 0)
    finally:
        for n in nodes:
            await n.stop()


async def test_halves_mine_apart_then_converge_on_most_work(tmp_path):
    """Two halves mine separately; after reconnecting every node is on the branch with most work."""
    a = await start_node(tmp_path / "a")
    b = await start_node(tmp_path / "b", peers=[addr(a)])
    c = await start_node(tmp_path / "c")
    d = await start_node(tmp_path / "d", peers=[addr(c)])
    nodes = [a, b, c, d]
    try:
        await wait_until(lambda: len(a.peers.peers()) == 1 and len(c.peers.peers()) == 1, what="pairs")
        await a.generate(5, Wallet().addr)
        await c.generate(8, Wallet().addr)
        await wait_synced([a, b])
        await wait_synced([c, d])
        assert a.chain.tip.hash != c.chain.tip.hash
        await b.peers.connect(*addr(c))
        await wait_synced(nodes)
        assert a.chain.height == 8
        assert len({n.chain.reader.utxo_digest() for n in nodes}) == 1
        assert a.reorgs >= 1
    finally:
        for n in nodes:
            await n.stop()


async def test_stalled_peer_is_replaced(tmp_path):
    """A peer that announces headers but never sends blocks is dropped (not banned); another serves them."""
    from tests.framework.wire import WireClient
    a = await start_node(tmp_path / "a")
    c = await start_node(tmp_path / "c", stall_timeout=1.0)
    try:
        await a.generate(40, Wallet().addr)
        staller = await WireClient.to_node(c)
        await staller.expect("getheaders")
        staller.send("headers", [e.header.to_list() for e in a.chain.chain[1:]])
        await staller.expect("getdata")          # c asks the staller for blocks...
        await c.peers.connect(*addr(a))          # ...and an honest peer arrives
        await wait_synced([a, c], timeout=30)
        assert await staller.closed_by_peer(timeout=5)
        assert not c.peers.bans()
    finally:
        for n in (a, c):
            await n.stop()


async def test_nodes_on_distinct_loopback_addresses_ban_only_each_other(tmp_path):
    """Nodes bound to their own loopback address dial from it, so a ban cuts just that node."""
    from tests.framework.nodes import fast_net
    a = await start_node(tmp_path / "a", net=fast_net(listen_host="127.0.0.2", bind_host="127.0.0.2"))
    b = await start_node(tmp_path / "b", net=fast_net(listen_host="127.0.0.3", bind_host="127.0.0.3"),
                         peers=[("127.0.0.2", a.peers.listen_port)])
    c = await start_node(tmp_path / "c", net=fast_net(listen_host="127.0.0.4", bind_host="127.0.0.4"),
                         peers=[("127.0.0.2", a.peers.listen_port)])
    try:
        await wait_until(lambda: len(a.peers.peers()) == 2, what="b and c connected to a")
        assert {p.host for p in a.peers.peers()} == {"127.0.0.3", "127.0.0.4"}
        a.peers.ban("127.0.0.3", 60, "partition")
        await wait_until(lambda: len(a.peers.peers()) == 1, what="b cut off")
        await a.generate(2, Wallet().addr)
        await wait_synced([a, c])
        assert b.chain.height == 0
    finally:
        for n in (a, b, c):
            await n.stop()


async def test_mempools_meet_when_nodes_connect(tmp_path):
    """A node that connects later, and must sync first, still gets the transactions already
    in its peers' mempools (asked for with `mempool` on connect and again once caught up)."""
    from tests.framework.blocktools import coinbase_coin
    w = Wallet()
    a = await start_node(tmp_path / "a")
    b = await start_node(tmp_path / "b", peers=[addr(a)])
    try:
        blocks = await a.generate(1 + a.params.coinbase_maturity, w.addr)
        await wait_synced([a, b])
        coin = coinbase_coin(blocks[0])
        tx = spend(a.chain, [coin], w.key, [TxOut(coin[1].amount - 10_000, w.addr)])
        c = await start_node(tmp_path / "c")
        try:
            await c.peers.connect(*addr(a))
            await wait_synced([a, c])
            await c.submit_tx(tx)
            await wait_until(lambda: tx.txid in b.mempool, what="tx relayed through a to b")
        finally:
            await c.stop()
        d = await start_node(tmp_path / "d", peers=[addr(b)])   # d arrives after the tx
        try:
            await wait_until(lambda: tx.txid in d.mempool, what="b's mempool offered to d on connect")
        finally:
            await d.stop()
    finally:
        for n in (a, b):
            await n.stop()
