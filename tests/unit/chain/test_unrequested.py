"""Blocks a peer pushed without being asked (Core's AcceptBlock rules): stored only if
they have at least the tip's work, are at most MAX_UNREQUESTED_AHEAD above the tip,
and reach the network's minimum chain work; nothing of the others is kept."""

from __future__ import annotations

import dataclasses

from node.chain.chainstate import MAX_UNREQUESTED_AHEAD, AcceptStatus
from node.consensus.params import REGTEST
from tests.framework.blocktools import Wallet, build_block, extend, header_chain
from tests.framework.chains import opened_chain


def _push(chain, block):
    """Accept ``block`` as one a peer sent unasked; its outcome."""
    [outcome] = chain.accept_blocks([block], {block.hash}).outcomes
    return outcome


def _kept(chain, block) -> bool:
    return block.hash in chain.index or chain.reader.db_get("blocks", block.hash) is not None


def test_a_pushed_block_with_less_work_than_the_tip_leaves_nothing(tmp_path):
    with opened_chain(tmp_path / "c", REGTEST) as chain:
        extend(chain, Wallet().addr, 10)
        fork = chain.index[chain.chain[5].hash]
        side = build_block(chain, fork, Wallet().addr)
        entries = chain.reader.db_entries("index")
        assert _push(chain, side).status == AcceptStatus.IGNORED
        assert not _kept(chain, side)
        assert chain.reader.db_entries("index") == entries
        # the same block asked for (or given by the API) is stored on its side branch
        assert chain.accept_block(side).status == AcceptStatus.STORED
        assert _kept(chain, side)


def test_a_pushed_block_with_the_tips_work_or_more_is_stored(tmp_path):
    with opened_chain(tmp_path / "c", REGTEST) as chain:
        extend(chain, Wallet().addr, 10)
        rival = build_block(chain, chain.tip.parent, Wallet().addr)  # same work as the tip
        assert _push(chain, rival).status == AcceptStatus.STORED
        child = build_block(chain, chain.index[rival.hash], Wallet().addr)
        assert _push(chain, child).status == AcceptStatus.CONNECTED
        assert chain.tip.hash == child.hash


def test_a_pushed_block_too_far_above_the_tip_is_not_stored(tmp_path):
    with opened_chain(tmp_path / "c", REGTEST) as chain:
        headers = header_chain(chain, chain.tip, MAX_UNREQUESTED_AHEAD + 1)
        last, far = chain.index[headers[-2].hash], chain.index[headers[-1].hash]
        near_block = build_block(chain, last.parent, Wallet().addr)
        far_block = build_block(chain, last, Wallet().addr)
        assert far.height == MAX_UNREQUESTED_AHEAD + 1
        assert _push(chain, far_block).status == AcceptStatus.IGNORED
        assert chain.reader.db_get("blocks", far_block.hash) is None
        assert _push(chain, near_block).status == AcceptStatus.STORED  # height 288: kept


def test_a_pushed_block_below_the_minimum_chain_work_is_not_stored(tmp_path):
    pinned = dataclasses.replace(REGTEST, min_chain_work=10**12)
    with opened_chain(tmp_path / "c", pinned) as chain:
        block = build_block(chain, chain.tip, Wallet().addr)
        assert _push(chain, block).status == AcceptStatus.IGNORED
        assert chain.accept_block(block).status == AcceptStatus.CONNECTED


def test_orphans_are_judged_as_their_parent_was(tmp_path):
    """Pushed orphans on a low-work fork stay out when the pushed parent is ignored, and
    are stored when the parent comes by request (as during a download)."""
    with opened_chain(tmp_path / "c", REGTEST) as chain:
        extend(chain, Wallet().addr, 10)
        fork = chain.index[chain.chain[5].hash]
        # a side chain of three, built on a scratch copy of the same chain
        with opened_chain(tmp_path / "s", REGTEST) as scratch:
            for block in chain.chain[1:6]:
                scratch.accept_block(chain.reader.get_block(block.hash))
            side = extend(scratch, Wallet().addr, 3, parent=scratch.index[fork.hash])
        for child in side[1:]:
            assert _push(chain, child).status == AcceptStatus.ORPHAN
        assert _push(chain, side[0]).status == AcceptStatus.IGNORED
        assert not any(_kept(chain, b) for b in side)
        for child in side[1:]:
            _push(chain, child)  # back into the orphan pool
        chain.accept_block(side[0])  # asked for
        assert all(chain.reader.db_get("blocks", b.hash) is not None for b in side)
