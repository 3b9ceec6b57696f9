"""Compact block relay (``cmpctblock``, ``getblocktxn``, ``blocktxn``; node/p2p/compact_relay.py,
docs/protocol.md §14.9): a block travels as its header and short ids and is rebuilt from the
receiver's mempool, which holds all, some or none of its transactions; a short-id collision
falls back to the whole block; old peers get whole blocks; hostile messages are punished
as documented.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from network.permissions import Permission
from node.chain.index import BlockStatus
from node.p2p.compact import CompactBlock, make_compact, short_id, short_id_key
from node.p2p.messages import MAX_BLOCK_TXS
from node.primitives.block import Block
from node.primitives.tx import Transaction, TxOut
from tests.framework.blocktools import Wallet, child_block, coinbase_coin, mine_block, spend
from tests.framework.nodes import fast_net, node_network, sync_blocks, sync_mempools
from tests.framework.util import scenario_log, wait_until
from tests.framework.wire import WireClient

log = scenario_log(__name__)

COMPACT_PROTOCOL = 4  # the protocol version that speaks compact blocks


async def coins(node, wallet: Wallet, count: int) -> list:
    """``count`` mature coins of ``wallet``, mined on ``node``."""
    blocks = await node.generate(count, wallet.addr)
    await node.generate(node.params.coinbase_maturity, Wallet().addr)
    return [coinbase_coin(b) for b in blocks]


def spends(node, wallet: Wallet, owned: list) -> list[Transaction]:
    return [
        spend(node.chain, [coin], wallet.key, [TxOut(coin[1].amount - 10_000, wallet.addr)])
        for coin in owned
    ]


async def only_in(node, txs: list[Transaction]) -> None:
    """Put ``txs`` in ``node``'s mempool without announcing them to its peers."""
    for tx in txs:
        await node.in_chain(node.mempool.accept, tx)


def stats(node) -> dict[str, int]:
    return dict(vars(node.compact.stats))


def delta(before: dict[str, int], node) -> dict[str, int]:
    return {k: v - before[k] for k, v in stats(node).items() if v != before[k]}


# a grants b no ``mempool``: b's request for a's pool once it caught up with the chain may
# reach a only after ``only_in`` filled it, and would teach b what must stay unknown
NO_MEMPOOL_GRANT = fast_net(permissions=(Permission.parse("noban@127.0.0.0/8"),))


@pytest.fixture
async def funded(tmp_path):
    """a and b (b dials a), with 8 mature coins of a wallet; both synced."""
    wallet = Wallet()
    async with node_network(tmp_path, 2, "line", node_args=[{"net": NO_MEMPOOL_GRANT}, {}]) as net:
        a, b = net
        owned = await coins(a, wallet, 8)
        await sync_blocks(net)
        yield a, b, wallet, owned


@pytest.mark.parametrize("relayed", [6, 3, 0])
async def test_block_rebuilt_from_a_mempool_holding_all_some_or_none(funded, relayed):
    """6 transactions in a block; b's mempool holds ``relayed`` of them: it asks for exactly
    the others with one getblocktxn (none if it has them all)."""
    a, b, wallet, owned = funded
    txs = spends(a, wallet, owned[:6])
    for tx in txs[:relayed]:
        await a.submit_tx(tx)
    await sync_mempools([a, b])
    await only_in(a, txs[relayed:])
    before, sent_before = stats(b), stats(a)["sent"]
    [block] = await a.generate(1, Wallet().addr)
    assert {tx.txid for tx in block.txs[1:]} == {tx.txid for tx in txs}
    await sync_blocks([a, b])
    missing = 6 - relayed
    if missing:
        want = {"received": 1, "requests": 1, "txs_requested": missing, "rebuilt_after_request": 1}
    else:
        want = {"received": 1, "rebuilt": 1}
    assert delta(before, b) == want
    assert stats(a)["sent"] == sent_before + 1
    assert stats(a)["served"] == (1 if missing else 0)


async def test_compact_blocks_cost_a_fraction_of_the_block(funded):
    """The bytes a sends for a block of transactions b already has: header, short ids and
    the coinbase, instead of the whole block."""
    a, b, wallet, owned = funded
    for tx in spends(a, wallet, owned):
        await a.submit_tx(tx)
    await sync_mempools([a, b])
    sent = a.peers.stats()["bytes_out"]
    [block] = await a.generate(1, Wallet().addr)
    await sync_blocks([a, b])
    compact_bytes = a.peers.stats()["bytes_out"] - sent
    log.info("block of %d bytes relayed in %d bytes", block.size, compact_bytes)
    assert compact_bytes < block.size / 3


@pytest.fixture
async def node(tmp_path):
    """One node with 3 mature coins and no loopback noban (a punishment shows as the
    discouragement of 127.0.0.1)."""
    wallet = Wallet()
    async with node_network(tmp_path, 1, "line", net=fast_net(permissions=())) as (a,):
        owned = await coins(a, wallet, 3)
        yield a, wallet, owned


def compact_with(block: Block, ids: list[bytes], nonce: int = 7) -> list:
    """A cmpctblock body of ``block`` with the coinbase prefilled and ``ids`` as its ids."""
    return CompactBlock(block.header, nonce, tuple(ids), ((0, block.txs[0]),)).to_list()


async def test_a_short_id_collision_falls_back_to_the_whole_block(node):
    """A raw peer announces a block of t1 with the short id of t2, in the mempool: the node
    rebuilds it with t2, the merkle root does not match, and it asks for the whole block
    (getdata) without punishing anyone."""
    a, wallet, owned = node
    t1, t2 = spends(a, wallet, owned[:2])
    await only_in(a, [t1, t2])
    block = mine_block(a.chain, Wallet().addr, [t1], accept=False)
    key = short_id_key(block.header, 7)
    client = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    client.send("cmpctblock", compact_with(block, [short_id(key, t2.txid)]))
    assert await client.expect("getdata") == [[2, block.hash]]
    client.send("block", block.to_list())
    await wait_until(lambda: a.chain.tip.hash == block.hash, what="a to connect the block")
    assert stats(a)["fallbacks"] == 1
    assert not a.peers.is_discouraged("127.0.0.1")


async def test_an_invalid_compact_block_is_excused_as_a_powblock(node):
    """A compact block that passes the pre-relay checks but overpays its coinbase is
    refused without punishing its sender (as ``powblock``, §14.9)."""
    a, _, _ = node
    bad = child_block(a, coinbase_value=a.params.subsidy(a.chain.height + 1) + 1)
    client = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    client.send("cmpctblock", make_compact(bad, 1).to_list())
    await wait_until(lambda: bad.hash in a.chain.index, what="a to store the block")
    await wait_until(
        lambda: a.chain.index[bad.hash].status == BlockStatus.INVALID, what="a to refuse it"
    )
    assert not a.peers.is_discouraged("127.0.0.1") and not client.writer.is_closing()


async def whole_block(client: WireClient) -> Any:
    """The body of the next block pushed whole: ``powblock`` if the node pushed it early,
    while validating it (it races its own chain thread), else ``block``."""
    others = []  # the messages before it stay in the inbox, in order
    while True:
        message = await client.receive()
        assert message is not None, "closed while waiting for a whole block"
        if message[0] in ("block", "powblock"):
            client.inbox[:0] = others
            return message[1]
        others.append(message)


async def test_an_old_protocol_peer_gets_whole_blocks(node):
    a, _, _ = node
    old = await WireClient.to_node(a, protocol_version=3)
    old.send("sendcmpct", [1, 1])  # asked, but its version cannot read them
    new = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    assert await new.expect("sendcmpct") == [0, 1]
    new.send("sendcmpct", [0, 1])
    await new.sync_with_ping()  # a knows new wants compact blocks before it mines
    await old.sync_with_ping()
    await a.generate(1, Wallet().addr)
    assert (await whole_block(old))[0] == a.chain.tip.header.to_list()
    assert (await new.expect("cmpctblock"))[0] == a.chain.tip.header.to_list()
    assert not [t for t, _ in old.inbox if t == "sendcmpct"]


async def test_getblocktxn_is_served_for_recent_blocks_only(node):
    """The transactions asked for come in order; a block 10 or more below the tip is sent
    whole; an unknown one is notfound."""
    a, wallet, owned = node
    t1, t2 = spends(a, wallet, owned[:2])
    await only_in(a, [t1, t2])
    [block] = await a.generate(1, Wallet().addr)
    client = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    client.send("getblocktxn", [block.hash, [0, 2]])
    assert await client.expect("blocktxn") == [
        block.hash,
        [block.txs[0].to_list(), block.txs[2].to_list()],
    ]
    old = a.chain.chain[a.chain.height - 10]
    client.send("getblocktxn", [old.hash, [0]])
    assert (await client.expect("block"))[0] == old.header.to_list()
    unknown = os.urandom(32)
    client.send("getblocktxn", [unknown, [0]])
    assert await client.expect("notfound") == [[2, unknown]]


def too_many_ids(a) -> list:
    return ["cmpctblock", [a.chain.tip.header.to_list(), 0, [bytes(6)] * (MAX_BLOCK_TXS + 1), []]]


def prefilled_beyond_the_count(a) -> list:
    coinbase = a.chain.reader.get_block(a.chain.tip.hash).txs[0].to_list()
    return ["cmpctblock", [a.chain.tip.header.to_list(), 0, [bytes(6)], [[5, coinbase]]]]


@pytest.mark.parametrize(
    "body_of, code",
    [
        (lambda a: ["getblocktxn", [a.chain.tip.hash, [1]]], "bad-getblocktxn"),  # beyond
        (lambda a: ["getblocktxn", [a.chain.tip.hash, [0, 0]]], "bad-getblocktxn"),  # repeated
        (too_many_ids, "oversized-message"),
        (prefilled_beyond_the_count, "bad-cmpctblock"),
    ],
)
async def test_hostile_compact_messages_are_punished(node, body_of, code):
    a, _, _ = node
    client = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    msg_type, body = body_of(a)
    client.send(msg_type, body)
    assert await client.closed_by_peer(), "hostile peer was not disconnected"
    await wait_until(lambda: a.peers.is_discouraged("127.0.0.1"), what="discouragement")
    assert a.peers.discouraged.get("127.0.0.1").reason == code


async def test_a_blocktxn_that_does_not_answer_the_request_is_punished(node):
    """A blocktxn nobody asked for is ignored; one with the wrong count is punished."""
    a, wallet, owned = node
    [t1] = spends(a, wallet, owned[:1])
    block = mine_block(a.chain, Wallet().addr, [t1], accept=False)
    client = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    client.send("blocktxn", [block.hash, [t1.to_list()]])  # unasked: ignored
    client.send("cmpctblock", make_compact(block, 3).to_list())
    assert await client.expect("getblocktxn") == [block.hash, [1]]
    assert not a.peers.is_discouraged("127.0.0.1")
    client.send("blocktxn", [block.hash, [t1.to_list(), t1.to_list()]])
    assert await client.closed_by_peer()
    await wait_until(lambda: a.peers.is_discouraged("127.0.0.1"), what="discouragement")
    assert a.peers.discouraged.get("127.0.0.1").reason == "bad-blocktxn"


async def test_a_block_pushed_before_validation_is_served_from_memory(node):
    """A high-bandwidth peer gets a block compact before the node has validated it, and
    asks for its transactions at once: the node answers from memory (as Core serves its
    most recent block), not ``notfound``, and serves it whole to ``getdata`` too.  The
    chain thread is held busy so that the block is certainly not validated yet."""
    a, _, _ = node
    high = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    assert await high.expect("sendcmpct") == [0, 1]
    high.send("sendcmpct", [1, 1])
    await high.sync_with_ping()  # high is high-bandwidth before the block comes
    sender = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    await wait_until(lambda: len(a.peer_states) == 2, what="both raw peers established")
    block = child_block(a)
    hold = threading.Event()
    busy = a.chain_future(hold.wait, 30)
    try:
        sender.send("cmpctblock", make_compact(block, 3).to_list())
        assert (await high.expect("cmpctblock"))[0] == block.header.to_list()
        assert block.hash not in a.chain.index  # not even stored: the chain thread is busy
        high.send("getblocktxn", [block.hash, [0]])
        assert await high.expect("blocktxn") == [block.hash, [block.txs[0].to_list()]]
        high.send("getdata", [[2, block.hash]])
        assert (await high.expect("block"))[0] == block.header.to_list()
    finally:
        hold.set()
        await busy
    await wait_until(lambda: a.chain.tip.hash == block.hash, what="a to connect the block")


async def test_a_compact_block_off_our_tip_is_asked_for_whole(node):
    """A compact block that does not extend our tip (a fork, or we are behind) cannot be
    rebuilt from the mempool: it is asked for whole at once, since a peer that pushed it
    compact will not announce it again."""
    a, _, _ = node
    fork = mine_block(a.chain, Wallet().addr, parent=a.chain.tip.parent, accept=False)
    client = await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL)
    client.send("cmpctblock", make_compact(fork, 5).to_list())
    assert await client.expect("getdata") == [[2, fork.hash]]
    client.send("block", fork.to_list())
    await wait_until(lambda: fork.hash in a.chain.index, what="a to store the fork block")
    assert not a.peers.is_discouraged("127.0.0.1")


async def test_high_bandwidth_goes_to_the_three_peers_that_last_gave_a_tip(node):
    """Each peer whose block becomes our tip is asked for high-bandwidth mode (``sendcmpct
    [1, 1]``); a fourth one pushes out the peer that gave a tip longest ago, which is told
    ``sendcmpct [0, 1]`` (Core: MaybeSetPeerAsAnnouncingHeaderAndIDs, 3 peers)."""
    a, _, _ = node
    clients = [await WireClient.to_node(a, protocol_version=COMPACT_PROTOCOL) for _ in range(4)]
    for client in clients:
        assert await client.expect("sendcmpct") == [0, 1]  # compact, not high-bandwidth
        client.send("sendcmpct", [0, 1])
        await client.sync_with_ping()
    for i, client in enumerate(clients):
        block = child_block(a)
        client.send("block", block.to_list())
        await wait_until(lambda b=block: a.chain.tip.hash == b.hash, what=f"block of peer {i}")
        assert await client.expect("sendcmpct") == [1, 1]
    assert await clients[0].expect("sendcmpct") == [0, 1]  # the oldest of four dropped out
    assert len(a.compact.high_bandwidth) == 3
    for client in clients[1:]:
        assert [m for t, m in client.inbox if t == "sendcmpct"] == []  # nothing more
