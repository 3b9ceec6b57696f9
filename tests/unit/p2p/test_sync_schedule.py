"""The block download scheduler (node/p2p/sync.py) driven directly: real chains, fake peers
that record what they are asked for.  Each block is requested once, and a request that
came to nothing (stall, notfound, a body that does not match its header) is asked of
another peer that has the block."""

from __future__ import annotations

import contextlib
import os

import pytest

from node.p2p.messages import INV_BLOCK, MSG_GETDATA
from node.p2p.peerstate import PeerTable
from node.p2p.sync import MAX_BLOCKS_IN_FLIGHT, BlockSync
from node.primitives.block import Block
from node.primitives.tx import make_coinbase
from tests.framework.blocktools import Wallet, mine
from tests.framework.chains import new_chain

CHAIN_LENGTH = 150  # blocks: several rounds of MAX_BLOCKS_IN_FLIGHT for two peers


class UnusedPort:
    """The scheduler needs nothing of the node: any use of it fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"the download scheduler used the node's {name}")


class FakePeer:
    def __init__(self, peer_id: int) -> None:
        self.id = peer_id
        self.label = f"fake-{peer_id}"
        self.best_height = 0
        self.outbox: list[tuple[str, object]] = []

    def send(self, msg_type: str, body) -> None:
        self.outbox.append((msg_type, body))

    def requested(self) -> list[bytes]:
        """Block hashes asked of this peer since the last call."""
        hashes = [
            h
            for t, body in self.outbox
            if t == MSG_GETDATA
            for kind, h in body
            if kind == INV_BLOCK
        ]
        self.outbox.clear()
        return hashes


@pytest.fixture(scope="module")
def source_blocks(tmp_path_factory) -> list[Block]:
    with contextlib.closing(new_chain(tmp_path_factory.mktemp("source"))) as chain:
        return mine(chain, Wallet().addr, CHAIN_LENGTH)


@pytest.fixture
def downloader(tmp_path, source_blocks):
    """A fresh chain that has every header of ``source_blocks`` and no block; two peers
    that have them all."""
    chain = new_chain(tmp_path / "dest")
    chain.accept_headers([b.header for b in source_blocks])
    sync = BlockSync(chain, PeerTable(), UnusedPort())
    peers = [FakePeer(1), FakePeer(2)]
    for peer in peers:
        sync.peers.add(peer).best_known = chain.index[source_blocks[-1].hash]
    yield chain, sync, peers
    chain.close()


def deliver(chain, sync, peer, hashes, by_hash) -> None:
    """``peer`` sends these blocks; each is validated, as relay.py does."""
    for h in hashes:
        sync.block_arrived(peer, h)
        chain.accept_blocks([by_hash[h]])
        sync.block_validated(h)
        sync.schedule()


def run_to_the_end(chain, sync, peers, by_hash) -> dict[int, list[bytes]]:
    """Serve every request of every peer until nothing more is asked; what each was asked."""
    asked: dict[int, list[bytes]] = {p.id: [] for p in peers}
    while True:
        pending = [(p, p.requested()) for p in peers]
        if not any(hashes for _, hashes in pending):
            return asked
        for peer, hashes in pending:
            asked[peer.id].extend(hashes)
            deliver(chain, sync, peer, hashes, by_hash)


def test_each_block_is_requested_once_across_peers(downloader, source_blocks):
    chain, sync, peers = downloader
    by_hash = {b.hash: b for b in source_blocks}
    sync.schedule()
    assert [len(p.outbox[0][1]) for p in peers] == [MAX_BLOCKS_IN_FLIGHT] * 2
    asked = run_to_the_end(chain, sync, peers, by_hash)
    assert chain.tip.hash == source_blocks[-1].hash
    assert sorted(asked[1] + asked[2]) == sorted(by_hash), "a block was asked for twice, or never"


def mutated(block: Block) -> Block:
    """The block's header over another body (the merkle root no longer matches)."""
    cb = block.txs[0]
    return Block.create(
        block.header, [make_coinbase(cb.inputs[0].prev_index, list(cb.outputs), os.urandom(4))]
    )


async def stall(chain, sync, peer, hashes, by_hash) -> None:
    await sync.on_disconnected(peer)  # what the stall watcher does to a stalling peer


async def answer_notfound(chain, sync, peer, hashes, by_hash) -> None:
    sync.not_found(peer, hashes)


async def send_mutated(chain, sync, peer, hashes, by_hash) -> None:
    deliver(chain, sync, peer, hashes, {h: mutated(by_hash[h]) for h in hashes})


@pytest.mark.parametrize("failure", [stall, answer_notfound, send_mutated])
async def test_requests_that_came_to_nothing_go_to_the_other_peer(
    downloader, source_blocks, failure
):
    chain, sync, (first, second) = downloader
    by_hash = {b.hash: b for b in source_blocks}
    sync.schedule()
    failed = first.requested()
    assert len(failed) == MAX_BLOCKS_IN_FLIGHT
    await failure(chain, sync, first, failed, by_hash)
    peers = [second] if failure is stall else [first, second]
    asked = run_to_the_end(chain, sync, peers, by_hash)
    assert chain.tip.hash == source_blocks[-1].hash, "the sync did not recover"
    everything = [h for hashes in asked.values() for h in hashes]
    assert sorted(everything) == sorted(by_hash), (
        "after the failure, each block is asked for exactly once"
    )
    if failure is answer_notfound:
        assert not set(failed) & set(asked[first.id]), "a peer was asked again for what it lacks"
