#!/usr/bin/env python3
"""Block templates from a full mempool: ``create_block_template`` on a 32 MB pool.

    python scripts/bench_mempool.py              # a full default pool (32 MB), 5 repeats
    python scripts/bench_mempool.py --mb 4 --repeats 3

A regtest chain in a temporary directory gives a few thousand coinbase coins,
split by fan-out transactions into tens of thousands of confirmed outputs.
From those the pool is filled through ``Mempool.accept_many`` (the node's own
acceptance, signatures checked) up to its memory cap: mostly lone 1-in/2-out
transactions, some short chains, and a few chains at the package limit whose
fee rates rise (children paying for their parents), at random fee rates.  Keys
are reused (a few), so signing stays the cost of the set-up it is.

Timed, median of ``repeats`` runs, in this one process: the whole template
(``create_block_template``: selection, decoding the chosen transactions,
coinbase, merkle root); the selection (``Mempool.select_for_block``); the
choice alone (``select_packages``, nothing decoded); and the selection the
pool used before (``old_select_for_block`` below, kept here as the baseline
and nowhere in the product: by each entry's own fee rate, its missing
ancestors walked for every entry).  Printed: the figures, the ratio old/new,
and the fees each selection collects.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from node.chain.chainstate import ChainState  # noqa: E402
from node.consensus.params import REGTEST  # noqa: E402
from node.mempool.entry import MempoolEntry  # noqa: E402
from node.mempool.pool import MAX_MEMPOOL_USAGE, Mempool  # noqa: E402
from node.mempool.template import select_packages  # noqa: E402
from node.mining.miner import create_block_template, mine_blocks  # noqa: E402
from node.mining.warm import COINBASE_RESERVE  # noqa: E402
from node.primitives.block import MAX_BLOCK_SIZE  # noqa: E402
from node.primitives.crypto import SigningKey  # noqa: E402
from node.primitives.errors import ObolError  # noqa: E402
from node.primitives.tx import OutPoint, Transaction, TxOut, sign_transaction  # noqa: E402

FAN_OUTPUTS = 500  # outputs of one fan-out transaction (~14 kB)
FAN_TXS = 60  # fan-out transactions: 30,000 confirmed coins to start from
KEYS = 4  # signing keys, reused
ACCEPT_BATCH = 1_000  # transactions per accept_many (one signature batch)
FULL = 0.99  # the pool counts as full at this share of its cap
LONG_CHAIN = 25  # a chain at the ancestor limit
SIZE_GUESS = 250  # bytes: above a 1-in/2-out's size, so fee = rate × SIZE_GUESS ≥ rate/byte
TEMPLATE_BYTES = MAX_BLOCK_SIZE - COINBASE_RESERVE  # what create_block_template asks for


@dataclass(frozen=True)
class Figures:
    """What one run measured."""

    txs: int  # transactions in the pool
    usage_mb: float  # its estimated memory use
    setup_s: float  # seconds to build the chain and fill the pool
    template_ms: float  # create_block_template, median
    select_ms: float  # Mempool.select_for_block, median
    packages_ms: float  # template.select_packages: the choice alone, nothing decoded, median
    old_select_ms: float  # old_select_for_block, median
    fees: int  # base units the new selection collects
    old_fees: int  # base units the old one collects


def old_select_for_block(pool: Mempool, max_bytes: int) -> tuple[list[Transaction], int]:
    """The pool's selection before package limits (the baseline): by each entry's own fee
    rate, each preceded by its not-yet-included ancestors, within ``max_bytes``."""
    chosen: list[Transaction] = []
    included: set[bytes] = set()
    used = 0
    fees = 0
    for entry in sorted(pool.entries.values(), key=lambda e: e.fee_rate, reverse=True):
        if entry.txid in included:
            continue
        package = _old_ancestors_first(pool, entry, included)
        size = sum(e.size for e in package)
        if used + size > max_bytes:
            continue
        for e in package:
            chosen.append(e.tx)
            included.add(e.txid)
            fees += e.fee
        used += size
    return chosen, fees


def _old_ancestors_first(
    pool: Mempool, entry: MempoolEntry, included: set[bytes]
) -> list[MempoolEntry]:
    order: list[MempoolEntry] = []
    seen: set[bytes] = {entry.txid}
    stack: list[tuple[MempoolEntry, list[bytes]]] = [(entry, sorted(entry.parents))]
    while stack:
        current, parents = stack[-1]
        while parents:
            parent = parents.pop(0)
            if parent not in included and parent not in seen and parent in pool.entries:
                seen.add(parent)
                stack.append((pool.entries[parent], sorted(pool.entries[parent].parents)))
                break
        else:
            order.append(current)
            stack.pop()
    return order


def _coins_to_spend(
    chain: ChainState, keys: list[SigningKey]
) -> list[tuple[OutPoint, TxOut, SigningKey]]:
    """Mine coinbases to ``keys``, let them mature, split each into FAN_OUTPUTS confirmed
    outputs; return those outputs with the key of each."""
    owner = {k.address_hash: k for k in keys}
    blocks = []
    for n in range(FAN_TXS):
        blocks += mine_blocks(chain, None, keys[n % KEYS].address_hash, 1)
    mine_blocks(chain, None, bytes(20), chain.params.coinbase_maturity)
    pool = Mempool(chain, max_usage=10**9)
    fans = []
    for block in blocks:
        coinbase = block.txs[0]
        amount = coinbase.outputs[0].amount
        key = owner[coinbase.outputs[0].addr_hash]
        each = (amount - FAN_OUTPUTS * 100) // FAN_OUTPUTS
        outputs = [TxOut(each, keys[i % KEYS].address_hash) for i in range(FAN_OUTPUTS)]
        fans.append(
            sign_transaction(
                1,
                [(OutPoint(coinbase.txid, 0), coinbase.outputs[0], key)],
                outputs,
                chain.params.network_id,
            )
        )
    for outcome in pool.accept_many(fans):
        if isinstance(outcome, ObolError):
            raise outcome
    while len(pool):
        mine_blocks(chain, pool, bytes(20), 1)
    return [
        (OutPoint(tx.txid, i), out, owner[out.addr_hash])
        for tx in fans
        for i, out in enumerate(tx.outputs)
    ]


def _shapes(rng: random.Random) -> tuple[int, Callable[[int], int]]:
    """A chain's length and the fee rate (base units/byte) of its i-th member: mostly lone
    transactions, some short chains, a few at the limit with rising rates (CPFP)."""
    draw = rng.random()
    if draw < 0.75:
        rate = rng.randint(1, 50)
        return 1, lambda i: rate
    if draw < 0.97:
        rates = [rng.randint(1, 50) for _ in range(5)]
        return rng.randint(2, 5), lambda i: rates[i]
    start = rng.randint(1, 10)
    return LONG_CHAIN, lambda i: start + 2 * i


def _fill(
    chain: ChainState,
    pool: Mempool,
    coins: list[tuple[OutPoint, TxOut, SigningKey]],
    rng: random.Random,
) -> None:
    """Sign and accept transactions until the pool is full (or the coins run out)."""
    network_id = chain.params.network_id
    coins = list(coins)
    rng.shuffle(coins)
    while coins and pool.usage < FULL * pool.max_usage:
        batch: list[Transaction] = []
        while coins and len(batch) < ACCEPT_BATCH:
            outpoint, coin, key = coins.pop()
            length, rate_of = _shapes(rng)
            for i in range(length):
                fee = rate_of(i) * SIZE_GUESS
                half = (coin.amount - fee) // 2
                outputs = [TxOut(half, key.address_hash), TxOut(half, key.address_hash)]
                tx = sign_transaction(1, [(outpoint, coin, key)], outputs, network_id)
                batch.append(tx)
                outpoint, coin = OutPoint(tx.txid, 0), tx.outputs[0]
        pool.accept_many(batch)


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(workdir: Path, max_usage: int = MAX_MEMPOOL_USAGE, repeats: int = 5) -> Figures:
    """Fill a pool of ``max_usage`` on a fresh regtest chain in ``workdir`` and time its
    templates; the figures of :class:`Figures`."""
    started = time.perf_counter()
    rng = random.Random(14)
    keys = [SigningKey.generate() for _ in range(KEYS)]
    chain = ChainState(workdir / "chain", REGTEST)
    try:
        coins = _coins_to_spend(chain, keys)
        pool = Mempool(chain, max_usage=max_usage)
        _fill(chain, pool, coins, rng)
        setup = time.perf_counter() - started
        pay_to = keys[0].address_hash
        template_ms = _median_ms(lambda: create_block_template(chain, pool, pay_to), repeats)
        select_ms = _median_ms(lambda: pool.select_for_block(TEMPLATE_BYTES), repeats)
        packages_ms = _median_ms(lambda: select_packages(pool.entries, TEMPLATE_BYTES), repeats)
        old_ms = _median_ms(lambda: old_select_for_block(pool, TEMPLATE_BYTES), repeats)
        _, fees = pool.select_for_block(TEMPLATE_BYTES)
        _, old_fees = old_select_for_block(pool, TEMPLATE_BYTES)
        return Figures(
            len(pool),
            pool.usage / 1e6,
            setup,
            template_ms,
            select_ms,
            packages_ms,
            old_ms,
            fees,
            old_fees,
        )
    finally:
        chain.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=MAX_MEMPOOL_USAGE / 1e6, help="pool cap, MB")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (the median counts)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="obol-bench-mempool-") as tmp:
        f = measure(Path(tmp), int(args.mb * 1e6), args.repeats)
    print(f"pool: {f.txs:,} txs, {f.usage_mb:.1f} MB of estimated usage (set-up {f.setup_s:.0f} s)")
    print(f"create_block_template: {f.template_ms:.0f} ms (median of {args.repeats})")
    print(f"select_for_block (ancestor fee rate): {f.select_ms:.0f} ms, fees {f.fees:,}")
    print(f"  of which choosing (select_packages, nothing decoded): {f.packages_ms:.0f} ms")
    print(f"old selection (own fee rate): {f.old_select_ms:.0f} ms, fees {f.old_fees:,}")
    print(f"ratio old/new selection time: {f.old_select_ms / f.select_ms:.2f}")
    print(f"ratio new/old fees: {f.fees / f.old_fees:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
