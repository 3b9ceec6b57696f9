"""Building blocks and transactions for tests (Bitcoin Core's ``blocktools``): params
with cheap work, blocks on any parent, spends of known coins.

Three ways to make a block, by what the test controls:

* :func:`build_block` on a chain, on any parent, timestamp ``parent time +
  time_step`` (ASERT work under the test's control); not accepted.
* :func:`mine_block` on a chain at its clock, accepted unless told not to
  (and the mempool told).
* :func:`child_block` on a running node's tip, every field settable, so P2P
  tests can send blocks that are valid, or invalid in one chosen way.
"""

from __future__ import annotations

import dataclasses
import os

from node.chain.chainstate import ChainState
from node.chain.index import BlockIndexEntry, BlockStatus
from node.consensus.params import REGTEST, NetworkParams
from node.consensus.pow import bits_to_target, block_work, hash_meets_target, target_to_bits
from node.mempool.pool import Mempool
from node.mining.miner import NONCE_START, header_prefix, search_nonce, solve_block
from node.primitives.block import Block, BlockHeader, merkle_root
from node.primitives.crypto import SigningKey
from node.primitives.tx import (
    OutPoint,
    Transaction,
    TxOut,
    input_sighash,
    make_coinbase,
    sighash_common,
    sign_transaction,
)

NEUTRAL_STEP = 600  # seconds between blocks that keep make_params()' target unchanged


def make_params(name: str = "unittest", **overrides) -> NetworkParams:
    """Regtest-like params that retarget with ASERT on a cheap target (~64 hashes a block).

    With spacing 600 s and half-life 600 s, blocks 1 s apart double their
    work every block and blocks 6000 s apart fall to the easiest target.
    """
    fields = {
        "name": name,
        "magic": b"OBUT",
        "retarget": True,
        "pow_limit": (1 << 255) - 1,
        "genesis_bits": target_to_bits(1 << 250),
        "target_spacing": 600,
        "asert_half_life": 600,
        "coinbase_maturity": 2,
        "halving_interval": 1000,
        "genesis_nonce": 0,
    }
    fields.update(overrides)
    params = dataclasses.replace(REGTEST, **fields)
    target = bits_to_target(params.genesis_bits)
    nonce = 0
    while not hash_meets_target(params.genesis.header.with_nonce(nonce).hash, target):
        nonce += 1
    return dataclasses.replace(params, genesis_nonce=nonce)


class Wallet:
    """A key and the coins the test knows it owns."""

    def __init__(self) -> None:
        self.key = SigningKey.generate()
        self.addr = self.key.address_hash


def mine_block(
    chain: ChainState,
    addr: bytes,
    txs: list[Transaction] = (),
    time_step: int | None = None,
    parent=None,
    accept: bool = True,
    mempool: Mempool | None = None,
) -> Block:
    """Mine one block with ``txs`` on ``parent`` (default the tip); accept it unless told not to.

    ``time_step`` sets the timestamp to parent time + time_step (to steer ASERT).
    """
    parent = parent or chain.tip
    height = parent.height + 1
    coinbase = make_coinbase(height, [TxOut(chain.params.subsidy(height), addr)], os.urandom(4))
    all_txs = [coinbase] + list(txs)
    timestamp = (
        parent.header.timestamp + time_step
        if time_step is not None
        else max(int(chain.clock()), chain.median_time_past(parent) + 1)
    )
    header = BlockHeader.create(
        1,
        parent.hash,
        merkle_root([t.txid for t in all_txs]),
        timestamp,
        chain.next_bits(parent),
        NONCE_START,
    )
    block = solve_block(Block.create(header, all_txs))
    if accept:
        result = chain.accept_block(block)
        if mempool is not None:
            mempool.update_for_chain(result.connected, result.disconnected)
    return block


def mine(chain: ChainState, addr: bytes, count: int, **kwargs) -> list[Block]:
    return [mine_block(chain, addr, **kwargs) for _ in range(count)]


def spend(
    chain_or_params,
    coins: list[tuple[OutPoint, TxOut]],
    key: SigningKey,
    outputs: list[TxOut],
    locktime: int = 0,
) -> Transaction:
    """A transaction spending ``coins`` (all owned by ``key``) to ``outputs``."""
    params = getattr(chain_or_params, "params", chain_or_params)
    return sign_transaction(
        1, [(op, out, key) for op, out in coins], outputs, params.network_id, locktime
    )


def resign_input(
    tx: Transaction, spent: list[TxOut], network_id: bytes, index: int, key: SigningKey
) -> Transaction:
    """``tx`` with input ``index``'s signature replaced by ``key``'s signature of that
    input's message (a forged spend: another txid, a signature that does not verify)."""
    common = sighash_common(tx, spent, network_id)
    inputs = list(tx.inputs)
    inputs[index] = inputs[index]._replace(signature=key.sign(input_sighash(common, index)))
    return Transaction.create(tx.version, inputs, tx.outputs, tx.locktime)


def coinbase_coin(block: Block) -> tuple[OutPoint, TxOut]:
    """The coin ``block``'s coinbase created: (outpoint, output)."""
    cb = block.txs[0]
    return OutPoint(cb.txid, 0), cb.outputs[0]


def mature_coins(chain: ChainState, wallet: Wallet, count: int = 1) -> list[tuple[OutPoint, TxOut]]:
    """Mine ``count`` blocks to ``wallet`` plus maturity: their coinbases are spendable."""
    blocks = mine(chain, wallet.addr, count)
    mine(chain, b"\x00" * 20, chain.params.coinbase_maturity)
    return [coinbase_coin(b) for b in blocks]


def build_block(
    chain: ChainState,
    parent,
    addr: bytes,
    txs: list[Transaction] = (),
    time_step: int = NEUTRAL_STEP,
    fees: int = 0,
    overpay: int = 0,
    extra: bytes | None = None,
) -> Block:
    """A solved block on ``parent`` (an index entry of ``chain``), not accepted.

    The coinbase pays subsidy + ``fees`` + ``overpay`` to ``addr``.
    """
    height = parent.height + 1
    value = chain.params.subsidy(height) + fees + overpay
    coinbase = make_coinbase(
        height, [TxOut(value, addr)], os.urandom(4) if extra is None else extra
    )
    all_txs = [coinbase] + list(txs)
    header = BlockHeader.create(
        1,
        parent.hash,
        merkle_root([t.txid for t in all_txs]),
        parent.header.timestamp + time_step,
        chain.next_bits(parent),
        NONCE_START,
    )
    return solve_block(Block.create(header, all_txs))


def extend(
    chain: ChainState, addr: bytes, count: int, time_step: int = NEUTRAL_STEP, parent=None
) -> list[Block]:
    """Mine ``count`` coinbase-only blocks on ``parent`` (default the tip) and accept them."""
    blocks = []
    entry = parent or chain.tip
    for _ in range(count):
        block = build_block(chain, entry, addr, time_step=time_step)
        chain.accept_block(block)
        entry = chain.index[block.hash]
        blocks.append(block)
    return blocks


def child_block(
    node,
    *,
    coinbase_value: int | None = None,
    height: int | None = None,
    timestamp: int | None = None,
    bits: int | None = None,
    solve: bool = True,
) -> Block:
    """A coinbase-only block on ``node``'s tip, not submitted: valid unless told otherwise.

    The coinbase pays ``coinbase_value`` (default the subsidy) to a new address and
    claims ``height`` (default the tip's + 1).  The header has ``timestamp`` (default
    the median time past + 1) and ``bits`` (default what the chain requires), and a
    nonce that meets them unless ``solve=False``.
    """
    chain = node.chain
    tip = chain.tip
    height = tip.height + 1 if height is None else height
    value = chain.params.subsidy(height) if coinbase_value is None else coinbase_value
    coinbase = make_coinbase(height, [TxOut(value, Wallet().addr)], os.urandom(4))
    header = BlockHeader.create(
        1,
        tip.hash,
        merkle_root([coinbase.txid]),
        chain.median_time_past(tip) + 1 if timestamp is None else timestamp,
        chain.next_bits(tip) if bits is None else bits,
        NONCE_START,
    )
    block = Block.create(header, [coinbase])
    return solve_block(block) if solve else block


def with_bad_proof_of_work(block: Block) -> Block:
    """``block`` with the first nonce from NONCE_START whose hash misses the header's own
    target (on regtest about every other nonce does)."""
    target = bits_to_target(block.header.bits)
    nonce = NONCE_START
    while hash_meets_target(block.header.with_nonce(nonce).hash, target):
        nonce += 1
    return Block.create(block.header.with_nonce(nonce), block.txs)


def header_chain(
    chain: ChainState, parent, count: int, time_step: int = NEUTRAL_STEP, store: bool = True
) -> list[BlockHeader]:
    """``count`` solved headers (no bodies) on ``parent``, an entry of ``chain``, each
    with the bits the chain requires; stored in ``chain``'s index (one commit) if ``store``."""
    headers: list[BlockHeader] = []
    entry = parent
    for _ in range(count):
        bits = chain.next_bits(entry)
        unsolved = BlockHeader.create(
            1, entry.hash, os.urandom(32), entry.header.timestamp + time_step, bits, NONCE_START
        )
        nonce = search_nonce(header_prefix(unsolved), bits_to_target(bits), NONCE_START, 1 << 40)
        header = unsolved.with_nonce(nonce)
        headers.append(header)
        work = entry.chain_work + block_work(bits_to_target(bits))
        entry = BlockIndexEntry(header, entry.height + 1, work, BlockStatus.HEADER, 0, entry)
    if store and headers:
        chain.accept_headers(headers)
    return headers
