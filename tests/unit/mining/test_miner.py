"""Block templates, the nonce search, solving, regtest generation and the async Miner."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time

import pytest

from node.consensus.params import REGTEST
from node.consensus.pow import bits_to_target, hash_meets_target
from node.mempool.pool import Mempool
from node.mining.miner import (
    NONCE_START,
    Miner,
    create_block_template,
    header_prefix,
    mine_blocks,
    search_nonce,
    solve_block,
)
from node.primitives.block import Block, merkle_root
from node.primitives.crypto import sha256d
from node.primitives.tx import TxOut
from tests.framework.blocktools import coinbase_coin, spend
from tests.framework.chains import opened_chain
from tests.framework.programs import killed_at_exit
from tests.framework.util import REPO_ROOT, wait_until


def test_template_includes_mempool_txs_and_pays_fees(funded, uparams):
    """The template spends the pool's txs, pays subsidy + fees, and the solved block connects."""
    chain, wallet, coins = funded
    pool = Mempool(chain)
    txs = [
        spend(chain, [coin], wallet.key, [TxOut(coin[1].amount - fee, wallet.addr)])
        for coin, fee in zip(coins, (1000, 2500, 4000), strict=True)
    ]
    for tx in txs:
        pool.accept(tx)
    now = chain.tip.header.timestamp + 600
    template = create_block_template(chain, pool, b"\x71" * 20, extra=b"hello", now=now)
    height = chain.height + 1
    coinbase = template.txs[0]
    assert coinbase.is_coinbase and coinbase.inputs[0].prev_index == height
    assert coinbase.inputs[0].signature == b"hello"
    assert coinbase.outputs == (TxOut(uparams.subsidy(height) + 7500, b"\x71" * 20),)
    assert [t.txid for t in template.txs[1:]] == [txs[2].txid, txs[1].txid, txs[0].txid]
    assert template.header.prev_hash == chain.tip.hash
    assert template.header.bits == chain.next_bits(chain.tip)
    assert template.header.timestamp == now
    assert template.header.merkle_root == merkle_root([t.txid for t in template.txs])
    assert template.header.nonce == NONCE_START
    assert Block.from_bytes(template.raw) == template
    block = solve_block(template)
    result = chain.accept_block(block)
    assert result.status == "connected" and chain.tip.hash == block.hash
    pool.update_for_chain(result.connected, result.disconnected)
    assert len(pool) == 0
    assert chain.reader.get_coin(coinbase_coin(block)[0]).amount == uparams.subsidy(height) + 7500


def test_template_time_is_above_median_time_past(funded):
    """A template never carries a timestamp at or below the median time past."""
    chain, _, _ = funded
    mtp = chain.median_time_past(chain.tip)
    template = create_block_template(chain, None, b"\x72" * 20, now=mtp - 1000)
    assert template.header.timestamp == mtp + 1
    assert len(template.txs) == 1
    assert template.txs[0].outputs[0].amount == chain.params.subsidy(chain.height + 1)
    assert chain.accept_block(solve_block(template)).status == "connected"


def brute_force(header, target, start, count):
    for nonce in range(start, start + count):
        if hash_meets_target(header.with_nonce(nonce).hash, target):
            return nonce
    return None


def test_search_nonce_finds_the_first_valid_nonce(funded):
    """search_nonce returns the first nonce of its range whose header hash meets the target."""
    chain, _, _ = funded
    template = create_block_template(chain, None, b"\x73" * 20)
    prefix = header_prefix(template.header)
    assert prefix + NONCE_START.to_bytes(8, "big") == template.header.raw
    target = 1 << 252  # about one hash in 16
    for start in (NONCE_START, NONCE_START + 1000, 2**63):
        nonce = search_nonce(prefix, target, start, 2000)
        assert nonce is not None and start <= nonce < start + 2000
        assert nonce == brute_force(template.header, target, start, 2000)
        header = template.header.with_nonce(nonce)
        assert sha256d(prefix + nonce.to_bytes(8, "big")) == header.hash
        assert int.from_bytes(header.hash, "big") <= target


def test_search_nonce_none_when_range_has_no_solution(funded):
    """With a hard target and a tiny range there is no solution: None."""
    chain, _, _ = funded
    prefix = header_prefix(create_block_template(chain, None, b"\x74" * 20).header)
    assert search_nonce(prefix, 1, NONCE_START, 50) is None
    assert search_nonce(prefix, 1 << 255, NONCE_START, 0) is None
    assert search_nonce(prefix, (1 << 256) - 1, NONCE_START, 1) == NONCE_START


def test_solve_block_raw_equals_recreated_block(funded):
    """solve_block's raw bytes equal Block.create(header with nonce, txs).raw."""
    chain, wallet, coins = funded
    pool = Mempool(chain)
    pool.accept(
        spend(chain, [coins[0]], wallet.key, [TxOut(coins[0][1].amount - 900, wallet.addr)])
    )
    template = create_block_template(chain, pool, b"\x75" * 20)
    block = solve_block(template)
    assert block.header.nonce >= NONCE_START
    assert (
        block.raw == Block.create(template.header.with_nonce(block.header.nonce), template.txs).raw
    )
    assert Block.from_bytes(block.raw).hash == block.hash
    assert hash_meets_target(block.hash, bits_to_target(block.header.bits))
    assert block.header.nonce == brute_force(
        template.header,
        bits_to_target(template.header.bits),
        NONCE_START,
        block.header.nonce - NONCE_START + 1,
    )
    # a nearly impossible target with few tries gives up
    hard = Block.create(
        template.header.__class__.create(
            1,
            template.header.prev_hash,
            template.header.merkle_root,
            template.header.timestamp,
            0x03000001,
            NONCE_START,
        ),
        template.txs,
    )
    assert solve_block(hard, max_tries=20) is None


def test_mine_blocks_on_regtest(tmp_path):
    """mine_blocks mines and connects blocks on regtest, built ahead in one batch."""
    with opened_chain(
        tmp_path / "regtest", REGTEST, clock=lambda: REGTEST.genesis_timestamp + 10**6
    ) as chain:
        blocks = mine_blocks(chain, None, b"\x76" * 20, 3)
        assert [b.hash for b in blocks] == [e.hash for e in chain.chain[1:]]
        assert chain.height == 3
        assert chain.utxo_stats.count == 3 and chain.utxo_stats.amount == 3 * REGTEST.subsidy(1)
        assert all(b.header.bits == REGTEST.genesis_bits for b in blocks)
        assert len({b.txs[0].txid for b in blocks}) == 3  # random extra nonce in each coinbase


def test_mine_blocks_confirms_mempool(funded):
    """mine_blocks takes the pool's txs and empties the pool."""
    chain, wallet, coins = funded
    pool = Mempool(chain)
    tx = spend(chain, [coins[0]], wallet.key, [TxOut(coins[0][1].amount - 2000, wallet.addr)])
    pool.accept(tx)
    height = chain.height
    (block,) = mine_blocks(chain, pool, b"\x77" * 20, 1)
    assert chain.height == height + 1 and [t.txid for t in block.txs[1:]] == [tx.txid]
    assert block.txs[0].outputs[0].amount == chain.params.subsidy(height + 1) + 2000
    assert len(pool) == 0
    assert chain.reader.get_transaction(tx.txid)[1].hash == block.hash


@contextlib.asynccontextmanager
async def mining(miner: Miner):
    """``miner`` started for the block, stopped at its end (its worker processes ended)."""
    miner.start()
    try:
        yield miner
    finally:
        await miner.stop()


async def test_async_miner_finds_and_submits_block(tmp_path, uparams):
    """The Miner's worker process finds a block, submit connects it, stop() leaves no processes."""
    with opened_chain(tmp_path / "m", uparams) as chain:
        found = asyncio.Event()
        submitted = []
        templates = []

        async def template():
            block = create_block_template(
                chain,
                None,
                b"\x78" * 20,
                extra=bytes([len(templates)]),
                now=chain.tip.header.timestamp + 600,
            )
            templates.append(block)
            return block

        async def submit(block):
            submitted.append(block)
            chain.accept_block(block)
            found.set()

        miner = Miner(template, submit, processes=1)
        assert not miner.running and miner.hash_rate() == 0.0
        async with mining(miner):
            assert miner.running
            await asyncio.wait_for(found.wait(), timeout=30)
            processes = list(miner._pool._processes.values())
            assert processes and all(p.is_alive() for p in processes)
        chain_height = chain.height
    assert not miner.running and miner._pool is None
    assert miner.blocks_found >= 1 and miner.hashes > 0
    assert chain_height >= 1
    block = submitted[0]
    assert block.header.prev_hash == templates[0].header.prev_hash
    assert (
        block.raw
        == Block.create(templates[0].header.with_nonce(block.header.nonce), templates[0].txs).raw
    )
    assert hash_meets_target(block.hash, bits_to_target(block.header.bits))
    assert all(not p.is_alive() for p in processes), "stop() left worker processes running"
    await miner.stop()  # stopping twice is harmless


async def unsolvable(chain, calls: list) -> Block:
    """A template on the tip with an impossible target (the search never succeeds); counts calls."""
    calls.append(1)
    block = create_block_template(chain, None, b"\x79" * 20, now=chain.tip.header.timestamp + 600)
    header = block.header.__class__.create(
        1,
        block.header.prev_hash,
        block.header.merkle_root,
        block.header.timestamp,
        0x03000001,
        NONCE_START,
    )
    return Block.create(header, block.txs)


async def never_submitted(block):
    raise AssertionError("nothing can be found")


async def test_async_miner_notify_takes_fresh_template(tmp_path, uparams):
    """notify() abandons the current search: the miner asks for a new template."""
    with opened_chain(tmp_path / "n", uparams) as chain:
        calls = []
        again = asyncio.Event()

        async def template():
            if len(calls) >= 1:
                again.set()
            return await unsolvable(chain, calls)

        miner = Miner(template, never_submitted, processes=1)
        async with mining(miner):
            await wait_until(lambda: calls, what="the first template")
            miner.notify()
            await asyncio.wait_for(again.wait(), timeout=30)
            assert miner.blocks_found == 0
    assert not miner.running


async def test_async_miner_keeps_a_young_template_when_only_the_mempool_changed(
    tmp_path, uparams, monkeypatch
):
    """notify(tip=False) (a new mempool tx) is ignored while the template is younger than
    MIN_TEMPLATE_AGE: building one decodes and sorts the pool.  A tip change is not."""
    import node.mining.miner as miner_module

    monkeypatch.setattr(miner_module, "MIN_TEMPLATE_AGE", 3600.0)
    with opened_chain(tmp_path / "y", uparams) as chain:
        calls = []

        async def template():
            return await unsolvable(chain, calls)

        def until(condition, what):
            return wait_until(condition, 30, what=what)

        miner = Miner(template, never_submitted, processes=1)
        async with mining(miner):
            await until(lambda: miner.hashes > 0, "the first hashes")
            miner.notify(tip=False)
            hashes = miner.hashes
            await until(
                lambda: miner.hashes >= hashes + 3 * miner_module.CHUNK_NONCES,
                "three more chunks searched",
            )
            assert len(calls) == 1  # still searching the first template
            miner.notify()  # the tip moved: start over at once
            await until(lambda: len(calls) == 2, "a second template")
            monkeypatch.setattr(miner_module, "MIN_TEMPLATE_AGE", 0.0)
            miner.notify(tip=False)  # an old enough template is refreshed
            await until(lambda: len(calls) == 3, "a third template")


def test_mine_blocks_batches_keep_timestamps_valid(tmp_path):
    """Hundreds of regtest blocks mined in one second keep timestamps above the median time past."""
    now = REGTEST.genesis_timestamp + 10**6
    with opened_chain(tmp_path / "regtest", REGTEST, clock=lambda: now) as chain:
        blocks = mine_blocks(chain, None, b"\x76" * 20, 600)  # more than one MINE_BATCH
        assert chain.height == 600 and blocks[-1].hash == chain.tip.hash
        assert all(b.header.timestamp <= now + REGTEST.max_future_block_time for b in blocks)


MINER_SCRIPT = """
import asyncio, os, sys
from node.primitives.block import Block, BlockHeader
from node.mining.miner import NONCE_START, Miner
from node.primitives.tx import TxOut, make_coinbase

async def main():
    coinbase = make_coinbase(1, [TxOut(1, bytes(20))], b"orphan")
    header = BlockHeader.create(1, bytes(32), coinbase.txid, 1, 0x03000001, NONCE_START)
    block = Block.create(header, [coinbase])          # target 1: never met

    async def template():
        return block

    async def submit(_):
        raise AssertionError
    miner = Miner(template, submit, processes=2)
    miner.start()
    while miner.hashes == 0:
        await asyncio.sleep(0.01)
    print(" ".join(str(pid) for pid in miner._pool._processes), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux")
def test_miner_workers_die_with_a_killed_node(tmp_path):
    """SIGKILL of the process running the Miner ends its worker processes too."""
    node = subprocess.Popen(
        [sys.executable, "-c", MINER_SCRIPT], stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    with killed_at_exit(node) as proc:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids):
        assert time.monotonic() < deadline, "miner workers outlived the killed node"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting to be reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
