"""Child process for tests/functional/feature_crash_safety.py: connect blocks full of
transactions, forever.

    python tests/framework/crash_worker.py DATADIR SEED [ITERATIONS]

Opens (or resumes) the chain in DATADIR on ``make_params()``, prints
``started height=N`` once it is about to connect blocks, then loops: fill a
mempool with many spends of the wallet's mature coins (some spending outputs
of other unconfirmed txs), mine a template and connect it; every few blocks
mine a two-block fork from the tip's parent instead, which forces a reorg.
With ITERATIONS it stops after that many rounds and prints ``done height=N``;
without, it runs until the parent test kills it.
"""

from __future__ import annotations

import hashlib
import os
import random
import sys

# run as a script, the worker imports the framework and the node from this work tree
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from node.mempool.pool import Mempool  # noqa: E402
from node.mining.miner import create_block_template, solve_block  # noqa: E402
from node.primitives.crypto import SigningKey  # noqa: E402
from node.primitives.errors import ObolError  # noqa: E402
from node.primitives.tx import OutPoint, TxOut, sign_transaction  # noqa: E402
from tests.framework.blocktools import build_block, make_params  # noqa: E402
from tests.framework.chains import open_chain  # noqa: E402

TXS_PER_BLOCK = 30
FEE = 2000


def worker_key(seed: str) -> SigningKey:
    return SigningKey(hashlib.sha256(b"crash-worker/" + seed.encode()).digest())


def fill_pool(chain, pool, key, rng) -> None:
    """Spend mature wallet coins into the pool: 1-2 inputs, 1-3 outputs, some chained."""
    params = chain.params
    next_height = chain.height + 1
    coins = [
        (op, coin)
        for op, coin in chain.reader.address_coins(key.address_hash)
        if pool.spender(op) is None
        and (not coin.coinbase or next_height - coin.height >= params.coinbase_maturity)
    ]
    rng.shuffle(coins)
    fresh = []  # outputs of new pool txs, to chain some spends
    made = 0
    while coins and made < TXS_PER_BLOCK:
        take = coins[: rng.randint(1, 2)]
        del coins[: len(take)]
        inputs = [(op, TxOut(coin.amount, coin.addr_hash), key) for op, coin in take]
        if fresh and rng.random() < 0.3:
            inputs.append(fresh.pop(rng.randrange(len(fresh))))
        total = sum(out.amount for _, out, _ in inputs) - FEE
        if total < 10 * FEE:
            continue
        parts = 1 if total < 10**6 else rng.randint(1, 3)
        amounts = [total // parts] * (parts - 1) + [total - total // parts * (parts - 1)]
        tx = sign_transaction(
            1, inputs, [TxOut(a, key.address_hash) for a in amounts], params.network_id
        )
        try:
            pool.accept(tx)
        except ObolError as exc:  # never expected: the test sees the worker die
            raise SystemExit(f"pool refused {tx.txid.hex()}: {exc}") from exc
        made += 1
        for n, out in enumerate(tx.outputs):
            fresh.append((OutPoint(tx.txid, n), out, key))


def mine_on_tip(chain, pool, key) -> None:
    template = create_block_template(
        chain, pool, key.address_hash, extra=os.urandom(4), now=chain.tip.header.timestamp + 600
    )
    result = chain.accept_block(solve_block(template))
    assert result.status == "connected", result
    pool.update_for_chain(result.connected, result.disconnected)


def fork_from_parent(chain, pool, key) -> None:
    """Two blocks on the tip's parent: more work than the tip, so the chain reorganises."""
    parent = chain.tip.parent
    first = build_block(chain, parent, key.address_hash)
    chain.accept_block(first)  # equal work: stored
    second = build_block(chain, chain.index[first.hash], key.address_hash)
    result = chain.accept_block(second)
    assert chain.tip.hash == second.hash and result.disconnected, result
    pool.update_for_chain(result.connected, result.disconnected)


def main() -> None:
    datadir, seed = sys.argv[1], sys.argv[2]
    iterations = int(sys.argv[3]) if len(sys.argv) > 3 else None
    key = worker_key(seed)
    rng = random.Random()
    chain = open_chain(datadir, make_params())
    pool = Mempool(chain)
    print(f"started height={chain.height}", flush=True)
    done = 0
    while iterations is None or done < iterations:
        if chain.height >= 3 and rng.random() < 0.15:
            fork_from_parent(chain, pool, key)
        else:
            fill_pool(chain, pool, key, rng)
            mine_on_tip(chain, pool, key)
        done += 1
    print(f"done height={chain.height}", flush=True)
    chain.close()


if __name__ == "__main__":
    main()
