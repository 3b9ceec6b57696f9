"""Mempool packages on a real chain (LMDB): Core's ancestor/descendant limits at acceptance
(``too-long-mempool-chain``), package totals kept right as entries come and go, and block
templates by ancestor fee rate (CPFP) in near-linear time."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.mempool.entry import outpoint_key
from node.mempool.packages import PackageLimits, ancestors_of, descendants_of
from node.mempool.pool import Mempool
from node.p2p import punish
from node.primitives.errors import MissingInputsError, PolicyError
from node.primitives.tx import OutPoint, Transaction, TxOut
from tests.framework.blocktools import (
    Wallet,
    build_block,
    coinbase_coin,
    extend,
    spend,
)
from tests.framework.chains import open_chain
from tests.framework.nodes import node_network

LIMITS = PackageLimits()
FAN = 80  # confirmed outputs the random pools start from


@pytest.fixture(scope="module")
def fanned(tmp_path_factory, uparams):
    """A chain whose wallet owns FAN confirmed outputs of one transaction (module-wide: the
    random pools below never change the chain)."""
    wallet = Wallet()
    chain = open_chain(tmp_path_factory.mktemp("fan") / "chain", uparams)
    blocks = extend(chain, wallet.addr, 1)
    extend(chain, b"\x60" * 20, 2)
    fan = pay(chain, wallet, [coinbase_coin(blocks[0])], 100_000, parts=FAN)
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
    spend what the pool does not hold.  The template is the 25, parents first."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    txs = chain_of(chain, wallet, coins[0], 7_000, lambda i: 1_000 + 10 * i)
    outcomes = pool.accept_many(txs)
    assert [o.txid for o in outcomes[:25]] == [tx.txid for tx in txs[:25]]
    assert isinstance(outcomes[25], PolicyError) and outcomes[25].code == "too-long-mempool-chain"
    assert "ancestors" in str(outcomes[25])
    assert punish.for_tx(outcomes[25]).score == 0  # a peer relaying it is not punished
    assert all(isinstance(o, MissingInputsError) for o in outcomes[26:])
    with pytest.raises(PolicyError) as exc:
        pool.accept(txs[25])
    assert exc.value.code == "too-long-mempool-chain"
    assert len(pool) == 25
    assert max(e.count_with_ancestors for e in pool.entries.values()) == LIMITS.ancestor_count
    assert pool.get(txs[0].txid).count_with_descendants == LIMITS.descendant_count
    assert_packages_consistent(pool)
    selected, fees = pool.select_for_block(1_000_000)
    assert selected == txs[:25] and fees == sum(1_000 + 10 * i for i in range(25))


async def test_a_node_refuses_the_long_chain_and_mines_the_25(tmp_path):
    """The attack against an in-process node: 7,000 chained transactions submitted at once
    (checked in batches on the chain thread).  25 enter, the 26th is refused with
    too-long-mempool-chain, and the next block carries the 25 and empties the pool."""
    wallet = Wallet()
    async with node_network(tmp_path, 1, "none", persist_mempool=False) as network:
        (node,) = network.nodes
        (block,) = await node.generate(1, wallet.addr)
        await node.generate(node.params.coinbase_maturity, b"\x60" * 20)
        coin = coinbase_coin(block)
        txs = chain_of(node.params, wallet, coin, 7_000, lambda i: 1_000 + 10 * i)
        outcomes = await asyncio.gather(*(node.submit_tx(tx) for tx in txs), return_exceptions=True)
        assert [getattr(o, "txid", None) for o in outcomes[:25]] == [tx.txid for tx in txs[:25]]
        assert getattr(outcomes[25], "code", None) == "too-long-mempool-chain"
        assert len(node.mempool) == 25
        (mined,) = await node.generate(1, wallet.addr)
        assert [tx.txid for tx in mined.txs[1:]] == [tx.txid for tx in txs[:25]]
        assert len(node.mempool) == 0


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


def test_a_reorg_drops_what_its_returning_transactions_push_past_the_limits(setup):
    """A confirmed transaction with 25 unconfirmed descendants in a chain comes back to the
    pool when its block is invalidated: the last of the chain now has 26 ancestors with
    itself, so the repair drops it (and only it)."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    root = pay(chain, wallet, [coins[0]], 1_000)
    result = chain.accept_block(build_block(chain, chain.tip, b"\x67" * 20, [root], fees=1_000))
    pool.update_for_chain(result.connected, result.disconnected)
    line = chain_of(chain, wallet, out(root), 25, lambda i: 1_000)
    for tx in line:
        pool.accept(tx)
    result = chain.invalidate_block(chain.tip.hash)
    pool.update_for_chain(result.connected, result.disconnected)
    assert set(pool.entries) == {tx.txid for tx in [root] + line[:24]}
    assert pool.get(root.txid).count_with_descendants == LIMITS.descendant_count
    assert_packages_consistent(pool)


# --- templates ----------------------------------------------------------------------------


def test_a_child_paying_for_its_parent_beats_a_middling_transaction(setup):
    """CPFP: a cheap parent's package (parent + rich child) at 10.5/byte goes before a lone
    transaction at 7/byte; at 5.5/byte it goes after.  The old by-own-rate order took the
    child (and so its parent) first either way."""
    chain, wallet, coins = setup
    size = pay(chain, wallet, [coins[0]], 1_000).size
    for child_rate, order in ((20, "package first"), (10, "middling first")):
        pool = Mempool(chain)
        parent = pay(chain, wallet, [coins[0]], size)
        child = pay(chain, wallet, [out(parent)], child_rate * size)
        middling = pay(chain, wallet, [coins[1]], 7 * size)
        assert {tx.size for tx in (parent, child, middling)} == {size}
        for tx in (middling, parent, child):
            pool.accept(tx)
        txs, fees = pool.select_for_block(1_000_000)
        expected = (
            [parent, child, middling] if order == "package first" else [middling, parent, child]
        )
        assert txs == expected and fees == (1 + child_rate + 7) * size
        # room for two: the package, or the middling one and the parent alone (its own
        # package once the whole one no longer fits)
        txs, fees = pool.select_for_block(2 * size)
        assert txs == ([parent, child] if order == "package first" else [middling, parent])


def test_taking_a_package_raises_its_other_descendants(setup):
    """Once a parent is in the block, its other child's package is the child alone: at
    12/byte it goes before an 11/byte transaction, though with its parent it was 6.5/byte
    (Core's modified entries)."""
    chain, wallet, coins = setup
    size = pay(chain, wallet, [coins[0]], 1_000).size
    pool = Mempool(chain)
    parent = pay(chain, wallet, [coins[0]], 2 * size, parts=2)
    psize = parent.size
    assert psize < 2 * size
    first = pay(chain, wallet, [out(parent, 0)], 30 * size)
    second = pay(chain, wallet, [out(parent, 1)], 12 * size)
    eleven = pay(chain, wallet, [coins[1]], 11 * size)
    seven = pay(chain, wallet, [coins[2]], 7 * size)
    for tx in (seven, eleven, parent, second, first):
        pool.accept(tx)
    assert (2 * size + 12 * size) / (psize + size) < 7  # with its parent it loses to both
    txs, fees = pool.select_for_block(1_000_000)
    assert txs == [parent, first, second, eleven, seven]
    assert fees == (2 + 30 + 12 + 11 + 7) * size


def test_a_package_that_does_not_fit_is_skipped_for_the_next_best(setup):
    """Within max_bytes: a package too big for the room left is passed over and smaller
    ones fill the room; parents always come first."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    parent = pay(chain, wallet, [coins[0]], 2_000, parts=10)  # big and cheap
    child = pay(chain, wallet, [out(parent)], 80_000)
    high = pay(chain, wallet, [coins[1]], 15_000)
    low = pay(chain, wallet, [coins[2]], 2_000)
    for tx in (parent, child, high, low):
        pool.accept(tx)
    room = high.size + low.size + 10
    assert parent.size + child.size > room and parent.size > 10
    assert (2_000 + 80_000) / (parent.size + child.size) > 15_000 / high.size
    txs, fees = pool.select_for_block(room)
    assert txs == [high, low] and fees == 17_000
    assert pool.select_for_block(high.size - 1) == ([], 0)
    assert len(pool) == 4  # selecting removes nothing


def test_selection_is_by_rate_even_where_a_package_pays_more_in_all(setup):
    """As Core's: a lone transaction at a higher rate goes first even when the package it
    leaves no room for would have paid more in all (the old by-own-rate order took the
    rich child's package first here).  Greedy by rate is not a knapsack optimum."""
    chain, wallet, coins = setup
    size = pay(chain, wallet, [coins[0]], 1_000).size
    pool = Mempool(chain)
    parent = pay(chain, wallet, [coins[0]], size)
    child = pay(chain, wallet, [out(parent)], 10 * size)  # package: 5.5/byte, 11 × size
    lone = pay(chain, wallet, [coins[1]], 6 * size)  # 6/byte
    for tx in (parent, child, lone):
        pool.accept(tx)
    txs, fees = pool.select_for_block(2 * size)
    assert txs == [lone, parent] and fees == 7 * size
    assert old_select(pool, 2 * size)[1] == 11 * size


def old_select(pool, max_bytes):
    """The previous selection (each entry by its own fee rate, its missing ancestors first),
    for comparison."""
    chosen, used, fees = set(), 0, 0
    for entry in sorted(pool.entries.values(), key=lambda e: e.fee_rate, reverse=True):
        if entry.txid in chosen:
            continue
        package = [entry.txid] + sorted(ancestors_of(pool.entries, entry.txid) - chosen)
        size = sum(pool.entries[t].size for t in package)
        if used + size > max_bytes:
            continue
        chosen.update(package)
        used += size
        fees += sum(pool.entries[t].fee for t in package)
    return chosen, fees


def reference_select(pool, max_bytes):
    """The rule itself, slowly: again and again, of the packages (a tx and its ancestors not
    yet chosen) that fit the room left, take the best by fee rate (ties: lowest txid)."""
    entries, chosen, order, used = pool.entries, set(), [], 0
    while True:
        best = None
        for txid in entries.keys() - chosen:
            package = (ancestors_of(entries, txid) - chosen) | {txid}
            size = sum(entries[t].size for t in package)
            if used + size > max_bytes:
                continue
            key = (-sum(entries[t].fee for t in package) / size, txid)
            if best is None or key < best[0]:
                best = (key, package)
        if best is None:
            return order
        package = sorted(best[1], key=lambda t: (entries[t].ancestors_count, t))
        order.extend(package)
        chosen.update(package)
        used += sum(entries[t].size for t in package)


@st.composite
def pools(draw):
    """Up to 16 transactions: each spends up to 2 unspent outputs of earlier ones, or a
    fresh confirmed coin, to 1-3 outputs, at a fee of 1-60 per byte (about)."""
    shapes = []
    for i in range(draw(st.integers(1, 16))):
        parents = draw(st.lists(st.integers(0, i - 1), max_size=2, unique=True)) if i else []
        shapes.append((parents, draw(st.integers(1, 3)), draw(st.integers(1, 60))))
    return shapes, draw(st.floats(0, 1.1))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools())
def test_random_pools_select_by_ancestor_fee_rate(fanned, drawn):
    """Random pools (hypothesis): the template is exactly the slow reference's choice;
    parents come before children, it fits ``max_bytes``, its fees are summed; no package
    left out would still fit; and the cached package totals are right."""
    chain, wallet, fan = fanned
    shapes, share = drawn
    pool = Mempool(chain)
    txs: list[Transaction] = []
    unspent: list[list[int]] = []
    fresh = iter(fan)
    for parents, parts, per_byte in shapes:
        inputs = []
        for p in parents:
            if unspent[p]:
                inputs.append(out(txs[p], unspent[p].pop(0)))
        if not inputs:
            inputs = [next(fresh)]
        tx = pay(chain, wallet, inputs, per_byte * 400, parts=parts)
        pool.accept(tx)
        txs.append(tx)
        unspent.append(list(range(parts)))
    assert_packages_consistent(pool)
    max_bytes = int(pool.bytes * share)
    selected, fees = pool.select_for_block(max_bytes)
    ids = [tx.txid for tx in selected]
    assert ids == reference_select(pool, max_bytes)
    position = {txid: n for n, txid in enumerate(ids)}
    for n, txid in enumerate(ids):
        assert all(position[p] < n for p in pool.entries[txid].parents)  # parents chosen, first
    used = sum(tx.size for tx in selected)
    assert used <= max_bytes
    assert fees == sum(pool.entries[t].fee for t in ids)
    for txid in pool.entries.keys() - set(ids):
        package = (ancestors_of(pool.entries, txid) - set(ids)) | {txid}
        assert used + sum(pool.entries[t].size for t in package) > max_bytes
    if max_bytes >= pool.bytes:
        assert fees == sum(e.fee for e in pool.entries.values()) >= old_select(pool, max_bytes)[1]
