"""Helpers shared by the chain-state, reorg, mempool, miner and crash tests.

Blocks are built with explicit timestamps (``parent time + time_step``) so
ASERT difficulty is under the test's control, and every ChainState gets a
fixed clock far in the future so no header is ever "time-too-new".
"""
from __future__ import annotations

import os
from pathlib import Path

from node.primitives.block import Block, BlockHeader, merkle_root
from node.chain.chainstate import ChainState, UtxoStats
from node.mining.miner import NONCE_START, solve_block
from node.consensus.params import GENESIS_TIME, NetworkParams
from node.storage.schema import height_key
from node.primitives.tx import OutPoint, Transaction, TxOut, make_coinbase

FAR_FUTURE = GENESIS_TIME + 10**8
NEUTRAL_STEP = 600   # make_params(): blocks this far apart keep the target unchanged


def fixed_clock() -> float:
    return float(FAR_FUTURE)


def open_chain(path: Path, params: NetworkParams, **kwargs) -> ChainState:
    kwargs.setdefault("clock", fixed_clock)
    return ChainState(Path(path), params, **kwargs)


def build_block(chain: ChainState, parent, addr: bytes, txs: list[Transaction] = (),
                time_step: int = NEUTRAL_STEP, fees: int = 0, overpay: int = 0,
                extra: bytes | None = None) -> Block:
    """A solved block on ``parent`` (an index entry of ``chain``), not accepted.

    The coinbase pays subsidy + ``fees`` + ``overpay`` to ``addr``.
    """
    height = parent.height + 1
    value = chain.params.subsidy(height) + fees + overpay
    coinbase = make_coinbase(height, [TxOut(value, addr)], os.urandom(4) if extra is None else extra)
    all_txs = [coinbase] + list(txs)
    header = BlockHeader.create(1, parent.hash, merkle_root([t.txid for t in all_txs]),
                                parent.header.timestamp + time_step, chain.next_bits(parent),
                                NONCE_START)
    return solve_block(Block.create(header, all_txs))


def extend(chain: ChainState, addr: bytes, count: int, time_step: int = NEUTRAL_STEP,
           parent=None) -> list[Block]:
    """Mine ``count`` coinbase-only blocks on ``parent`` (default the tip) and accept them."""
    blocks = []
    entry = parent or chain.tip
    for _ in range(count):
        block = build_block(chain, entry, addr, time_step=time_step)
        chain.accept_block(block)
        entry = chain.index[block.hash]
        blocks.append(block)
    return blocks


def utxo_set(chain: ChainState) -> list:
    return sorted(chain.reader.iter_utxos())


def stats_tuple(chain: ChainState) -> tuple[int, int, bytes]:
    return chain.utxo_stats.count, chain.utxo_stats.amount, chain.reader.utxo_digest()


def recompute_stats(chain: ChainState) -> UtxoStats:
    """The UTXO statistics recomputed from the stored coins themselves."""
    coins = [coin for _, coin in chain.reader.iter_utxos()]
    return UtxoStats(len(coins), sum(coin.amount for coin in coins))


def active_blocks(chain: ChainState) -> list[Block]:
    """The stored blocks of the active chain after genesis, in order."""
    return [chain.reader.get_block(e.hash) for e in chain.chain[1:]]


def replay(chain: ChainState, path: Path) -> ChainState:
    """A fresh ChainState in ``path`` fed with the active chain's blocks of ``chain``."""
    fresh = open_chain(path, chain.params)
    for block in active_blocks(chain):
        result = fresh.accept_block(block)
        assert result.status == "connected", result
    return fresh


def assert_chain_db_matches(chain: ChainState) -> None:
    """The ``chain`` db maps every height to the tip's branch, and nothing above the tip."""
    read = chain.reader
    for height, entry in enumerate(chain.chain):
        assert read.db_get("chain", height_key(height)) == entry.hash, height
    assert read.db_get("chain", height_key(chain.height + 1)) is None
    assert read.db_get("meta", b"tip") == chain.tip.hash
    stored_heights = read.db_entries("chain")
    assert stored_heights == chain.height + 1
    entry = chain.tip
    for height in range(chain.height, -1, -1):
        assert chain.chain[height] is entry and entry.height == height
        entry = entry.parent
    assert entry is None
    assert chain.chain[0].hash == chain.params.genesis_hash


def assert_matches_replay(chain: ChainState, path: Path) -> None:
    """The UTXO set of ``chain`` equals the one recomputed by replaying its active chain."""
    assert_chain_db_matches(chain)
    assert recompute_stats(chain) == chain.utxo_stats
    fresh = replay(chain, path)
    try:
        assert fresh.tip.hash == chain.tip.hash
        assert stats_tuple(fresh) == stats_tuple(chain)
        assert utxo_set(fresh) == utxo_set(chain)
        # the address index agrees with the UTXO set
        for addr in {coin.addr_hash for _, coin in utxo_set(fresh)}:
            assert sorted(fresh.reader.address_coins(addr)) == sorted(chain.reader.address_coins(addr))
    finally:
        fresh.close()


def coinbase_outpoint(block: Block) -> tuple[OutPoint, TxOut]:
    return OutPoint(block.txs[0].txid, 0), block.txs[0].outputs[0]
