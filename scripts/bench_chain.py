"""Signed transactions and regtest chains for ``scripts/bench.py``.

Signing 100,000+ BIP340 transactions is most of the set-up cost, so it runs
in a process pool (``signing_pool``).  Workers get plain tuples and return raw
transaction bytes: nothing but bytes and ints crosses a process boundary.

A coin is ``(txid, index, amount, key_no)``; key ``n`` is derived from the
run's seed (``key_for``), so every process knows every key without sending
secrets around.  Transactions are 1 input / 2 outputs (about 197 bytes),
paying ``FEE`` (about 5 base units per byte).
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from functools import cache

from node.consensus.params import BLOCK_VERSION, NetworkParams
from node.mining.miner import NONCE_START, solve_block
from node.primitives.block import Block, BlockHeader, merkle_root
from node.primitives.crypto import SigningKey
from node.primitives.tx import OutPoint, Transaction, TxOut, make_coinbase, sign_transaction

FEE = 1_000  # base units per 1-in/2-out transaction (~5 per byte)
KEYS_PER_WORKER = 16  # outputs rotate over this many keys per worker
MIN_SPLIT = 20 * FEE  # a coin smaller than this is not split further
COINBASE_TAG = b"obol-bench"
Coin = tuple[bytes, int, int, int]  # (txid, index, amount, key_no)


@cache
def key_for(seed: bytes, key_no: int) -> SigningKey:
    return SigningKey(hashlib.sha256(seed + key_no.to_bytes(4, "big")).digest())


def addr_for(seed: bytes, key_no: int) -> bytes:
    return key_for(seed, key_no).address_hash


def die_with_parent() -> None:
    """In a child process: SIGTERM it when the bench process dies, however it dies (Linux
    prctl PR_SET_PDEATHSIG), so no node or worker outlives a killed run."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass


def signing_pool(workers: int | None = None) -> ProcessPoolExecutor:
    """Worker processes (spawned: the parent runs an event loop and threads)."""
    return ProcessPoolExecutor(
        workers or os.cpu_count() or 1,
        initializer=die_with_parent,
        mp_context=multiprocessing.get_context("spawn"),
    )


def _spend(
    network_id: bytes, seed: bytes, coin: Coin, out_keys: tuple[int, int], fee: int = FEE
) -> Transaction:
    txid, index, amount, key_no = coin
    rest = amount - fee
    half = rest // 2
    outputs = [
        TxOut(half, addr_for(seed, out_keys[0])),
        TxOut(rest - half, addr_for(seed, out_keys[1])),
    ]
    spent = TxOut(amount, addr_for(seed, key_no))
    return sign_transaction(
        1, [(OutPoint(txid, index), spent, key_for(seed, key_no))], outputs, network_id
    )


def _outputs(tx: Transaction, out_keys: tuple[int, int]) -> list[Coin]:
    """The two outputs of a ``_spend`` as coins, with the keys it paid them to."""
    pairs = zip(tx.outputs, out_keys, strict=True)
    return [(tx.txid, n, out.amount, k) for n, (out, k) in enumerate(pairs)]


def fan_out(network_id: bytes, seed: bytes, coin: Coin, parts: int, fee: int) -> Transaction:
    """One transaction splitting ``coin`` into ``parts`` equal outputs over 16 keys."""
    txid, index, amount, key_no = coin
    each = (amount - fee) // parts
    outputs = [TxOut(each, addr_for(seed, n % KEYS_PER_WORKER)) for n in range(parts)]
    spent = TxOut(amount, addr_for(seed, key_no))
    return sign_transaction(
        1, [(OutPoint(txid, index), spent, key_for(seed, key_no))], outputs, network_id
    )


def sign_spends(network_id: bytes, seed: bytes, coins: list[Coin]) -> list[bytes]:
    """One independent 1-in/2-out spend of each coin (worker function)."""
    raws = []
    for coin in coins:
        k = coin[3]
        raws.append(_spend(network_id, seed, coin, (k, k ^ 1)).raw)
    return raws


def sign_chained(
    network_id: bytes, seed: bytes, coins: list[Coin], count: int, max_bytes: int
) -> tuple[list[bytes], int]:
    """Up to ``count`` spends (at most ``max_bytes`` in all), first of ``coins`` then of
    the outputs of those spends, oldest first: a mempool of parents and children.
    Returns the raw transactions, parents before children, and their total size."""
    ready = deque(c for c in coins if c[2] >= MIN_SPLIT)
    raws: list[bytes] = []
    used = 0
    while ready and len(raws) < count:
        coin = ready.popleft()
        tx = _spend(network_id, seed, coin, (coin[3], coin[3] ^ 1))
        if used + tx.size > max_bytes:
            break
        raws.append(tx.raw)
        used += tx.size
        ready.extend(c for c in _outputs(tx, (coin[3], coin[3] ^ 1)) if c[2] >= MIN_SPLIT)
    return raws, used


def build_forest(
    network_id: bytes,
    seed: bytes,
    worker: int,
    roots: list[tuple[Coin, int]],
    schedule: list[tuple[int, int]],
) -> tuple[dict[int, list[bytes]], list[tuple[Coin, int]]]:
    """One worker's share of a chain's transactions (worker function).

    ``roots`` are (coin, first height it may be spent at), e.g. this worker's
    coinbases; ``schedule`` is (height, transactions wanted) in height order.
    Each transaction spends the oldest coin available at its height; its two
    outputs are available from the next height.  A height short of coins
    passes its shortfall on.  Returns the raw transactions per height and
    every coin left unspent with the height it becomes spendable at.
    """
    pending = deque(sorted(roots, key=lambda r: r[1]))
    ready: deque[Coin] = deque()
    out: dict[int, list[bytes]] = {}
    owed = 0
    base_key = worker * KEYS_PER_WORKER
    n = 0
    for height, wanted in schedule:
        while pending and pending[0][1] <= height:
            ready.append(pending.popleft()[0])
        owed += wanted
        raws, created = [], []
        while owed and ready:
            coin = ready.popleft()
            if coin[2] < MIN_SPLIT:
                continue
            keys = (base_key + n % KEYS_PER_WORKER, base_key + (n + 1) % KEYS_PER_WORKER)
            n += 2
            tx = _spend(network_id, seed, coin, keys)
            raws.append(tx.raw)
            created.extend(_outputs(tx, keys))
            owed -= 1
        out[height] = raws
        ready.extend(created)
    if owed:
        raise RuntimeError(f"worker {worker}: {owed} transactions short of coins")
    last = schedule[-1][0] if schedule else 0
    leftover = [(c, last + 1) for c in ready] + list(pending)
    return out, leftover


# --- blocks (in the parent process) ---------------------------------------------------------


def coinbase_for(
    params: NetworkParams, seed: bytes, height: int, key_no: int, tag: bytes = COINBASE_TAG
) -> Transaction:
    return make_coinbase(height, [TxOut(params.subsidy(height), addr_for(seed, key_no))], tag)


def make_block(
    params: NetworkParams,
    parent_hash: bytes,
    timestamp: int,
    coinbase: Transaction,
    raws: Iterable[bytes],
) -> Block:
    txs = [coinbase] + [Transaction.from_bytes(r) for r in raws]
    header = BlockHeader.create(
        BLOCK_VERSION,
        parent_hash,
        merkle_root([t.txid for t in txs]),
        timestamp,
        params.genesis_bits,
        NONCE_START,
    )
    block = solve_block(Block.create(header, txs))
    assert block is not None
    return block


class ChainPlan:
    """A regtest chain from genesis: ``height`` blocks, ``txs`` spends after maturity.

    Block h pays its coinbase to worker ``h % workers``' first key; from height
    maturity+1 on, every block carries about txs / (height - maturity) spends,
    shared between the workers.
    """

    def __init__(
        self, params: NetworkParams, seed: bytes, height: int, txs: int, workers: int
    ) -> None:
        self.params, self.seed, self.height, self.txs, self.workers = (
            params,
            seed,
            height,
            txs,
            workers,
        )
        self.maturity = params.coinbase_maturity
        if height <= self.maturity:
            raise ValueError("the chain must be longer than coinbase maturity")
        self.coinbases = {
            h: coinbase_for(params, seed, h, (h % workers) * KEYS_PER_WORKER)
            for h in range(1, height + 1)
        }

    def jobs(self) -> list[tuple]:
        """Arguments of ``build_forest`` for each worker."""
        spend_heights = list(range(self.maturity + 1, self.height + 1))
        jobs = []
        for w in range(self.workers):
            share = self.txs // self.workers + (1 if w < self.txs % self.workers else 0)
            per, extra = divmod(share, len(spend_heights))
            schedule = [(h, per + (1 if i < extra else 0)) for i, h in enumerate(spend_heights)]
            roots = [
                (
                    (cb.txid, 0, cb.outputs[0].amount, (h % self.workers) * KEYS_PER_WORKER),
                    h + self.maturity,
                )
                for h, cb in self.coinbases.items()
                if h % self.workers == w
            ]
            jobs.append((self.params.network_id, self.seed, w, roots, schedule))
        return jobs

    def blocks(self, forests: list[dict[int, list[bytes]]], base_time: int) -> Iterable[Block]:
        """The blocks in order, built lazily (timestamps base_time + height)."""
        prev = self.params.genesis_hash
        for h in range(1, self.height + 1):
            raws = [r for forest in forests for r in forest.get(h, ())]
            block = make_block(self.params, prev, base_time + h, self.coinbases[h], raws)
            prev = block.hash
            yield block


def spendable(leftovers: list[list[tuple[Coin, int]]], next_height: int) -> list[Coin]:
    """Coins that a transaction in block ``next_height`` may spend, interleaved across workers."""
    lists = [[c for c, h in lo if h <= next_height] for lo in leftovers]
    out: list[Coin] = []
    for i in range(max((len(x) for x in lists), default=0)):
        out.extend(x[i] for x in lists if i < len(x))
    return out


# --- mining (worker function) ----------------------------------------------------------------


def bare_sha256d_loop(prefix: bytes, target: int, seconds: float) -> tuple[int, float, float]:
    """The bare nonce loop of ../shared/machine-limits.md (sha256 midstate ``.copy()``, one
    process per core) for ``seconds``: (hashes tried, monotonic start, monotonic end)."""
    import time

    sha256 = hashlib.sha256
    midstate = sha256(prefix)
    target_bytes = target.to_bytes(32, "big")
    nonce = NONCE_START
    chunk = 1 << 15
    started = time.monotonic()
    deadline = started + seconds
    while True:
        for n in range(nonce, nonce + chunk):
            h = midstate.copy()
            h.update(n.to_bytes(8, "big"))
            if sha256(h.digest()).digest() <= target_bytes:
                break
        nonce += chunk
        now = time.monotonic()
        if now >= deadline:
            return nonce - NONCE_START, started, now


def warm(_: object = None) -> int:
    """A no-op that makes a spawned worker import this module (before anything is timed)."""
    return os.getpid()
