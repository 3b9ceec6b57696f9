"""Hostile peers against a real node: each is disconnected and banned, or ignored,
and a well-behaved peer connected meanwhile stays connected and in sync.

Each scenario: node a with a well-behaved peer b (b dials a) on a chain of 3 blocks; a
raw client connects to a and misbehaves in one way; a disconnects and bans it (or
ignores what it sent), b stays connected, and a block mined next reaches b.
"""

import os

import pytest

from node.primitives import encoding
from node.primitives.block import Block
from node.primitives.tx import TxOut
from tests.framework.blocktools import (
    Wallet,
    child_block,
    coinbase_coin,
    spend,
    with_bad_proof_of_work,
)
from tests.framework.nodes import fast_net, node_network, sync_blocks
from tests.framework.util import WAIT_TIMEOUT, wait_until
from tests.framework.wire import WireClient


@pytest.fixture
async def pair(tmp_path):
    """Node a with a well-behaved peer b; bans are keyed on host+port-free IPs, so
    b dials a first and stays connected while the hostile client is banned."""
    # a flood limit low enough for a test to exceed quickly, refilled far slower than any
    # node reads (10 messages/s: a burst of 2,000 more is over the limit unless reading it
    # takes 200 s), and no loopback noban, so that the hostile client's address is discouraged
    flood_limit = fast_net(max_messages_per_second=10, message_burst=5000, permissions=())
    async with node_network(tmp_path, 2, "line", node_args=[{"net": flood_limit}, {}]) as net:
        a, b = net
        await a.generate(3, Wallet().addr)
        await sync_blocks([a, b])
        yield a, b


async def assert_banned_and_b_fine(a, b, client):
    assert await client.closed_by_peer(WAIT_TIMEOUT), "hostile peer was not disconnected"
    await wait_until(lambda: a.peers.is_discouraged("127.0.0.1"), what="discouragement")
    assert not a.peers.bans(), "misbehaviour discourages, an operator bans"
    assert len(b.peers.peers()) == 1, "well-behaved peer lost its connection"
    await a.generate(1, Wallet().addr)
    await sync_blocks([a, b])


async def test_block_with_bad_proof_of_work_bans(pair):
    """A block whose hash misses its target gets the sender banned."""
    a, b = pair
    client = await WireClient.to_node(a)
    bad = with_bad_proof_of_work(child_block(a, solve=False))
    client.send("block", bad.to_list())
    await assert_banned_and_b_fine(a, b, client)
    assert a.chain.tip.hash != bad.hash


async def test_invalid_block_bans(pair):
    """A block whose coinbase overpays gets the sender banned; the tip does not move to it."""
    a, b = pair
    client = await WireClient.to_node(a)
    bad = child_block(a, coinbase_value=a.params.subsidy(a.chain.height + 1) + 1)
    client.send("block", bad.to_list())
    await assert_banned_and_b_fine(a, b, client)
    assert a.chain.index[bad.hash].failure == "bad-cb-amount"


async def test_invalid_transaction_bans(pair):
    """A transaction with a bad signature gets the sender banned."""
    a, b = pair
    w = Wallet()
    blocks = await a.generate(1, w.addr)
    await a.generate(a.params.coinbase_maturity, Wallet().addr)
    coin = coinbase_coin(blocks[0])
    good = spend(a.chain, [coin], w.key, [TxOut(coin[1].amount - 1000, w.addr)])
    body = good.to_list()
    body[1][0][2] = bytes(64)  # zero the signature
    client = await WireClient.to_node(a)
    client.send("tx", body)
    await assert_banned_and_b_fine(a, b, client)
    assert good.txid not in a.mempool


async def test_malformed_block_body_bans(pair):
    """A `block` message whose body is not a block (wrong types) gets the sender banned."""
    a, b = pair
    client = await WireClient.to_node(a)
    client.send("block", [b"not", "a block"])
    await assert_banned_and_b_fine(a, b, client)


async def test_inv_flood_bans(pair):
    """An inv larger than the cap gets the sender banned."""
    a, b = pair
    client = await WireClient.to_node(a)
    client.send("inv", [[1, os.urandom(32)] for _ in range(50_001)])
    await assert_banned_and_b_fine(a, b, client)


async def test_lagging_block_not_banned(pair):
    """A block from the future beyond the limit is refused but not punished."""
    a, b = pair
    client = await WireClient.to_node(a)
    too_new = int(a.chain.clock()) + a.params.max_future_block_time + 600
    client.send("block", child_block(a, coinbase_value=1, timestamp=too_new).to_list())
    client.send("ping", [7])
    assert await client.expect("pong") == [7]
    assert not a.peers.bans() and not a.peers.is_discouraged("127.0.0.1")
    client.close()


async def test_flood_of_inv_messages_bans(pair):
    """Thousands of small inv messages beyond the message rate limit get the sender banned."""
    a, b = pair
    client = await WireClient.to_node(a)
    burst = a.peers.config.message_burst
    for _ in range(burst + 2000):
        client.send("inv", [[1, os.urandom(32)]])
    await assert_banned_and_b_fine(a, b, client)
    assert a.peers.discouraged.get("127.0.0.1").reason == "flood"


async def test_getdata_serves_pool_bytes_and_never_an_invalid_block(pair):
    """getdata: a mempool tx comes back as its exact bytes; a stored block marked invalid
    (here by invalidateblock) is answered notfound, a valid one is served."""
    a, b = pair
    wallet = Wallet()
    blocks = await a.generate(1 + a.params.coinbase_maturity, wallet.addr)
    tx = spend(a.chain, [coinbase_coin(blocks[0])], wallet.key, [TxOut(1_000_000, wallet.addr)])
    await a.submit_tx(tx)
    client = await WireClient.to_node(a)
    client.send("getdata", [[1, tx.txid]])
    assert encoding.encode(await client.expect("tx")) == tx.raw
    bad, good = a.chain.tip.hash, a.chain.tip.parent.hash
    await a.in_chain(a.chain.invalidate_block, bad)
    client.send("getdata", [[2, bad], [2, good]])
    assert await client.expect("notfound") == [[2, bad]]
    assert Block.from_list(await client.expect("block")).hash == good
    client.close()
