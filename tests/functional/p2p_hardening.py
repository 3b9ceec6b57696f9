"""Attacks from one peer against a real node (in process, real loopback sockets): each
runs against the node and asserts the bound that holds it (bytes queued, orphans kept,
validations done), while a well-behaved peer keeps being served."""

from __future__ import annotations

import os

import pytest

from network.config import SEND_PAUSE
from node.mempool.orphans import MAX_ORPHANS_PER_PEER
from node.p2p.messages import INV_BLOCK, INV_TX, MAX_INV, NO_STOP
from node.p2p.relay import GETDATA_SEND_PAUSE, MAX_PARENTS_ASKED
from node.primitives.tx import OutPoint, TxOut
from tests.framework.blocktools import Wallet, coinbase_coin, spend
from tests.framework.hostile import hostile_peer
from tests.framework.nodes import node_network, sync_blocks
from tests.framework.util import wait_until

BIG_TX_OUTPUTS = 2_000  # outputs of the transaction that makes the served block large


@pytest.fixture
async def pair(tmp_path):
    """Node a with a well-behaved peer b, and a wallet that owns a mature coin on a."""
    async with node_network(tmp_path, 2, "line") as (a, b):
        wallet = Wallet()
        blocks = await a.generate(2, wallet.addr)
        await a.generate(a.params.coinbase_maturity, Wallet().addr)
        await sync_blocks([a, b])
        yield a, b, wallet, [coinbase_coin(block) for block in blocks]


async def test_a_getdata_asking_for_a_large_block_50000_times_never_fills_the_queue(pair):
    """getdata amplification: 50,000 requests for a ~70 kB block (3.5 GB of answers) from a
    peer that reads nothing.  The node queues at most GETDATA_SEND_PAUSE bytes plus one
    block for it, goes on mining and serving b meanwhile, and stops when it leaves."""
    a, b, wallet, coins = pair
    op, out = coins[0]
    share = (out.amount - 100_000) // BIG_TX_OUTPUTS  # a fee of over 1 per byte
    big = spend(a.chain, [(op, out)], wallet.key, [TxOut(share, wallet.addr)] * BIG_TX_OUTPUTS)
    await a.submit_tx(big)
    [block] = await a.generate(1, Wallet().addr)
    assert block.size > 50_000
    await sync_blocks([a, b])
    frame_bytes = block.size + 64  # the block and its envelope and frame header

    client, attacker = await hostile_peer(a)
    client.send("getdata", [[INV_BLOCK, block.hash]] * MAX_INV)
    await wait_until(
        lambda: attacker.send_queue_bytes >= GETDATA_SEND_PAUSE,
        what="the node to fill the attacker's queue up to the pause mark",
    )
    for _ in range(3):  # the node keeps working for everyone else
        await a.generate(1, Wallet().addr)
        await sync_blocks([a, b])
        assert attacker.send_queue_bytes < GETDATA_SEND_PAUSE + frame_bytes
    assert not attacker.closed
    client.close()
    await wait_until(
        lambda: attacker.closed and attacker not in a.peers.peers(),
        what="the node to drop the attacker",
    )
    assert len(b.peers.peers()) == 1


async def test_an_orphan_is_kept_its_parent_asked_for_and_both_accepted(pair):
    """A child sent before its parent is no lost transaction: it is kept, the node asks
    its sender for the parent, and once that comes both are in the mempool (and b's)."""
    a, b, wallet, coins = pair
    op, out = coins[0]
    parent = spend(a.chain, [(op, out)], wallet.key, [TxOut(out.amount - 1000, wallet.addr)])
    child = spend(
        a.chain,
        [(OutPoint(parent.txid, 0), parent.outputs[0])],
        wallet.key,
        [TxOut(out.amount - 2000, wallet.addr)],
    )
    client, _ = await hostile_peer(a)
    client.send("tx", child.to_list())
    assert [INV_TX, parent.txid] in await client.expect("getdata")
    assert child.txid in a.relay.orphans and child.txid not in a.mempool
    client.send("tx", parent.to_list())
    await wait_until(
        lambda: parent.txid in a.mempool and child.txid in a.mempool,
        what="parent and child accepted",
    )
    await wait_until(lambda: child.txid in b.mempool, what="the child relayed to b")
    assert child.txid not in a.relay.orphans


async def test_missing_input_floods_are_bounded_and_not_validated_twice(pair):
    """Transactions spending coins that do not exist (701 inputs each): each is validated
    once however often it is resent, one peer keeps at most MAX_ORPHANS_PER_PEER of them,
    they go when the peer goes, and the peer is not punished (its parents may exist)."""
    a, b, wallet, _ = pair
    floods = [
        spend(
            a.chain,
            [(OutPoint(os.urandom(32), 0), TxOut(1000, wallet.addr)) for _ in range(701)],
            wallet.key,
            [TxOut(500, wallet.addr)],
        )
        for _ in range(MAX_ORPHANS_PER_PEER + 15)
    ]
    validated: list[bytes] = []
    accept_many = a.mempool.accept_many

    def counting(txs):
        validated.extend(tx.txid for tx in txs)
        return accept_many(txs)

    a.mempool.accept_many = counting
    client, attacker = await hostile_peer(a)
    for _ in range(3):
        for tx in floods:
            client.send("tx", tx.to_list())
    client.send("ping", [7])  # answered once every message before it is handled
    assert await client.expect("pong") == [7]
    await wait_until(lambda: not a.relay.validating, what="every queued validation decided")
    assert sorted(validated) == sorted(tx.txid for tx in floods)  # once each
    assert a.relay.orphans.count_from(attacker.id) == MAX_ORPHANS_PER_PEER
    assert not attacker.closed and attacker.ban_score == 0
    client.close()
    await wait_until(
        lambda: a.relay.orphans.count_from(attacker.id) == 0,
        what="the peer's orphans dropped with it",
    )


async def test_a_peer_that_reads_nothing_cannot_make_the_node_queue_its_answers(pair):
    """2,000 `getheaders` from a peer that reads nothing (22 MB of answers): once
    SEND_PAUSE bytes are queued to it the node stops reading its messages (Core's
    fPauseSend), so the queue stays at the pause plus one answer, and b is served."""
    a, b, _wallet, _coins = pair
    client, attacker = await hostile_peer(a)
    request = client.frame("getheaders", [[a.params.genesis_hash], NO_STOP])
    client.send_raw(request * 2_000)
    await wait_until(
        lambda: attacker.send_queue_bytes >= SEND_PAUSE,
        what="the node to queue answers up to the pause",
    )
    answer = 128 * (a.chain.height + 1) + 64  # bytes: a headers answer from genesis, at most
    for _ in range(3):
        await a.generate(1, Wallet().addr)
        await sync_blocks([a, b])
        assert attacker.send_queue_bytes < SEND_PAUSE + answer + 10_000  # + the pushed blocks
    assert not attacker.closed


async def test_an_orphan_asks_for_at_most_max_parents_at_once(pair):
    """An orphan of 150 unknown parents: its sender is asked for the first
    MAX_PARENTS_ASKED of them, in input order, in one getdata."""
    a, _b, wallet, _ = pair
    parents = [os.urandom(32) for _ in range(150)]
    orphan = spend(
        a.chain,
        [(OutPoint(p, 0), TxOut(1000, wallet.addr)) for p in parents],
        wallet.key,
        [TxOut(500, wallet.addr)],
    )
    client, _attacker = await hostile_peer(a)
    client.send("tx", orphan.to_list())
    asked = await client.expect("getdata")
    assert asked == [[INV_TX, p] for p in parents[:MAX_PARENTS_ASKED]]
