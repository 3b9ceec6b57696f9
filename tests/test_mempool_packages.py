"""Mempool packages on a real chain (LMDB): Core's ancestor/descendant limits at acceptance
(``too-long-mempool-chain``), package totals kept right as entries come and go, and block
templates by ancestor fee rate (CPFP) in near-linear time."""

from __future__ import annotations

import pytest

from chaincheck import build_block, coinbase_outpoint, extend, open_chain
from chainutil import Wallet, make_params, spend
from node.mempool.entry import outpoint_key
from node.mempool.packages import PackageLimits, ancestors_of, descendants_of
from node.mempool.pool import Mempool
from node.primitives.errors import MissingInputsError, PolicyError
from node.primitives.tx import OutPoint, Transaction, TxOut

LIMITS = PackageLimits()
FAN = 80  # confirmed outputs the random pools start from


@pytest.fixture(scope="module")
def uparams():
    return make_params()


@pytest.fixture
def setup(tmp_path, uparams):
    """A chain whose wallet owns 6 mature coinbase coins."""
    wallet = Wallet()
    chain = open_chain(tmp_path / "chain", uparams)
    blocks = extend(chain, wallet.addr, 6)
    extend(chain, b"\x60" * 20, 2)
    yield chain, wallet, [coinbase_outpoint(b) for b in blocks]
    chain.close()


@pytest.fixture(scope="module")
def fanned(tmp_path_factory, uparams):
    """A chain whose wallet owns FAN confirmed outputs of one transaction (module-wide: the
    random pools below never change the chain)."""
    wallet = Wallet()
    chain = open_chain(tmp_path_factory.mktemp("fan") / "chain", uparams)
    blocks = extend(chain, wallet.addr, 1)
    extend(chain, b"\x60" * 20, 2)
    fan = pay(chain, wallet, [coinbase_outpoint(blocks[0])], 100_000, parts=FAN)
    assert (
        chain.accept_block(build_block(chain, chain.tip, b"\x61" * 20, [fan])).status == "connected"
    )
    yield chain, wallet, [out(fan, i) for i in range(FAN)]
    chain.close()


def pay(chain, wallet, inputs, fee, parts=1):
    """Spend ``inputs`` (all the wallet's) to ``parts`` outputs of its own, paying ``fee``."""
    total = sum(o.amount for _, o in inputs) - fee
    amounts = [total // parts] * (parts - 1) + [total - total // parts * (parts - 1)]
    return spend(chain, inputs, wallet.key, [TxOut(a, wallet.addr) for a in amounts])


def out(tx, n=0):
    return OutPoint(tx.txid, n), tx.outputs[n]


def assert_packages_consistent(pool):
    """Every entry's cached package totals equal what its links say, and the pool's
    maps and usage agree with its entries."""
    entries = pool.entries
    spenders = {
        outpoint_key(i.prev_txid, i.prev_index): txid
        for txid, e in entries.items()
        for i in e.tx.inputs
    }
    assert pool.spenders == spenders
    assert pool.bytes == sum(e.size for e in entries.values())
    assert pool.usage == sum(e.usage() for e in entries.values())
    for txid, e in entries.items():
        assert e.parents == {i.prev_txid for i in e.tx.inputs if i.prev_txid in entries}
        up, down = ancestors_of(entries, txid), descendants_of(entries, txid)
        assert (e.ancestors_count, e.ancestors_size, e.ancestors_fees) == (
            len(up),
            sum(entries[a].size for a in up),
            sum(entries[a].fee for a in up),
        )
        assert (e.descendants_count, e.descendants_size) == (
            len(down),
            sum(entries[d].size for d in down),
        )
        assert e.count_with_ancestors <= LIMITS.ancestor_count
        assert e.size_with_ancestors <= LIMITS.ancestor_size
        assert e.count_with_descendants <= LIMITS.descendant_count
        assert e.size_with_descendants <= LIMITS.descendant_size


def chain_of(chain, wallet, coin, count, fee_of, parts=1):
    """``count`` transactions of ``parts`` outputs, each spending the last one's first output;
    the i-th pays ``fee_of(i)``."""
    txs = [pay(chain, wallet, [coin], fee_of(0), parts)]
    for i in range(1, count):
        txs.append(pay(chain, wallet, [out(txs[-1])], fee_of(i), parts))
    return txs


# --- limits at acceptance -----------------------------------------------------------------


def test_a_chain_of_7000_rising_fee_rates_is_refused_from_the_26th(setup):
    """The issue's attack: 7,000 unconfirmed transactions, each spending the last and paying
    a higher fee rate.  The first 25 enter; the 26th would have 26 ancestors (itself
    included) and is refused with too-long-mempool-chain, not punished (policy); the rest
    spend what the pool does not hold."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    txs = chain_of(chain, wallet, coins[0], 7_000, lambda i: 1_000 + 10 * i)
    outcomes = pool.accept_many(txs)
    assert [o.txid for o in outcomes[:25]] == [tx.txid for tx in txs[:25]]
    assert isinstance(outcomes[25], PolicyError) and outcomes[25].code == "too-long-mempool-chain"
    assert "ancestors" in str(outcomes[25])
    assert all(isinstance(o, MissingInputsError) for o in outcomes[26:])
    with pytest.raises(PolicyError) as exc:
        pool.accept(txs[25])
    assert exc.value.code == "too-long-mempool-chain"
    assert len(pool) == 25
    assert max(e.count_with_ancestors for e in pool.entries.values()) == LIMITS.ancestor_count
    assert pool.get(txs[0].txid).count_with_descendants == LIMITS.descendant_count
    assert_packages_consistent(pool)


def test_a_parent_may_have_at_most_24_descendants(setup):
    """A parent with 24 children has 25 with descendants (itself included): a 25th child
    is refused, naming the parent, though it has only one ancestor."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    parent = pay(chain, wallet, [coins[0]], 1_000, parts=30)
    pool.accept(parent)
    children = [pay(chain, wallet, [out(parent, i)], 1_000) for i in range(25)]
    for child in children[:24]:
        pool.accept(child)
    with pytest.raises(PolicyError) as exc:
        pool.accept(children[24])
    assert exc.value.code == "too-long-mempool-chain"
    assert parent.txid.hex() in str(exc.value)
    assert pool.get(parent.txid).count_with_descendants == 25
    assert children[24].txid not in pool
    assert_packages_consistent(pool)


def test_size_limits_count_bytes_of_ancestors_and_descendants(setup):
    """The size limits, with small limits to show the rule: ancestors' bytes (itself included)
    and any ancestor's descendants' bytes (itself included) must stay within them."""
    chain, wallet, coins = setup
    txs = chain_of(chain, wallet, coins[0], 4, lambda i: 1_000)
    size = txs[0].size
    assert all(tx.size == size for tx in txs)
    pool = Mempool(chain, limits=PackageLimits(ancestor_size=3 * size))
    for tx in txs[:3]:
        pool.accept(tx)
    with pytest.raises(PolicyError) as exc:
        pool.accept(txs[3])
    assert exc.value.code == "too-long-mempool-chain" and "ancestor size" in str(exc.value)
    parent = pay(chain, wallet, [coins[1]], 1_000, parts=2)
    kids = [pay(chain, wallet, [out(parent, i)], 1_000) for i in range(2)]
    pool = Mempool(chain, limits=PackageLimits(descendant_size=parent.size + kids[0].size))
    pool.accept(parent)
    pool.accept(kids[0])
    with pytest.raises(PolicyError) as exc:
        pool.accept(kids[1])
    assert exc.value.code == "too-long-mempool-chain" and "descendant size" in str(exc.value)
    assert_packages_consistent(pool)


def test_a_replacement_is_judged_without_what_it_replaces(setup):
    """A parent at its descendant limit: a replacement of one of its children enters (the
    child it evicts no longer counts), a new 25th child still does not."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    parent = pay(chain, wallet, [coins[0]], 1_000, parts=30)
    pool.accept(parent)
    children = [pay(chain, wallet, [out(parent, i)], 1_000) for i in range(24)]
    for child in children:
        pool.accept(child)
    replacement = pay(chain, wallet, [out(parent, 0)], 5_000)
    pool.accept(replacement)
    assert children[0].txid not in pool and replacement.txid in pool
    assert pool.get(parent.txid).count_with_descendants == 25
    with pytest.raises(PolicyError) as exc:
        pool.accept(pay(chain, wallet, [out(parent, 24)], 1_000))
    assert exc.value.code == "too-long-mempool-chain"
    assert_packages_consistent(pool)


def test_package_totals_follow_blocks_evictions_expiry_batches_and_reorgs(setup):
    """The cached totals stay equal to what the links say through everything that removes
    entries: part of a chain confirmed, a conflict mined, a bad signature in a batch,
    eviction, expiry, and a reorg that brings confirmed transactions back."""
    chain, wallet, coins = setup
    now = [1000.0]
    pool = Mempool(chain, clock=lambda: now[0], expiry=100)
    line = chain_of(chain, wallet, coins[0], 6, lambda i: 1_000 * (i + 1), parts=2)
    fork = pay(chain, wallet, [out(line[1], 1)], 700)  # a second child of line[1]
    other = chain_of(chain, wallet, coins[1], 3, lambda i: 2_000)
    for tx in line + [fork] + other:
        pool.accept(tx)
    assert_packages_consistent(pool)
    assert pool.get(line[5].txid).count_with_ancestors == 6
    assert pool.get(line[0].txid).count_with_descendants == 7

    # the first three of the line confirmed, and a conflict with `other` mined
    rival = pay(chain, wallet, [coins[1]], 3_000)
    block = build_block(chain, chain.tip, b"\x67" * 20, line[:3] + [rival], fees=9_000)
    result = chain.accept_block(block)
    assert result.status == "connected"
    pool.update_for_chain(result.connected, result.disconnected)
    assert set(pool.entries) == {tx.txid for tx in line[3:] + [fork]}
    assert pool.get(line[5].txid).count_with_ancestors == 3
    assert pool.get(fork.txid).count_with_ancestors == 1
    assert_packages_consistent(pool)

    # a batch whose middle transaction has a bad signature: it and its child go
    batch = chain_of(chain, wallet, coins[2], 4, lambda i: 1_500)
    body = batch[1].to_list()
    body[1][0][2] = bytes(64)
    batch[1] = Transaction.from_list(body)
    batch[2] = pay(chain, wallet, [out(batch[1])], 1_500)
    batch[3] = pay(chain, wallet, [out(batch[2])], 1_500)
    outcomes = pool.accept_many(batch)
    assert outcomes[1].code == "bad-txns-signature" and batch[0].txid in pool
    assert not any(tx.txid in pool for tx in batch[1:])
    assert_packages_consistent(pool)

    # the block is invalidated (a reorg): its transactions come back before the others
    result = chain.invalidate_block(chain.tip.hash)
    assert result.disconnected
    pool.update_for_chain(result.connected, result.disconnected)
    assert rival.txid in pool and pool.get(line[5].txid).count_with_ancestors == 6
    assert_packages_consistent(pool)

    # eviction of the lowest rate with its descendants, then expiry of the rest
    pool.max_usage = pool.usage - 1
    pool._trim()
    assert_packages_consistent(pool)
    now[0] += 1_000
    pool.expire()
    assert len(pool) == 0 and pool.usage == 0 and pool.bytes == 0
