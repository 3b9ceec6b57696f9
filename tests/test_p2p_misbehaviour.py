"""Hostile peers against a real node: each is disconnected and banned, or ignored,
and a well-behaved peer connected meanwhile stays connected and in sync."""
import os

import pytest

from chainutil import Wallet, coinbase_coin, spend
from hostile import WireClient
from node.primitives.block import Block, BlockHeader, merkle_root
from node.mining.miner import NONCE_START, solve_block
from node.primitives.tx import TxOut, make_coinbase
from node.primitives import encoding
from nodeutil import addr, fast_net, start_node, wait_for, wait_synced


@pytest.fixture
async def pair(tmp_path):
    """Node a with a well-behaved peer b; bans are keyed on host+port-free IPs, so
    b dials a first and stays connected while the hostile client is banned."""
    # a flood limit low enough for a test to exceed quickly
    # and no loopback noban, so that the hostile client's address is discouraged
    a = await start_node(tmp_path / "a", net=fast_net(max_messages_per_second=1000, message_burst=5000,
                                                      permissions=()))
    b = await start_node(tmp_path / "b", peers=[addr(a)])
    await wait_for(lambda: len(a.peers.peers()) == 1, what="b connected to a")
    await a.generate(3, Wallet().addr)
    await wait_synced([a, b])
    yield a, b
    for n in (a, b):
        await n.stop()


def child_block(node, *, bits=None, coinbase_value=None, nonce=None, height=None) -> Block:
    tip = node.chain.tip
    h = tip.height + 1 if height is None else height
    cb = make_coinbase(h, [TxOut(coinbase_value or node.params.subsidy(h), Wallet().addr)], os.urandom(4))
    header = BlockHeader.create(1, tip.hash, merkle_root([cb.txid]),
                                node.chain.median_time_past(tip) + 1,
                                bits if bits is not None else node.chain.next_bits(tip), NONCE_START)
    block = Block.create(header, [cb])
    return block if nonce is not None else solve_block(block)


async def assert_banned_and_b_fine(a, b, client):
    assert await client.closed_by_peer(), "hostile peer was not disconnected"
    await wait_for(lambda: a.peers.is_discouraged("127.0.0.1"), what="discouragement")
    assert not a.peers.bans(), "misbehaviour discourages, an operator bans"
    assert len(b.peers.peers()) == 1, "well-behaved peer lost its connection"
    await a.generate(1, Wallet().addr)
    await wait_synced([a, b])


async def test_block_with_bad_proof_of_work_bans(pair):
    """A block whose hash misses its target gets the sender banned."""
    a, b = pair
    client = await WireClient.connect(a.params, *addr(a))
    block = child_block(a, nonce=0)
    # find a nonce that FAILS the regtest target (about every other one does)
    from node.consensus.pow import bits_to_target, hash_meets_target
    n = NONCE_START
    while hash_meets_target(block.header.with_nonce(n).hash, bits_to_target(block.header.bits)):
        n += 1
    bad = Block.create(block.header.with_nonce(n), block.txs)
    client.send("block", bad.to_list())
    await assert_banned_and_b_fine(a, b, client)
    assert a.chain.tip.hash != bad.hash


async def test_invalid_block_bans(pair):
    """A block whose coinbase overpays gets the sender banned; the tip does not move to it."""
    a, b = pair
    client = await WireClient.connect(a.params, *addr(a))
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
    client = await WireClient.connect(a.params, *addr(a))
    client.send("tx", body)
    await assert_banned_and_b_fine(a, b, client)
    assert good.txid not in a.mempool


async def test_malformed_block_body_bans(pair):
    """A `block` message whose body is not a block (wrong types) gets the sender banned."""
    a, b = pair
    client = await WireClient.connect(a.params, *addr(a))
    client.send("block", [b"not", "a block"])
    await assert_banned_and_b_fine(a, b, client)


async def test_inv_flood_bans(pair):
    """An inv larger than the cap gets the sender banned."""
    a, b = pair
    client = await WireClient.connect(a.params, *addr(a))
    client.send("inv", [[1, os.urandom(32)] for _ in range(50_001)])
    await assert_banned_and_b_fine(a, b, client)


async def test_lagging_block_not_banned(pair):
    """A block from the future beyond the limit is refused but not punished."""
    a, b = pair
    client = await WireClient.connect(a.params, *addr(a))
    tip = a.chain.tip
    cb = make_coinbase(tip.height + 1, [TxOut(1, Wallet().addr)])
    header = BlockHeader.create(1, tip.hash, merkle_root([cb.txid]),
                                int(a.chain.clock()) + a.params.max_future_block_time + 600,
                                a.chain.next_bits(tip), NONCE_START)
    client.send("block", solve_block(Block.create(header, [cb])).to_list())
    client.send("ping", [7])
    assert await client.expect("pong") == [7]
    assert not a.peers.bans() and not a.peers.is_discouraged("127.0.0.1")
    client.close()


async def test_flood_of_inv_messages_bans(pair):
    """Thousands of small inv messages beyond the message rate limit get the sender banned."""
    a, b = pair
    client = await WireClient.connect(a.params, *addr(a))
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
    client = await WireClient.connect(a.params, *addr(a))
    client.send("getdata", [[1, tx.txid]])
    assert encoding.encode(await client.expect("tx")) == tx.raw
    bad, good = a.chain.tip.hash, a.chain.tip.parent.hash
    await a.in_chain(a.chain.invalidate_block, bad)
    client.send("getdata", [[2, bad], [2, good]])
    assert await client.expect("notfound") == [[2, bad]]
    assert Block.from_list(await client.expect("block")).hash == good
    client.close()
