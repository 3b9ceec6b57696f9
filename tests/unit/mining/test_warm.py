"""The warm template: its selection follows the mempool, its header the tip, and the
blocks built from it are valid and connect."""

from __future__ import annotations

import pytest

from node.mempool.pool import Mempool
from node.mining.miner import create_block_template, mine_blocks, solve_block
from node.mining.warm import WarmTemplate
from node.primitives.tx import TxOut
from tests.framework.blocktools import spend

PAY_TO = b"\x7a" * 20  # the templates' coinbase address


@pytest.fixture
def warm(funded):
    """The funded chain with an empty pool and its warm template."""
    chain, wallet, coins = funded
    pool = Mempool(chain)
    return chain, pool, WarmTemplate(chain, pool), wallet, coins


def _spend(chain, wallet, coin, fee):
    return spend(chain, [coin], wallet.key, [TxOut(coin[1].amount - fee, wallet.addr)])


def test_selection_is_kept_until_the_mempool_changes(warm):
    chain, pool, warm, wallet, coins = warm
    pool.accept(_spend(chain, wallet, coins[0], 1000))
    first = warm.block(PAY_TO, b"a")
    second = warm.block(PAY_TO, b"b")
    assert warm.rebuilds == 1  # the second block reused the selection
    assert first.txs[1:] == second.txs[1:]
    assert first.txs[0] != second.txs[0]  # each block has its own coinbase


def test_tx_accepted_after_the_template_is_in_the_next_block(warm):
    """A transaction that arrives after a template was built is in the next one, and the
    mined block connects and confirms both."""
    chain, pool, warm, wallet, coins = warm
    early = pool.accept(_spend(chain, wallet, coins[0], 1000))
    assert [t.txid for t in warm.block(PAY_TO).txs[1:]] == [early.txid]
    late = pool.accept(_spend(chain, wallet, coins[1], 4000))
    (block,) = mine_blocks(chain, pool, PAY_TO, 1, template=warm)
    assert [t.txid for t in block.txs[1:]] == [late.txid, early.txid]  # by fee rate
    assert block.txs[0].outputs[0].amount == chain.params.subsidy(chain.height) + 5000
    assert chain.tip.hash == block.hash and len(pool) == 0
    assert warm.block(PAY_TO).txs[1:] == ()  # what the block confirmed is gone


def test_warm_and_cold_templates_agree(warm):
    chain, pool, warm, wallet, coins = warm
    for coin, fee in zip(coins, (1000, 2500, 4000), strict=True):
        pool.accept(_spend(chain, wallet, coin, fee))
    warm.block(PAY_TO)  # warm it, then change the pool: a rebuild reuses the decodings
    pool.remove_with_descendants([next(iter(pool.entries))])
    now = chain.tip.header.timestamp + 600
    hot = warm.block(PAY_TO, b"x", now=now)
    cold = create_block_template(chain, pool, PAY_TO, b"x", now=now)
    assert hot == cold and hot.raw == cold.raw


def test_a_tip_change_moves_the_template(warm):
    """After a block from elsewhere the template builds on the new tip; after a reorg
    (the tip invalidated) on the old one again, with the returned transaction."""
    chain, pool, warm, wallet, coins = warm
    tx = _spend(chain, wallet, coins[0], 1000)
    pool.accept(tx)
    stale = warm.block(PAY_TO)
    other = solve_block(create_block_template(chain, pool, b"\x71" * 20, b"elsewhere"))
    result = chain.accept_block(other)
    pool.update_for_chain(result.connected, result.disconnected)
    fresh = warm.block(PAY_TO)
    assert fresh.header.prev_hash == other.hash != stale.header.prev_hash
    assert fresh.txs[1:] == ()  # the other block confirmed the transaction
    assert fresh.header.bits == chain.next_bits(chain.tip)
    assert fresh.header.timestamp > chain.median_time_past(chain.tip)

    result = chain.invalidate_block(other.hash)
    pool.update_for_chain(result.connected, result.disconnected)
    assert tx.txid in pool
    (block,) = mine_blocks(chain, pool, PAY_TO, 1, template=warm)
    assert block.header.prev_hash == stale.header.prev_hash
    assert [t.txid for t in block.txs[1:]] == [tx.txid]
    assert chain.tip.hash == block.hash and chain.reader.get_tx_location(tx.txid) is not None
