"""Workloads for scripts/bench.py: regtest chains with many transactions, hash loops, reorgs.

Chains are built in-process with the node's own ChainState, Mempool and miner
(the same code a node runs), written to a datadir that a real obol-node then
serves.
"""
from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import shutil
import time
from pathlib import Path

from node.block import Block, BlockHeader
from node.chainstate import ChainState
from node.crypto import SigningKey
from node.mempool import Mempool
from node.miner import NONCE_START, Miner, mine_blocks
from node.params import REGTEST
from node.tx import OutPoint, Transaction, TxOut, sign_transaction

FAN_OUT = 2_000          # outputs of one fan-out transaction (~60 KB)
SPEND_FEE = 400          # base units paid by each benchmark spend (≥ 1 per byte)
BURN = bytes(20)         # where maturity blocks pay: nobody


class ChainBuilder:
    """A regtest datadir grown in-process: mature coins, fan-outs, blocks of spends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chain = ChainState(path, REGTEST)
        self.pool = Mempool(self.chain, max_bytes=1 << 30)
        self.key = SigningKey.generate()
        self.txs = 0

    def close(self) -> None:
        self.chain.close()

    def tx_count(self) -> int:
        return self.txs + self.chain.height   # every block's coinbase, plus what we added

    def _mine(self, count: int = 1) -> None:
        mine_blocks(self.chain, self.pool, self.key.address_hash, count)

    def fan_out(self, n: int) -> list[tuple[OutPoint, TxOut]]:
        """``n`` mature coins owned by ``self.key``, each from a fan-out transaction."""
        coinbases = -(-n // FAN_OUT)
        blocks = mine_blocks(self.chain, None, self.key.address_hash, coinbases)
        mine_blocks(self.chain, None, BURN, REGTEST.coinbase_maturity)
        coins: list[tuple[OutPoint, TxOut]] = []
        for block in blocks:
            cb = block.txs[0]
            parts = min(FAN_OUT, n - len(coins))
            fee = 40 * parts + 200
            each = (cb.outputs[0].amount - fee) // parts
            tx = sign_transaction(1, [(OutPoint(cb.txid, 0), cb.outputs[0], self.key)],
                                  [TxOut(each, self.key.address_hash)] * parts, REGTEST.network_id)
            self.pool.accept(tx)
            self.txs += 1
            coins.extend((OutPoint(tx.txid, i), tx.outputs[i]) for i in range(parts))
        while len(self.pool):
            self._mine()
        return coins

    def spends(self, coins: list[tuple[OutPoint, TxOut]]) -> list[Transaction]:
        """One signed 1-input, 2-output transaction per coin."""
        out = []
        for op, coin in coins:
            half = (coin.amount - SPEND_FEE) // 2
            out.append(sign_transaction(
                1, [(op, coin, self.key)],
                [TxOut(half, self.key.address_hash), TxOut(coin.amount - SPEND_FEE - half, BURN)],
                REGTEST.network_id))
        return out

    def mine_spends(self, coins: list[tuple[OutPoint, TxOut]], blocks: int) -> None:
        """Spend every coin, spread over ``blocks`` blocks."""
        per_block = -(-len(coins) // blocks)
        for start in range(0, len(coins), per_block):
            txs = self.spends(coins[start:start + per_block])
            self.pool.accept_many(txs)
            self.txs += len(txs)
            self._mine()


# --- hashing ----------------------------------------------------------------------------------

def _bare_loop(count: int) -> int:
    """The bare midstate loop of ../shared/machine-limits.md: sha256d of an ~90-byte header."""
    sha256 = hashlib.sha256
    midstate = sha256(b"\x96" + bytes(80))
    for nonce in range(NONCE_START, NONCE_START + count):
        h = midstate.copy()
        h.update(nonce.to_bytes(8, "big"))
        sha256(h.digest()).digest()
    return count


def bare_hash_rate(processes: int, seconds: float) -> float:
    """Hashes/s of the bare loop on ``processes`` processes."""
    per_process = int(1_500_000 * seconds)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(processes) as pool:
        pool.map(_bare_loop, [1000] * processes)   # start-up is not hashing
        started = time.perf_counter()
        total = sum(pool.map(_bare_loop, [per_process] * processes))
        return total / (time.perf_counter() - started)


def miner_hash_rate(processes: int, seconds: float) -> float:
    """Hashes/s of the node's Miner (worker processes, chunked nonce ranges) on a target it
    cannot meet, measured after its processes have started."""
    header = BlockHeader.create(1, bytes(32), bytes(32), int(time.time()), 0x03000001, NONCE_START)
    block = Block.create(header, [])

    async def run() -> float:
        async def template() -> Block:
            return block

        async def submit(_: Block) -> None:
            raise AssertionError("a block at target 1?")

        miner = Miner(template, submit, processes)
        miner.start()
        try:
            while miner.hashes == 0:   # wait out process start-up
                await asyncio.sleep(0.05)
            first, started = miner.hashes, time.perf_counter()
            await asyncio.sleep(seconds)
            return (miner.hashes - first) / (time.perf_counter() - started)
        finally:
            await miner.stop()

    return asyncio.run(run())


# --- reorg ------------------------------------------------------------------------------------

def reorg_seconds(workdir: Path, depth: int, txs_per_block: int) -> float:
    """Seconds for a node on a branch ``depth`` blocks deep (with transactions) to switch
    to a competing branch one block longer: the time to accept the block that tips it."""
    base = ChainBuilder(workdir / "a")
    coins = base.fan_out(2 * (depth + 1) * txs_per_block)
    base.close()
    shutil.copytree(workdir / "a", workdir / "b")
    ours, theirs = ChainBuilder(workdir / "a"), ChainBuilder(workdir / "b")
    theirs.key = ours.key = base.key
    try:
        half = len(coins) // 2
        for i in range(depth):
            ours.pool.accept_many(ours.spends(coins[i * txs_per_block:(i + 1) * txs_per_block]))
            ours._mine()
        branch = []
        for i in range(depth + 1):
            chunk = coins[half + i * txs_per_block: half + (i + 1) * txs_per_block]
            theirs.pool.accept_many(theirs.spends(chunk))
            theirs._mine()
            branch.append(theirs.chain.get_block(theirs.chain.tip.hash))
        ours.chain.accept_blocks(branch[:-1])          # equal work: stored, no switch
        started = time.perf_counter()
        result = ours.chain.accept_block(branch[-1])
        elapsed = time.perf_counter() - started
        assert len(result.disconnected) == depth and ours.chain.tip.hash == branch[-1].hash
        return elapsed
    finally:
        ours.close()
        theirs.close()

