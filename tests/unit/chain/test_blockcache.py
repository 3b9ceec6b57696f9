"""The bounded cache of decoded blocks (node/chain/blockcache.py) and its use by reorgs."""

from __future__ import annotations

import pytest

from node.chain.blockcache import BlockCache
from node.primitives import block as block_module
from node.primitives.block import Block, BlockHeader, merkle_root
from node.primitives.tx import TxOut, make_coinbase
from tests.framework.blocktools import Wallet, build_block, extend, make_params
from tests.framework.chains import ChainSet, opened_chain
from tests.framework.replay import assert_matches_replay


def _block(n: int, extra: int = 0) -> Block:
    """A distinct (unsolved) block of about ``extra`` + 100 bytes."""
    cb = make_coinbase(n, [TxOut(50, b"\x01" * 20)], b"x" * extra)
    header = BlockHeader.create(1, bytes(32), merkle_root([cb.txid]), n, 0x207FFFFF, n)
    return Block.create(header, [cb])


def test_cache_is_bounded_by_count_least_recently_used_out_first():
    cache = BlockCache(max_blocks=3, max_bytes=10**6)
    blocks = [_block(n) for n in range(5)]
    for b in blocks[:3]:
        cache.put(b)
    assert cache.get(blocks[0].hash) is blocks[0]  # now the most recently used
    cache.put(blocks[3])
    assert blocks[1].hash not in cache  # the least recently used went
    assert [h in cache for h in (blocks[0].hash, blocks[2].hash, blocks[3].hash)] == [True] * 3
    cache.put(blocks[4])
    assert len(cache) == 3 and blocks[2].hash not in cache
    assert cache.get(blocks[1].hash) is None
    assert cache.size == sum(b.size for b in (blocks[0], blocks[3], blocks[4]))


def test_cache_is_bounded_by_serialized_bytes():
    big = [_block(n, extra=90) for n in range(4)]
    cache = BlockCache(max_blocks=100, max_bytes=2 * big[0].size + 10)
    for b in big:
        cache.put(b)
    assert len(cache) == 2 and cache.size <= cache.max_bytes
    assert [b.hash in cache for b in big] == [False, False, True, True]
    cache.put(big[3])  # again: counted once
    assert len(cache) == 2 and cache.size == 2 * big[0].size
    huge = _block(9, extra=100)
    tiny = BlockCache(max_blocks=10, max_bytes=huge.size - 1)
    tiny.put(huge)  # larger than the whole cache: not kept
    assert len(tiny) == 0 and tiny.size == 0


def test_reorg_connects_side_branch_from_the_cache_not_the_database(tmp_path, monkeypatch):
    r"""Both branches were accepted in earlier calls: the switch decodes nothing again,
    and ends in the same state as a replay of the new chain.

        genesis -> o1 -> o2 -> o3      ours (600 s apart)
               \-> t1 -> t2 -> t3      theirs (1 s apart: work 1, 2, 4; t3 wins)
    """
    params = make_params()
    with ChainSet() as chains:
        chain = chains.open(tmp_path / "c", params)
        wallet = Wallet()
        fork = chain.tip
        ours = extend(chain, wallet.addr, 3)
        theirs, parent = [], fork
        for _ in range(3):  # work 1, 2, 4 against ours' 1, 1, 1
            block = build_block(chain, parent, wallet.addr, time_step=1)
            theirs.append(block)
            chain.accept_block(block)
            parent = chain.index[block.hash]
            if len(theirs) < 3:
                assert chain.tip.hash == ours[-1].hash
        assert chain.tip.hash == theirs[-1].hash

        again = chains.open(tmp_path / "d", params)  # reopened: nothing is cached
        decoded = []
        original = block_module.Block.from_stored.__func__

        def counting(cls, data):
            decoded.append(data)
            return original(cls, data)

        monkeypatch.setattr(block_module.Block, "from_stored", classmethod(counting))
        for b in ours:
            again.accept_block(b)
        for b in theirs[:-1]:
            again.accept_block(b)
        result = again.accept_block(theirs[-1])
        assert [b.hash for b in result.disconnected] == [b.hash for b in reversed(ours)]
        assert [b.hash for b in result.connected] == [b.hash for b in theirs]
        assert decoded == []  # all from the cache

        cold = chains.reopen(again)  # reopen and go back: from the database
        cold.invalidate_block(theirs[0].hash)
        assert cold.tip.hash == ours[-1].hash
        assert len(decoded) == len(ours) + len(theirs)  # theirs disconnected, ours connected
        assert_matches_replay(cold, tmp_path / "replay")


@pytest.mark.parametrize("max_blocks", [0, 2])
def test_reorg_result_does_not_depend_on_the_cache(tmp_path, max_blocks):
    """With no cache, or one too small for the reorg, the switch reads the blocks back."""
    params = make_params()
    with opened_chain(tmp_path / "c", params) as chain:
        chain._decoded = BlockCache(max_blocks=max_blocks)
        wallet = Wallet()
        fork = chain.tip
        extend(chain, wallet.addr, 3)
        parent = fork
        for _ in range(3):
            block = build_block(chain, parent, wallet.addr, time_step=1)
            chain.accept_block(block)
            parent = chain.index[block.hash]
        assert chain.tip is parent and len(chain._decoded) <= max_blocks
        assert_matches_replay(chain, tmp_path / "replay")
