"""Helpers for tests that build real chains: params with cheap work, mining, spending."""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from node.primitives.block import Block, BlockHeader, merkle_root
from node.chain.chainstate import ChainState
from node.primitives.crypto import SigningKey
from node.mempool.pool import Mempool
from node.mining.miner import NONCE_START, solve_block
from node.consensus.params import REGTEST, NetworkParams
from node.consensus.pow import bits_to_target, hash_meets_target, target_to_bits
from node.primitives.tx import OutPoint, Transaction, TxOut, make_coinbase, sign_transaction


def make_params(name: str = "unittest", **overrides) -> NetworkParams:
    """Regtest-like params that retarget with ASERT on a cheap target (~64 hashes a block).

    With spacing 600 s and half-life 600 s, blocks 1 s apart double their
    work every block and blocks 6000 s apart fall to the easiest target.
    """
    fields = dict(name=name, magic=b"OBUT", retarget=True, pow_limit=(1 << 255) - 1,
                  genesis_bits=target_to_bits(1 << 250), target_spacing=600,
                  asert_half_life=600, coinbase_maturity=2, halving_interval=1000,
                  genesis_nonce=0)
    fields.update(overrides)
    params = dataclasses.replace(REGTEST, **fields)
    target = bits_to_target(params.genesis_bits)
    nonce = 0
    while not hash_meets_target(params.genesis.header.with_nonce(nonce).hash, target):
        nonce += 1
    return dataclasses.replace(params, genesis_nonce=nonce)


def new_chain(path: Path, params: NetworkParams = REGTEST, **kwargs) -> ChainState:
    return ChainState(Path(path), params, **kwargs)


class Wallet:
    """A key and the coins the test knows it owns."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.addr = self.key.address_hash


def mine_block(chain: ChainState, addr: bytes, txs: list[Transaction] = (), time_step: int | None = None,
               parent=None, accept: bool = True, mempool: Mempool | None = None) -> Block:
    """Mine one block with ``txs`` on ``parent`` (default the tip); accept it unless told not to.

    ``time_step`` sets the timestamp to parent time + time_step (to steer ASERT).
    """
    parent = parent or chain.tip
    height = parent.height + 1
    coinbase = make_coinbase(height, [TxOut(chain.params.subsidy(height), addr)], os.urandom(4))
    all_txs = [coinbase] + list(txs)
    timestamp = (parent.header.timestamp + time_step if time_step is not None
                 else max(int(chain.clock()), chain.median_time_past(parent) + 1))
    header = BlockHeader.create(1, parent.hash, merkle_root([t.txid for t in all_txs]), timestamp,
                                chain.next_bits(parent), NONCE_START)
    block = solve_block(Block.create(header, all_txs))
    if accept:
        result = chain.accept_block(block)
        if mempool is not None:
            mempool.update_for_chain(result.connected, result.disconnected)
    return block


def mine(chain: ChainState, addr: bytes, count: int, **kwargs) -> list[Block]:
    return [mine_block(chain, addr, **kwargs) for _ in range(count)]


def spend(chain_or_params, coins: list[tuple[OutPoint, TxOut]], key: SigningKey,
          outputs: list[TxOut], locktime: int = 0) -> Transaction:
    """A transaction spending ``coins`` (all owned by ``key``) to ``outputs``."""
    params = getattr(chain_or_params, "params", chain_or_params)
    return sign_transaction(1, [(op, out, key) for op, out in coins], outputs, params.network_id, locktime)


def coinbase_coin(block: Block) -> tuple[OutPoint, TxOut]:
    cb = block.txs[0]
    return OutPoint(cb.txid, 0), cb.outputs[0]


def mature_coins(chain: ChainState, wallet: Wallet, count: int = 1) -> list[tuple[OutPoint, TxOut]]:
    """Mine ``count`` blocks to ``wallet`` plus maturity: their coinbases are spendable."""
    blocks = mine(chain, wallet.addr, count)
    mine(chain, b"\x00" * 20, chain.params.coinbase_maturity)
    return [coinbase_coin(b) for b in blocks]
