"""Low-work headers and unrequested blocks against real nodes on loopback (issue 14,
item 3): a peer cannot make a node keep a header chain or a block that has too
little work to matter, and an honest chain that forks deep is still followed."""

from __future__ import annotations

import logging

import pytest

from node.chain.presync import ANTI_DOS_BLOCKS
from node.p2p.messages import MAX_HEADERS
from tests.framework.blocktools import Wallet, build_block, header_chain
from tests.framework.hostile import hostile_peer
from tests.framework.nodes import join, node_network, sync_blocks
from tests.framework.util import wait_until

HONEST_HEIGHT = MAX_HEADERS + 2 * ANTI_DOS_BLOCKS  # the attacked node's chain: 2,288 blocks


async def test_a_long_low_work_header_chain_leaves_nothing_behind(tmp_path):
    """Chains of headers from genesis with less work than the node's, sent in full
    batches: the node validates them (asks on from each batch's end) but stores none,
    drops each when it ends, does not punish the sender, and keeps serving b."""
    async with node_network(tmp_path, 2, "line") as (a, b):
        await a.generate(HONEST_HEIGHT, Wallet().addr)
        await sync_blocks([a, b])
        entries = a.chain.reader.db_entries("index")
        known = len(a.chain.index)
        client, attacker = await hostile_peer(a)
        await client.expect("getheaders")  # the one every new peer is sent
        genesis = a.chain.index[a.params.genesis_hash]
        short = HONEST_HEIGHT - ANTI_DOS_BLOCKS - 1  # just below the anti-DoS work
        for _ in range(3):
            fork = header_chain(a.chain, genesis, short, time_step=1, store=False)
            client.send("headers", [h.to_list() for h in fork[:MAX_HEADERS]])
            locator, _ = await client.expect("getheaders")
            assert locator[0] == fork[MAX_HEADERS - 1].hash  # presync: go on from there
            client.send("headers", [h.to_list() for h in fork[MAX_HEADERS:]])
            await wait_until(
                lambda p=attacker: a.peer_states.get(p).presync is None,
                what="the presync to end with the short chain",
            )
        assert len(a.chain.index) == known
        assert a.chain.reader.db_entries("index") == entries
        assert not attacker.closed and attacker.ban_score == 0
        await a.generate(1, Wallet().addr)
        await sync_blocks([a, b])


async def test_an_honest_chain_with_more_work_from_a_deep_fork_is_followed(tmp_path, caplog):
    """a has 2,288 blocks, c a different 2,588 from genesis: a's first batch of c's headers
    has too little work, so a presyncs, downloads the headers again, stores them and
    reorganises onto c's chain; c drops a's shorter chain after its presync."""
    caplog.set_level(logging.INFO, logger="obol.sync")
    async with node_network(tmp_path, 2, "none") as (a, c):
        await a.generate(HONEST_HEIGHT, Wallet().addr)
        await c.generate(HONEST_HEIGHT + 300, Wallet().addr)
        await join(a, c)
        await sync_blocks([a, c], timeout=120)
        assert a.chain.tip.hash == c.chain.tip.hash
    assert "redownloading" in caplog.text
    assert "low-work at height" in caplog.text


@pytest.fixture
async def pair(tmp_path):
    async with node_network(tmp_path, 2, "line") as (a, b):
        await a.generate(20, Wallet().addr)
        await sync_blocks([a, b])
        yield a, b


async def test_pushed_side_blocks_with_less_work_are_not_stored(pair):
    """30 valid blocks on a fork 15 deep, pushed unasked: none is stored (not even its
    header) and the sender is not punished; a block on the tip pushed unasked is taken."""
    a, b = pair
    entries = a.chain.reader.db_entries("blocks")
    client, attacker = await hostile_peer(a)
    fork = a.chain.chain[5]
    side = [build_block(a.chain, fork, Wallet().addr) for _ in range(30)]
    for block in side:
        client.send("block", block.to_list())
    new_tip = build_block(a.chain, a.chain.tip, Wallet().addr)
    client.send("block", new_tip.to_list())
    await wait_until(lambda: a.chain.tip.hash == new_tip.hash, what="the pushed tip")
    assert a.chain.reader.db_entries("blocks") == entries + 1
    assert not any(block.hash in a.chain.index for block in side)
    assert not attacker.closed and attacker.ban_score == 0
    await sync_blocks([a, b])
