"""Saving and loading the mempool (node/mempool/persist.py) on real chains and files."""

from __future__ import annotations

import pytest

from node.mempool.persist import MEMPOOL_FORMAT, load_mempool, save_mempool
from node.mempool.pool import Mempool
from node.primitives.encoding import encode
from node.primitives.tx import OutPoint, TxOut
from tests.framework.blocktools import Wallet, coinbase_coin, extend, make_params, spend
from tests.framework.chains import open_chain


@pytest.fixture
def uparams():
    return make_params(coinbase_maturity=2)


@pytest.fixture
def chain_and_coins(tmp_path, uparams):
    wallet = Wallet()
    chain = open_chain(tmp_path / "chain", uparams)
    blocks = extend(chain, wallet.addr, 4)
    extend(chain, b"\x60" * 20, 2)
    yield chain, wallet, [coinbase_coin(b) for b in blocks]
    chain.close()


def a_chain_of_spends(chain, wallet, coin, length):
    """``length`` transactions, each spending the one before (the first spends ``coin``)."""
    txs = []
    op, out = coin
    for _ in range(length):
        tx = spend(chain, [(op, out)], wallet.key, [TxOut(out.amount - 1000, wallet.addr)])
        txs.append(tx)
        op, out = OutPoint(tx.txid, 0), tx.outputs[0]
    return txs


def test_a_saved_pool_loads_with_its_arrival_times(chain_and_coins, tmp_path):
    """Every transaction comes back, children after their parents, with the time it
    first arrived (to the millisecond) rather than the time of the load."""
    chain, wallet, coins = chain_and_coins
    clock = [1_000_000.0]
    pool = Mempool(chain, clock=lambda: clock[0])
    family = a_chain_of_spends(chain, wallet, coins[0], 4)
    loner = a_chain_of_spends(chain, wallet, coins[1], 1)[0]
    for tx in [*family, loner]:
        pool.accept(tx)
        clock[0] += 1.5
    path = tmp_path / "mempool.dat"
    assert save_mempool(pool, path) == 5
    assert not path.with_name("mempool.dat.new").exists()  # renamed into place

    clock[0] += 3600
    again = Mempool(chain, clock=lambda: clock[0])
    assert load_mempool(again, path) == (5, 0)
    assert {t: e.time for t, e in again.entries.items()} == {
        t: round(e.time, 3) for t, e in pool.entries.items()
    }


def test_parents_are_saved_before_children_whatever_their_times(chain_and_coins, tmp_path):
    """A parent younger than its child (a reorg put it back later) is still written
    first, so loading it through normal validation finds the parent."""
    chain, wallet, coins = chain_and_coins
    pool = Mempool(chain)
    parent, child = a_chain_of_spends(chain, wallet, coins[0], 2)
    pool.accept(parent)
    pool.accept(child)
    pool.entries[parent.txid].time = pool.entries[child.txid].time + 100
    path = tmp_path / "mempool.dat"
    save_mempool(pool, path)
    again = Mempool(chain)
    assert load_mempool(again, path) == (2, 0)


def test_what_no_longer_fits_is_dropped(chain_and_coins, tmp_path):
    """Loading validates against the chain of now: a transaction whose coin was spent
    meanwhile, one past the expiry and the children of what was dropped are not loaded."""
    chain, wallet, coins = chain_and_coins
    clock = [1_000_000.0]
    pool = Mempool(chain, clock=lambda: clock[0])
    old = a_chain_of_spends(chain, wallet, coins[0], 1)[0]
    pool.accept(old)
    clock[0] += pool.expiry
    kept = a_chain_of_spends(chain, wallet, coins[1], 1)[0]
    pool.accept(kept)
    doomed, orphan = a_chain_of_spends(chain, wallet, coins[2], 2)
    pool.accept(doomed)
    pool.accept(orphan)
    path = tmp_path / "mempool.dat"
    save_mempool(pool, path)
    rival = spend(chain, [coins[2]], wallet.key, [TxOut(coins[2][1].amount - 5000, b"\x42" * 20)])
    clock[0] += 1
    again = Mempool(chain, clock=lambda: clock[0])
    again.accept(rival)  # the coin of ``doomed`` is taken
    accepted, dropped = load_mempool(again, path)
    assert (accepted, dropped) == (1, 3)
    assert set(again.entries) == {kept.txid, rival.txid}


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\x00",
        encode([MEMPOOL_FORMAT + 1, []]),
        encode([MEMPOOL_FORMAT, [[b"\x93", 1]]]),
        encode([MEMPOOL_FORMAT, [[1, 2]]]),
        encode([MEMPOOL_FORMAT, "records"]),
    ],
)
def test_a_malformed_file_loads_nothing(chain_and_coins, tmp_path, content):
    chain, _, _ = chain_and_coins
    path = tmp_path / "mempool.dat"
    path.write_bytes(content)
    pool = Mempool(chain)
    assert load_mempool(pool, path) == (0, 0) and len(pool) == 0


def test_no_file_loads_nothing(chain_and_coins, tmp_path):
    chain, _, _ = chain_and_coins
    assert load_mempool(Mempool(chain), tmp_path / "absent.dat") == (0, 0)
