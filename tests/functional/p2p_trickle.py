"""Transactions announced in batches on each peer's timer (node/p2p/trickle.py): raw
peers of a real node count the ``inv`` messages they get for a stream of transactions."""

from __future__ import annotations

from network.permissions import LOCAL_PERMISSIONS, Permission
from node.p2p.messages import INV_TX, parse_inv
from node.p2p.trickle import TrickleIntervals
from node.primitives.tx import OutPoint, Transaction, TxOut
from node.runtime.node import Node
from tests.framework.blocktools import Wallet, coinbase_coin, spend
from tests.framework.nodes import fast_net, start_node
from tests.framework.util import scenario_log, wait_until
from tests.framework.wire import USER_AGENT, WireClient

log = scenario_log(__name__)

TXS = 20  # transactions submitted one after the other
WATCHER = "127.0.0.2"  # loopback address of the peer given ``notrickle``
# mean seconds between invs: the TXS submissions (~20 ms) span more than four intervals
# with a probability below 1e-6 (1e-2 if the machine slowed them down to a second)
TRICKLE = TrickleIntervals(inbound=1.0, outbound=1.0)


async def _node(tmp_path, intervals: TrickleIntervals = TRICKLE) -> Node:
    rules = (*LOCAL_PERMISSIONS, Permission.parse(f"notrickle@{WATCHER}"))
    return await start_node(tmp_path / "n", net=fast_net(permissions=rules), tx_trickle=intervals)


async def _peer(node: Node, source: str | None = None) -> WireClient:
    port = node.peers.listen_port
    assert port is not None
    client = await WireClient.connect(
        port,
        magic=node.params.magic,
        genesis_hash=node.params.genesis_hash,
        source=source,
        protocol_version=1,
    )
    await client.handshake()
    return client


async def _chain_of_txs(node: Node, count: int) -> list[Transaction]:
    """``count`` transactions, each spending the previous one's output (parents first)."""
    w = Wallet()
    blocks = await node.generate(1 + node.params.coinbase_maturity, w.addr)
    coin = coinbase_coin(blocks[0])
    txs = []
    for _ in range(count):
        tx = spend(node.chain, [coin], w.key, [TxOut(coin[1].amount - 1_000, w.addr)])
        txs.append(tx)
        coin = (OutPoint(tx.txid, 0), tx.outputs[0])
    return txs


async def _announced(client: WireClient, count: int) -> list[list[bytes]]:
    """The txids of the ``inv`` messages ``client`` reads until it has ``count``."""
    invs: list[list[bytes]] = []
    while sum(map(len, invs)) < count:
        items = parse_inv(await client.expect("inv", timeout=10.0))
        invs.append([i.hash for i in items if i.kind == INV_TX])
    return invs


async def _established(node: Node, count: int) -> None:
    await wait_until(
        lambda: sum(p.user_agent == USER_AGENT for p in node.peers.peers()) == count,
        what=f"{count} raw peers established",
    )


async def test_a_stream_of_txs_is_announced_in_few_invs_and_in_order(tmp_path):
    """TXS transactions accepted one after the other reach an ordinary peer in a few
    ``inv`` messages, parents before children; a ``notrickle`` peer gets one each."""
    node = await _node(tmp_path)
    try:
        txs = await _chain_of_txs(node, TXS)
        peer = await _peer(node)
        watcher = await _peer(node, source=WATCHER)
        await _established(node, 2)
        for tx in txs:
            await node.submit_tx(tx)
        batched = await _announced(peer, TXS)
        single = await _announced(watcher, TXS)
        log.info("ordinary peer: %d inv(s); notrickle peer: %d", len(batched), len(single))
        order = [tx.txid for tx in txs]
        assert [t for inv in batched for t in inv] == order
        assert [t for inv in single for t in inv] == order
        assert len(single) == TXS
        assert len(batched) <= TXS // 4, f"{len(batched)} invs for {TXS} transactions"
        peer.close()
        watcher.close()
    finally:
        await node.stop()


async def test_inbound_peers_share_one_timer(tmp_path):
    """Every inbound peer's next ``inv`` is due at the same moment (Core's
    ``NextInvToInbounds``): a spy's many connections learn no more than one would."""
    node = await _node(tmp_path, TrickleIntervals(inbound=30.0, outbound=30.0))
    try:
        (tx,) = await _chain_of_txs(node, 1)
        peers = [await _peer(node) for _ in range(3)]
        await _established(node, 3)
        await node.submit_tx(tx)
        states = list(node.peer_states.values())
        assert len(states) == 3
        when = {s.inv_timer.when() for s in states if s.inv_timer is not None}
        assert len(when) == 1 and all(tx.txid in s.tx_to_send for s in states)
        for p in peers:
            p.close()
    finally:
        await node.stop()


async def test_a_tx_that_left_the_mempool_is_not_announced(tmp_path):
    """A transaction mined before its peer's timer fires is dropped from the batch."""
    node = await _node(tmp_path, TrickleIntervals(inbound=30.0, outbound=30.0))
    try:
        first, second = await _chain_of_txs(node, 2)
        peer = await _peer(node)
        await _established(node, 1)
        await node.submit_tx(first)
        await node.generate(1, Wallet().addr)  # confirms ``first``: no longer in the mempool
        await node.submit_tx(second)
        (state,) = node.peer_states.values()
        assert list(state.tx_to_send) == [first.txid, second.txid]
        node.relay.trickle.flush(state)
        assert await _announced(peer, 1) == [[second.txid]]
        peer.close()
    finally:
        await node.stop()


async def test_a_full_queue_is_sent_at_once(tmp_path):
    """The transaction that fills a peer's queue sends its ``inv`` without waiting for the
    timer (a flood cannot grow every peer's queue for a whole interval)."""
    node = await _node(tmp_path, TrickleIntervals(inbound=30.0, outbound=30.0))
    try:
        txs = await _chain_of_txs(node, 5)
        node.relay.trickle.queue_max = 3
        peer = await _peer(node)
        await _established(node, 1)
        for tx in txs:
            await node.submit_tx(tx)
        assert await _announced(peer, 3) == [[tx.txid for tx in txs[:3]]]
        (state,) = node.peer_states.values()
        assert list(state.tx_to_send) == [tx.txid for tx in txs[3:]]
        assert state.inv_timer is not None  # the rest waits for the timer again
        peer.close()
    finally:
        await node.stop()
