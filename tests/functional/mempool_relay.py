"""Transactions relayed between in-process nodes: one submitted at the end of a line
reaches the other end's mempool, and a node that connects later, syncing first, still
gets the transactions already waiting in its peers' mempools."""

from node.primitives.tx import TxOut
from tests.framework.blocktools import Wallet, coinbase_coin, spend
from tests.framework.nodes import join, node_network, sync_blocks
from tests.framework.util import scenario_log, wait_until

log = scenario_log(__name__)


async def test_tx_reaches_far_end_mempool(tmp_path):
    """A transaction submitted at one end of a line reaches the other end's mempool."""
    w = Wallet()
    async with node_network(tmp_path, 3, "line") as (a, b, c):
        await a.generate(1, w.addr)
        await a.generate(a.params.coinbase_maturity, Wallet().addr)
        await sync_blocks([a, b, c])
        block1 = a.chain.reader.get_block(a.chain.chain[1].hash)
        coin = coinbase_coin(block1)
        tx = spend(a.chain, [coin], w.key, [TxOut(coin[1].amount - 10_000, w.addr)])
        await c.submit_tx(tx)
        await wait_until(lambda: tx.txid in a.mempool, what="tx in a's mempool")
        assert tx.txid in b.mempool


async def test_mempools_meet_when_nodes_connect(tmp_path):
    """A node that connects later, and must sync first, still gets the transactions already
    in its peers' mempools (asked for with `mempool` on connect and again once caught up)."""
    w = Wallet()
    async with node_network(tmp_path, 2, "line") as net:
        a, b = net
        blocks = await a.generate(1 + a.params.coinbase_maturity, w.addr)
        await sync_blocks([a, b])
        coin = coinbase_coin(blocks[0])
        tx = spend(a.chain, [coin], w.key, [TxOut(coin[1].amount - 10_000, w.addr)])
        log.info("c starts at genesis, dials a, syncs, then submits the tx")
        c = await net.add()
        await join(c, a)
        await sync_blocks([a, c])
        await c.submit_tx(tx)
        await wait_until(lambda: tx.txid in b.mempool, what="tx relayed through a to b")
        await net.stop(c)
        log.info("d arrives after the tx and dials b")
        d = await net.add(peers=[b])
        await wait_until(lambda: tx.txid in d.mempool, what="b's mempool offered to d on connect")
