"""A first end-to-end pass through the consensus core on real LMDB files."""

from node.mempool.pool import Mempool
from node.primitives.tx import TxOut
from tests.framework.blocktools import mature_coins, mine_block, spend


def test_spend_confirm_and_reopen(tmp_path, chain, wallet):
    """Mine to a wallet, spend the mature coinbase through the mempool, confirm, reopen."""
    (coin,) = mature_coins(chain, wallet)
    pool = Mempool(chain)
    tx = spend(chain, [coin], wallet.key, [TxOut(coin[1].amount - 1000, wallet.addr)])
    pool.accept(tx)
    assert tx.txid in pool
    txs, fees = pool.select_for_block(1_000_000)
    assert txs == [tx] and fees == 1000
    block = mine_block(chain, wallet.addr, txs=txs, mempool=pool)
    assert chain.tip.hash == block.hash
    assert len(pool) == 0
    assert chain.reader.get_coin(coin[0]) is None
    stats = chain.utxo_stats
    chain.close()
    from node.chain.chainstate import ChainState

    again = ChainState(tmp_path / "chain", chain.params)
    assert again.tip.hash == block.hash and again.utxo_stats == stats
    again.close()
