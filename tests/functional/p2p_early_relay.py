"""Blocks relayed before full validation (``powblock``, node/p2p/early_relay.py): they travel
on while the relaying node validates, and a peer is punished only for what it could check
before relaying (docs/protocol.md §14.9).

Most scenarios run on a pair, b dialling a, with a few raw clients connected to a that
send blocks or watch what a relays; a's chain thread is held while a block arrives, so
what a relays before validating can be told from what it relays after.
"""

import asyncio
import contextlib
import os
import threading

import pytest

from node.primitives.block import Block
from node.primitives.tx import make_coinbase
from tests.framework.blocktools import Wallet, child_block, with_bad_proof_of_work
from tests.framework.nodes import fast_net, node_network, sync_blocks
from tests.framework.util import scenario_log, wait_until
from tests.framework.wire import WireClient

log = scenario_log(__name__)

EARLY_RELAY_PROTOCOL = 2  # the protocol version that understands ``powblock``


def overpaying_block(node) -> Block:
    """Valid header and proof of work, invalid only against the chain: the coinbase overpays."""
    return child_block(node, coinbase_value=node.params.subsidy(node.chain.height + 1) + 1)


@contextlib.asynccontextmanager
async def chain_thread_held(node):
    """Keep ``node``'s chain thread busy: nothing it receives is validated until the block ends."""
    gate = threading.Event()
    holding = asyncio.ensure_future(node.in_chain(gate.wait))
    try:
        yield
    finally:
        gate.set()
        await holding


async def flushed(client: WireClient) -> None:
    """Every message the node queued for ``client`` so far has arrived (its writer is FIFO)."""
    nonce = int.from_bytes(os.urandom(8), "big")
    client.send("ping", [nonce])
    while await client.expect("pong") != [nonce]:
        pass


@contextlib.asynccontextmanager
async def connected_pair(tmp_path):
    """A network of a and b (b dials a) on a chain of 2 blocks; both nodes stop at its end.
    No loopback noban: a punishment shows as the discouragement of 127.0.0.1."""
    async with node_network(tmp_path, 2, "line", net=fast_net(permissions=())) as net:
        a, _ = net
        await a.generate(2, Wallet().addr)
        await sync_blocks(net)
        yield net


@pytest.fixture
async def pair(tmp_path):
    async with connected_pair(tmp_path) as net:
        yield tuple(net)


async def test_block_is_relayed_before_it_is_validated(tmp_path):
    """c - a - b: while a's chain thread is held, a block mined at c reaches b and b
    connects it, though a has not validated it yet."""
    async with connected_pair(tmp_path) as net:
        a, b = net
        c = await net.add(peers=[a])
        await sync_blocks([a, b, c])
        parent = a.chain.tip
        async with chain_thread_held(a):
            [block] = await c.generate(1, Wallet().addr)
            await wait_until(lambda: b.chain.tip.hash == block.hash, what="b to connect c's block")
            assert a.chain.tip is parent, "a validated the block: the test held nothing"
        await sync_blocks([a, b, c])
        assert a.chain.tip.hash == block.hash


async def test_relayer_of_an_invalid_block_is_excused_its_originator_banned(pair):
    """A hostile peer sends a with valid proof of work but an overpaying coinbase as
    ``block``: a relays it on to b early, then bans the hostile peer; b finds the block
    invalid too and keeps a (honest nodes never ban each other)."""
    a, b = pair
    client = await WireClient.to_node(a)
    bad = overpaying_block(a)
    client.send("block", bad.to_list())
    assert await client.closed_by_peer(), "the originator was not disconnected"
    await wait_until(lambda: a.peers.is_discouraged("127.0.0.1"), what="a discourages it")
    await wait_until(lambda: bad.hash in b.chain.index, what="b to receive the block relayed early")
    await wait_until(
        lambda: b.chain.index[bad.hash].failure == "bad-cb-amount",
        what="b to find the block invalid",
    )
    assert not b.peers.is_discouraged("127.0.0.1"), "b punished a for a block relayed early"
    assert [p.ban_score for p in b.peers.peers()] == [0]
    await a.generate(1, Wallet().addr)
    await sync_blocks([a, b])


async def test_powblock_failing_only_against_the_chain_is_not_punished(pair):
    """A ``powblock`` whose header and body form are sound but whose coinbase overpays is
    refused without punishing its sender, which could not have known."""
    a, b = pair
    client = await WireClient.to_node(a, protocol_version=EARLY_RELAY_PROTOCOL)
    bad = overpaying_block(a)
    client.send("powblock", bad.to_list())
    await wait_until(
        lambda: bad.hash in a.chain.index and a.chain.index[bad.hash].failure == "bad-cb-amount",
        what="a refuses it",
    )
    await flushed(client)  # still connected
    assert not a.peers.is_discouraged("127.0.0.1")
    assert all(p.ban_score == 0 for p in a.peers.peers())
    client.close()


def with_other_body(block: Block) -> Block:
    """The same (valid) header over a body it does not commit to."""
    cb = block.txs[0]
    other = make_coinbase(cb.inputs[0].prev_index, list(cb.outputs), os.urandom(4))
    return Block.create(block.header, [other])


@pytest.mark.parametrize("spoil", [with_bad_proof_of_work, with_other_body])
async def test_powblock_failing_the_senders_checks_bans(pair, spoil):
    """What a relaying node must check before relaying early, its sender answers for."""
    a, b = pair
    client = await WireClient.to_node(a, protocol_version=EARLY_RELAY_PROTOCOL)
    client.send("powblock", spoil(child_block(a)).to_list())
    assert await client.closed_by_peer(), "sender of a bad powblock was not disconnected"
    await wait_until(lambda: a.peers.is_discouraged("127.0.0.1"), what="discouragement")
    assert len(b.peers.peers()) == 1


async def test_one_early_relay_per_height_and_only_to_peers_that_understand_it(pair):
    """Of two blocks at the same height, only the first is relayed early, and only to a
    peer speaking the early-relay protocol; an older peer gets ``block`` once validated."""
    a, b = pair
    watcher = await WireClient.to_node(a, protocol_version=EARLY_RELAY_PROTOCOL)
    old = await WireClient.to_node(a, protocol_version=1)
    senders = [await WireClient.to_node(a) for _ in range(2)]
    first, second = child_block(a), child_block(a)
    async with chain_thread_held(a):
        senders[0].send("block", first.to_list())
        assert (await watcher.expect("powblock"))[0] == first.header.to_list()
        senders[1].send("block", second.to_list())
        await wait_until(lambda: second.hash in a.sync.validating, what="a to receive the second")
        await flushed(watcher)
        await flushed(old)
        assert [t for t, _ in watcher.inbox if t in ("powblock", "block")] == [], (
            "a second block at the same height was relayed early"
        )
        assert [t for t, _ in old.inbox if t in ("powblock", "block")] == [], (
            "a peer of the old protocol was sent a block before it was validated"
        )
    await wait_until(lambda: a.chain.tip.hash == first.hash, what="a to connect the first block")
    assert (await old.expect("block"))[0] == first.header.to_list()
    await flushed(watcher)
    assert [t for t, _ in watcher.inbox if t in ("powblock", "block")] == []
    for client in (watcher, old, *senders):
        client.close()


async def test_early_relay_goes_to_the_three_peers_that_last_gave_a_new_tip(pair):
    """With six peers that understand ``powblock`` (node b, then five raw clients), a block
    is pushed before validation to EARLY_RELAY_PEERS (3) of them: the two clients that most
    recently sent blocks that became the tip, then by connection order (b); the other three
    get ``block`` once it is validated."""
    a, b = pair
    watchers = [
        await WireClient.to_node(a, protocol_version=EARLY_RELAY_PROTOCOL) for _ in range(5)
    ]
    sender = await WireClient.to_node(a)
    for provider in (watchers[4], watchers[3]):  # watcher 3 is the most recent
        block = child_block(a)
        provider.send("block", block.to_list())
        await wait_until(
            lambda block=block: a.chain.tip.hash == block.hash, what="a to connect a peer's block"
        )
    for watcher in watchers:
        await flushed(watcher)
        watcher.inbox.clear()
    block = child_block(a)
    async with chain_thread_held(a):
        sender.send("block", block.to_list())
        await wait_until(lambda: block.hash in a.sync.validating, what="a to receive the block")
        for watcher in watchers:
            await flushed(watcher)
        early = [i for i, w in enumerate(watchers) if any(t == "powblock" for t, _ in w.inbox)]
        assert early == [3, 4], early
        await wait_until(
            lambda: b.chain.tip.hash == block.hash, what="b to connect the early block"
        )
    await wait_until(lambda: a.chain.tip.hash == block.hash, what="a to connect the block")
    for i in (0, 1, 2):
        assert (await watchers[i].expect("block"))[0] == block.header.to_list()
    for client in (*watchers, sender):
        client.close()


async def test_invalid_block_relayed_early_through_a_mesh_bans_only_its_originator(tmp_path):
    """a, b and c all connected: an invalid block sent to a reaches b and c early, each of
    them possibly twice (the second time it is already known invalid); no honest node
    punishes another, and a bans the originator."""
    # no loopback noban: punishment shows as discouragement
    async with node_network(tmp_path, 3, "mesh", net=fast_net(permissions=())) as nodes:
        a, b, c = nodes
        await a.generate(2, Wallet().addr)
        await sync_blocks(nodes)
        log.info("a hostile client sends a an overpaying block with valid proof of work")
        client = await WireClient.to_node(a)
        bad = overpaying_block(a)
        client.send("block", bad.to_list())
        assert await client.closed_by_peer(), "the originator was not disconnected"
        for n in nodes:
            await wait_until(
                lambda n=n: (
                    bad.hash in n.chain.index and n.chain.index[bad.hash].failure == "bad-cb-amount"
                ),
                what="every node to find the block invalid",
            )
        log.info("the honest nodes still relay to each other")
        await a.generate(1, Wallet().addr)
        await sync_blocks(nodes)
        assert a.peers.is_discouraged("127.0.0.1")
        for n in (b, c):
            assert not n.peers.is_discouraged("127.0.0.1")
        for n in nodes:
            assert len(n.peers.peers()) == 2 and all(p.ban_score == 0 for p in n.peers.peers())
