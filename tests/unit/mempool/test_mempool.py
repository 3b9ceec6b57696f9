"""The mempool against a real chain state: acceptance, conflicts, replace-by-fee,
templates, following blocks, size cap and expiry."""

from __future__ import annotations

import os

import pytest

from node.mempool.entry import decoded_usage, outpoint_key
from node.mempool.packages import PackageLimits
from node.mempool.pool import Mempool
from node.primitives.errors import (
    MempoolConflictError,
    MissingInputsError,
    PolicyError,
    TxValidationError,
)
from node.primitives.tx import OutPoint, Transaction, TxIn, TxOut, make_coinbase
from tests.framework.blocktools import (
    Wallet,
    build_block,
    coinbase_coin,
    extend,
    spend,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pay(chain, wallet, inputs, fee, to=None, parts=1):
    """Spend ``inputs`` (all the wallet's) to ``parts`` outputs, paying ``fee``."""
    total = sum(out.amount for _, out in inputs) - fee
    to = to or wallet.addr
    amounts = [total // parts] * (parts - 1) + [total - total // parts * (parts - 1)]
    return spend(chain, inputs, wallet.key, [TxOut(a, to) for a in amounts])


def key(outpoint):
    return outpoint_key(outpoint.txid, outpoint.index)


def out(tx, n=0):
    return OutPoint(tx.txid, n), tx.outputs[n]


def assert_pool_consistent(pool):
    """spenders, bytes, usage and parent/child links agree with the entries."""
    spenders = {
        outpoint_key(i.prev_txid, i.prev_index): txid
        for txid, e in pool.entries.items()
        for i in e.tx.inputs
    }
    assert pool.spenders == spenders
    assert pool.bytes == sum(e.size for e in pool.entries.values())
    decoded = pool._decoded  # the newest entries, kept decoded too
    assert decoded.keys() <= pool.entries.keys()
    assert all(tx.raw == pool.entries[txid].raw for txid, tx in decoded.items())
    assert pool.usage == sum(e.usage() for e in pool.entries.values())
    assert pool.decoded_bytes == sum(decoded_usage(tx) for tx in decoded.values())
    assert pool.decoded_bytes <= pool.decoded_max_bytes
    for txid, e in pool.entries.items():
        assert e.txid == txid == e.tx.txid
        assert (e.parent_set is None or e.parent_set) and (e.child_set is None or e.child_set)
        assert e.parents == {i.prev_txid for i in e.tx.inputs if i.prev_txid in pool.entries}
        for parent in e.parents:
            assert txid in pool.entries[parent].children
        for child in e.children:
            assert txid in pool.entries[child].parents


def test_accepts_valid_spend(setup):
    """A valid spend of a mature coin enters with its fee
    and marks the coin as spent in the pool."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    tx = pay(chain, wallet, [coins[0]], 1500, parts=2)
    entry = pool.accept(tx)
    assert entry.fee == 1500 and entry.tx == tx and entry.parents == set()
    assert entry.fee_rate == 1500 / tx.size
    assert tx.txid in pool and len(pool) == 1 and pool.get(tx.txid) is entry
    assert pool.spenders == {key(coins[0][0]): tx.txid}
    assert pool.spender(coins[0][0]) == tx.txid and entry.spent == [
        chain.reader.get_coin(coins[0][0])
    ]
    assert pool.bytes == tx.size
    assert chain.reader.get_coin(coins[0][0]) is not None  # the chain is untouched
    assert_pool_consistent(pool)


@pytest.mark.parametrize("second_fee", [1000, 999, 200])
def test_double_spend_without_higher_fee_rate_conflicts(setup, second_fee):
    """A second spend of the same coin with an equal or lower fee rate is refused."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    first = pay(chain, wallet, [coins[0]], 1000)
    pool.accept(first)
    second = pay(chain, wallet, [coins[0]], second_fee, to=b"\x61" * 20)
    assert second.size == first.size
    with pytest.raises(MempoolConflictError) as exc:
        pool.accept(second)
    assert exc.value.code == "txn-mempool-conflict"
    assert set(pool.entries) == {first.txid} and pool.spender(coins[0][0]) == first.txid
    assert_pool_consistent(pool)


def test_replace_by_fee_replaces_and_evicts_descendants(setup):
    """A conflicting tx with a higher fee rate and fee replaces the original and its descendants."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    original = pay(chain, wallet, [coins[0]], 1000)
    child = pay(chain, wallet, [out(original)], 1000)
    grandchild = pay(chain, wallet, [out(child)], 1000)
    other = pay(chain, wallet, [coins[1]], 1000)
    for tx in (original, child, grandchild, other):
        pool.accept(tx)
    replacement = pay(chain, wallet, [coins[0]], 10_000, to=b"\x62" * 20)
    pool.accept(replacement)
    assert set(pool.entries) == {replacement.txid, other.txid}
    assert pool.spender(coins[0][0]) == replacement.txid
    assert pool.spender(OutPoint(original.txid, 0)) is None
    assert_pool_consistent(pool)
    # the evicted child can no longer enter: its parent is gone
    with pytest.raises(MissingInputsError):
        pool.accept(child)


def test_replacement_must_pay_for_what_it_evicts(setup):
    """A higher fee rate is not enough if the fee does not cover the replaced package."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    original = pay(chain, wallet, [coins[0]], 1000)
    rich_child = pay(chain, wallet, [out(original)], 50_000)
    pool.accept(original)
    pool.accept(rich_child)
    cheap = pay(chain, wallet, [coins[0]], 5000, to=b"\x63" * 20)
    assert cheap.size == original.size  # so 5x the fee rate of the direct conflict
    with pytest.raises(MempoolConflictError):
        pool.accept(cheap)
    assert set(pool.entries) == {original.txid, rich_child.txid}
    # a replacement that spends an output of the tx it replaces is refused too
    weird = pay(chain, wallet, [coins[0], out(original)], 200_000)
    with pytest.raises(MempoolConflictError):
        pool.accept(weird)
    assert set(pool.entries) == {original.txid, rich_child.txid}
    assert_pool_consistent(pool)
    enough = pay(chain, wallet, [coins[0]], 51_000 + 2 * original.size, to=b"\x63" * 20)
    pool.accept(enough)
    assert set(pool.entries) == {enough.txid}


def test_min_fee_not_met(setup):
    """A fee below MIN_FEE_RATE per byte is refused; exactly one per byte enters."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    free = pay(chain, wallet, [coins[0]], 0)
    with pytest.raises(PolicyError) as exc:
        pool.accept(free)
    assert exc.value.code == "min-fee-not-met"
    short = pay(chain, wallet, [coins[0]], free.size - 1)
    assert short.size == free.size
    with pytest.raises(PolicyError) as exc:
        pool.accept(short)
    assert exc.value.code == "min-fee-not-met"
    assert len(pool) == 0 and pool.spenders == {}
    exact = pay(chain, wallet, [coins[0]], free.size)
    assert pool.accept(exact).fee == exact.size
    assert Mempool(chain, min_fee_rate=0).accept(free).fee == 0


def test_already_in_mempool(setup):
    """Submitting the same transaction twice gives txn-already-in-mempool."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    tx = pay(chain, wallet, [coins[0]], 1000)
    pool.accept(tx)
    with pytest.raises(PolicyError) as exc:
        pool.accept(tx)
    assert exc.value.code == "txn-already-in-mempool"
    assert len(pool) == 1 and pool.bytes == tx.size


def test_missing_or_spent_inputs(setup):
    """Spending an unknown outpoint or a coin spent on chain
    gives bad-txns-inputs-missingorspent."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    ghost = spend(
        chain,
        [(OutPoint(os.urandom(32), 0), TxOut(10**6, wallet.addr))],
        wallet.key,
        [TxOut(10**5, wallet.addr)],
    )
    with pytest.raises(MissingInputsError) as exc:
        pool.accept(ghost)
    assert exc.value.code == "bad-txns-inputs-missingorspent"
    mined = pay(chain, wallet, [coins[0]], 1000)
    chain.accept_block(build_block(chain, chain.tip, b"\x64" * 20, [mined], fees=1000))
    again = pay(chain, wallet, [coins[0]], 2000)
    with pytest.raises(MissingInputsError):
        pool.accept(again)
    bad_index = pay(chain, wallet, [(OutPoint(mined.txid, 5), mined.outputs[0])], 1000)
    with pytest.raises(MissingInputsError):
        pool.accept(bad_index)
    assert len(pool) == 0


def test_confirmed_tx_is_already_known(setup):
    """A transaction already confirmed on the active chain gives txn-already-known."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    tx = pay(chain, wallet, [coins[0]], 1000, parts=2)
    chain.accept_block(build_block(chain, chain.tip, b"\x65" * 20, [tx], fees=1000))
    with pytest.raises(PolicyError) as exc:
        pool.accept(tx)
    assert exc.value.code == "txn-already-known"


def test_consensus_failures_are_refused(setup):
    """Coinbases, immature coinbase spends, bad signatures and non-final txs never enter."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    with pytest.raises(TxValidationError) as exc:
        pool.accept(make_coinbase(chain.height + 1, [TxOut(1000, wallet.addr)]))
    assert exc.value.code == "coinbase"
    (fresh,) = extend(chain, wallet.addr, 1)
    with pytest.raises(TxValidationError) as exc:
        pool.accept(pay(chain, wallet, [coinbase_coin(fresh)], 1000))
    assert exc.value.code == "bad-txns-premature-spend-of-coinbase"
    tx = pay(chain, wallet, [coins[0]], 1000)
    txin = tx.inputs[0]
    forged = Transaction.create(
        1, [TxIn(txin.prev_txid, txin.prev_index, bytes(64), txin.pubkey)], tx.outputs
    )
    with pytest.raises(TxValidationError) as exc:
        pool.accept(forged)
    assert exc.value.code == "bad-txns-signature"
    thief = Wallet()
    stolen = spend(chain, [coins[0]], thief.key, [TxOut(10**6, thief.addr)])
    with pytest.raises(TxValidationError) as exc:
        pool.accept(stolen)
    assert exc.value.code == "bad-txns-pubkey-mismatch"
    late = spend(
        chain,
        [coins[0]],
        wallet.key,
        [TxOut(coins[0][1].amount - 1000, wallet.addr)],
        locktime=chain.height + 1,
    )
    with pytest.raises(TxValidationError) as exc:
        pool.accept(late)
    assert exc.value.code == "bad-txns-nonfinal"
    assert len(pool) == 0 and pool.spenders == {}
    ok = spend(
        chain,
        [coins[0]],
        wallet.key,
        [TxOut(coins[0][1].amount - 1000, wallet.addr)],
        locktime=chain.height,
    )
    pool.accept(ok)


def test_unconfirmed_chain_parent_child(setup):
    """A chain parent -> child -> grandchild of unconfirmed txs is accepted with links both ways."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    parent = pay(chain, wallet, [coins[0]], 1000, parts=2)
    child = pay(chain, wallet, [out(parent, 1)], 2000)
    grandchild = pay(chain, wallet, [out(child), out(parent, 0)], 3000)
    for tx in (parent, child, grandchild):
        pool.accept(tx)
    assert pool.get(child.txid).parents == {parent.txid}
    assert pool.get(grandchild.txid).parents == {parent.txid, child.txid}
    assert pool.get(parent.txid).children == {child.txid, grandchild.txid}
    assert [pool.get(t.txid).fee for t in (parent, child, grandchild)] == [1000, 2000, 3000]
    assert_pool_consistent(pool)
    txs, fees = pool.select_for_block(1_000_000)
    assert txs == [parent, child, grandchild] and fees == 6000


def test_template_orders_by_fee_rate_parents_first_within_size(setup):
    """select_for_block takes packages by fee rate,
    parents before children, within the byte limit."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    low_parent = pay(chain, wallet, [coins[0]], 400)
    rich_child = pay(chain, wallet, [out(low_parent)], 40_000)
    high = pay(chain, wallet, [coins[1]], 20_000)
    mid = pay(chain, wallet, [coins[2]], 5_000)
    low = pay(chain, wallet, [coins[3]], 1_000)
    for tx in (low, mid, high, low_parent, rich_child):
        pool.accept(tx)
    txs, fees = pool.select_for_block(1_000_000)
    assert txs == [low_parent, rich_child, high, mid, low]
    assert fees == 400 + 40_000 + 20_000 + 5_000 + 1_000
    sizes = {t.txid: t.size for t in txs}
    # room for one tx only: the child's package does not fit, the best single tx does
    one = max(sizes.values())
    txs, fees = pool.select_for_block(one + 1)
    assert txs == [high] and fees == 20_000
    # room for three: the package, then the best single
    three = low_parent.size + rich_child.size + high.size
    txs, fees = pool.select_for_block(three)
    assert txs == [low_parent, rich_child, high] and fees == 60_400
    assert sum(t.size for t in txs) <= three
    assert pool.select_for_block(10) == ([], 0)
    assert len(pool) == 5  # selecting removes nothing


def test_block_connected_removes_mined_and_conflicting(setup):
    """A connected block removes its txs and pool txs that conflict with it (with descendants)."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    mined = pay(chain, wallet, [coins[0]], 1000)
    mined_child = pay(chain, wallet, [out(mined)], 1000)
    loser = pay(chain, wallet, [coins[1]], 1000)
    loser_child = pay(chain, wallet, [out(loser)], 1000)
    bystander = pay(chain, wallet, [coins[2]], 1000)
    for tx in (mined, mined_child, loser, loser_child, bystander):
        pool.accept(tx)
    winner = pay(chain, wallet, [coins[1]], 3000, to=b"\x66" * 20)  # not in the pool
    result = chain.accept_block(
        build_block(chain, chain.tip, b"\x67" * 20, [mined, winner], fees=4000)
    )
    pool.update_for_chain(result.connected, result.disconnected)
    assert set(pool.entries) == {mined_child.txid, bystander.txid}
    assert pool.get(mined_child.txid).parents == set()  # its parent is confirmed now
    assert_pool_consistent(pool)
    txs, _ = pool.select_for_block(1_000_000)
    assert {t.txid for t in txs} == {mined_child.txid, bystander.txid}
    # the template built from the pool is valid on the new tip
    block = build_block(chain, chain.tip, b"\x67" * 20, txs, fees=2000)
    assert chain.accept_block(block).status == "connected"


def test_size_cap_evicts_lowest_fee_rate(setup):
    """Over max_usage the lowest fee rate (with descendants) goes;
    a tx too cheap to stay is refused."""
    chain, wallet, coins = setup
    probe = Mempool(chain).accept(pay(chain, wallet, [coins[0]], 1000), test_only=True).usage()
    # three entries and two link sets fit, four do not
    pool = Mempool(chain, max_usage=3 * probe + 500 + probe // 4)
    low = pay(chain, wallet, [coins[0]], 1_000)
    low_child = pay(chain, wallet, [out(low)], 90_000)
    mid = pay(chain, wallet, [coins[1]], 5_000)
    for tx in (low, low_child, mid):
        pool.accept(tx)
    high = pay(chain, wallet, [coins[2]], 50_000)
    pool.accept(high)
    # low has the lowest rate: it goes, and its (richer) child with it
    assert set(pool.entries) == {mid.txid, high.txid}
    assert pool.usage <= pool.max_usage
    assert_pool_consistent(pool)
    pool.accept(pay(chain, wallet, [coins[3]], 20_000))
    cheapest = pay(chain, wallet, [coins[4]], 2_000)
    with pytest.raises(PolicyError) as exc:
        pool.accept(cheapest)
    assert exc.value.code == "mempool-full"
    assert cheapest.txid not in pool and pool.usage <= pool.max_usage
    assert mid.txid in pool
    assert_pool_consistent(pool)


def test_expiry_drops_old_entries_with_descendants(setup):
    """expire() drops entries older than the expiry, their descendants too, and keeps newer ones."""
    chain, wallet, coins = setup
    clock = Clock(0.0)
    pool = Mempool(chain, expiry=100, clock=clock)
    old = pay(chain, wallet, [coins[0]], 1000)
    pool.accept(old)
    clock.now = 60.0
    old_child = pay(chain, wallet, [out(old)], 1000)
    pool.accept(old_child)
    clock.now = 90.0
    recent = pay(chain, wallet, [coins[1]], 1000)
    pool.accept(recent)
    assert pool.get(old.txid).time == 0.0 and pool.get(recent.txid).time == 90.0
    clock.now = 100.0
    assert pool.expire() == []
    clock.now = 130.0
    removed = pool.expire()
    assert {t.txid for t in removed} == {old.txid, old_child.txid}
    assert set(pool.entries) == {recent.txid}
    assert_pool_consistent(pool)
    clock.now = 191.0
    assert [t.txid for t in pool.expire()] == [recent.txid] and len(pool) == 0


def test_reorg_keeps_entry_times(setup):
    """Re-checking the pool after a reorg keeps each entry's arrival time,
    so expiry still applies."""
    chain, wallet, coins = setup
    clock = Clock(0.0)
    pool = Mempool(chain, expiry=150, clock=clock)
    waiting = pay(chain, wallet, [coins[0]], 1000)
    pool.accept(waiting)
    mined = pay(chain, wallet, [coins[1]], 1000)
    result = chain.accept_block(build_block(chain, chain.tip, b"\x68" * 20, [mined], fees=1000))
    pool.update_for_chain(result.connected, result.disconnected)
    clock.now = 100.0
    result = chain.invalidate_block(chain.tip.hash)  # a reorg: the block goes away
    pool.update_for_chain(result.connected, result.disconnected)
    assert set(pool.entries) == {waiting.txid, mined.txid}
    assert pool.get(waiting.txid).time == 0.0
    clock.now = 200.0
    assert [t.txid for t in pool.expire()] == [waiting.txid]
    assert set(pool.entries) == {mined.txid}


def test_test_only_does_not_add(setup):
    """accept(test_only=True) validates and reports the fee but leaves the pool unchanged."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    first = pay(chain, wallet, [coins[0]], 1000)
    pool.accept(first)
    tx = pay(chain, wallet, [coins[1]], 1234)
    entry = pool.accept(tx, test_only=True)
    assert entry.fee == 1234 and tx.txid not in pool
    assert set(pool.entries) == {first.txid} and pool.bytes == first.size
    replacement = pay(chain, wallet, [coins[0]], 50_000)
    assert pool.accept(replacement, test_only=True).fee == 50_000
    assert set(pool.entries) == {first.txid}  # nothing replaced
    with pytest.raises(PolicyError):
        pool.accept(pay(chain, wallet, [coins[1]], 0), test_only=True)
    assert_pool_consistent(pool)
    pool.accept(tx)
    assert tx.txid in pool


def test_fee_rate_histogram(setup):
    """The histogram counts entries and bytes per fee-rate bucket."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    a = pay(chain, wallet, [coins[0]], 300)  # ~1.7 per byte
    b = pay(chain, wallet, [coins[1]], 30_000)  # ~170 per byte
    pool.accept(a)
    pool.accept(b)
    buckets = pool.fee_rate_histogram()
    assert sum(x["count"] for x in buckets) == 2
    assert sum(x["bytes"] for x in buckets) == a.size + b.size
    by_from = {x["from"]: x for x in buckets}
    assert by_from[1]["count"] == 1 and by_from[100]["count"] == 1


def test_accept_many_verifies_a_batch_and_drops_children_of_bad_signatures(setup):
    """accept_many: valid txs (a parent and its child) enter; a bad signature is refused
    with its code and its child in the same batch goes with it; a conflict is refused."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    parent = pay(chain, wallet, [coins[0]], 1000, parts=2)
    child = pay(chain, wallet, [out(parent, 0)], 1000)
    good = pay(chain, wallet, [coins[1]], 1000)
    bad = pay(chain, wallet, [coins[2]], 1000)
    body = bad.to_list()
    body[1][0][2] = bytes(64)
    bad = Transaction.from_list(body)
    bad_child = pay(chain, wallet, [out(bad, 0)], 1000)
    double = pay(chain, wallet, [coins[1]], 1000, to=b"\x42" * 20)
    outcomes = pool.accept_many([parent, child, good, bad, bad_child, double])
    assert [getattr(o, "tx", None) for o in outcomes[:3]] == [parent, child, good]
    assert outcomes[3].code == "bad-txns-signature"
    assert isinstance(outcomes[4], MissingInputsError)
    assert outcomes[5].code == "txn-mempool-conflict"
    assert set(pool.entries) == {parent.txid, child.txid, good.txid}
    assert_pool_consistent(pool)


@pytest.mark.parametrize("bad_at", [3, 150, 299])
def test_accept_many_large_batch_finds_a_bad_signature_among_started_jobs(setup, bad_at):
    """A batch of 300 (several JOB_CHUNKs, verified on the pool while the rest is
    prepared): the one bad signature is refused with its code, its descendants go
    with it, and every other transaction is accepted.  One chain of 300 is simplest,
    so the pool's package limits are raised past it."""
    from node.consensus.sigcheck import JOB_CHUNK

    chain, wallet, coins = setup
    pool = Mempool(chain, limits=PackageLimits(300, 10**6, 300, 10**6))
    txs = [pay(chain, wallet, [coins[0]], 1000)]
    for _ in range(299):
        txs.append(pay(chain, wallet, [out(txs[-1])], 1000))
    assert len(txs) > 3 * JOB_CHUNK
    body = txs[bad_at].to_list()
    body[1][0][2] = bytes(64)
    txs[bad_at] = Transaction.from_list(body)
    outcomes = pool.accept_many(txs)
    assert [getattr(o, "txid", None) for o in outcomes[:bad_at]] == [tx.txid for tx in txs[:bad_at]]
    assert outcomes[bad_at].code == "bad-txns-signature"
    assert all(isinstance(o, MissingInputsError) for o in outcomes[bad_at + 1 :])
    assert set(pool.entries) == {tx.txid for tx in txs[:bad_at]}
    assert_pool_consistent(pool)


def test_usage_estimate_matches_the_heap(setup):
    """The cap's measure (``usage``) tracks the heap the pool really holds (tracemalloc),
    for lone transactions and for parent/child chains, within a margin on the safe side,
    with none, all, or some of them kept decoded too (``decoded_bytes``, bounded apart)."""
    import gc
    import tracemalloc

    chain, wallet, coins = setup
    n = 300
    fan = pay(chain, wallet, coins[:1], 100_000, parts=n)
    assert (
        chain.accept_block(build_block(chain, chain.tip, b"\x61" * 20, [fan])).status == "connected"
    )
    lone = [pay(chain, wallet, [out(fan, i)], 1_000, parts=2) for i in range(n)]
    kids = [pay(chain, wallet, [out(p)], 1_000, parts=2) for p in lone]
    for txs, decoded_max in ((lone, 0), (lone + kids, 0), (lone, 10**9), (lone + kids, 200_000)):
        raws = [tx.raw for tx in txs]
        pool = Mempool(chain, decoded_max_bytes=decoded_max)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            # fresh bytes, as off the wire
            decoded = [Transaction.from_bytes(bytes(bytearray(raw))) for raw in raws]
            outcomes = pool.accept_many(decoded)
            del decoded, outcomes
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        assert len(pool) == len(txs)
        assert_pool_consistent(pool)
        # the pool's cap, and beside it the bounded decodings of the newest entries
        estimate = pool.usage + pool.decoded_bytes
        assert held <= estimate <= 1.3 * held, (held, pool.usage, pool.decoded_bytes)
        assert pool.usage < 6 * pool.bytes  # compact: a few times the encoded size (was 11)
        assert 0 < pool.decoded_bytes <= decoded_max or not decoded_max


def test_touching_finds_payments_and_spends_of_an_address(setup):
    """``touching`` returns the pool transactions paying or spending from an address, newest
    first, with the coins they spend; others are left out."""
    chain, wallet, coins = setup
    clock = Clock()
    pool = Mempool(chain, clock=clock)
    other = b"\x42" * 20
    paying = pay(chain, wallet, [coins[0]], 1_000, to=other)
    pool.accept(paying)
    clock.now += 1
    unrelated = pay(chain, wallet, [coins[1]], 1_000, to=b"\x43" * 20)
    pool.accept(unrelated)
    assert [tx for _, tx, _ in pool.touching(other)] == [paying]
    found = pool.touching(wallet.addr)  # the wallet spent in both
    assert [tx for _, tx, _ in found] == [unrelated, paying]
    assert found[1][2] == [chain.reader.get_coin(coins[0][0])]
    assert pool.touching(b"\x44" * 20) == []


def test_eviction_raises_a_decaying_fee_floor(setup):
    """After an eviction a newcomer must pay more than the evicted rate
    (mempool-min-fee-not-met); the floor halves with time and then vanishes."""
    from node.mempool.pool import ROLLING_FEE_HALFLIFE

    chain, wallet, coins = setup
    clock = Clock()
    probe = Mempool(chain).accept(pay(chain, wallet, [coins[0]], 1000), test_only=True).usage()
    pool = Mempool(chain, max_usage=2 * probe + probe // 2, clock=clock)
    low = pay(chain, wallet, [coins[0]], 2_000)
    pool.accept(low)
    pool.accept(pay(chain, wallet, [coins[1]], 40_000))
    pool.accept(pay(chain, wallet, [coins[2]], 50_000))  # evicts low
    assert low.txid not in pool
    floor = pool.current_min_fee_rate()
    assert floor == pytest.approx(2_000 / low.size + 1)
    cheap = pay(chain, wallet, [coins[3]], int(floor * low.size) - 50)
    with pytest.raises(PolicyError) as exc:
        pool.accept(cheap)
    assert exc.value.code == "mempool-min-fee-not-met"
    # the pool is full: full half-life
    clock.now += ROLLING_FEE_HALFLIFE
    assert pool.current_min_fee_rate() == pytest.approx(floor / 2)
    clock.now += 10 * ROLLING_FEE_HALFLIFE
    assert pool.current_min_fee_rate() == pool.min_fee_rate  # decayed away
    assert pool.rolling_fee_rate == 0.0


def test_accept_many_judges_a_conflict_again_after_a_forged_spend_fails(setup):
    """A forged transaction (zero signature, higher fee rate) ahead of a valid one that
    spends the same coin in one batch: the forgery is refused for its signature and the
    valid one is accepted, not refused as a conflict with it."""
    chain, wallet, coins = setup
    pool = Mempool(chain)
    forged = pay(chain, wallet, [coins[0]], 50_000, to=b"\x66" * 20)
    body = forged.to_list()
    body[1][0][2] = bytes(64)
    forged = Transaction.from_list(body)
    real = pay(chain, wallet, [coins[0]], 1000)
    other = pay(chain, wallet, [coins[1]], 1000)
    outcomes = pool.accept_many([forged, real, other])
    assert outcomes[0].code == "bad-txns-signature"
    assert getattr(outcomes[1], "txid", None) == real.txid
    assert getattr(outcomes[2], "txid", None) == other.txid
    assert set(pool.entries) == {real.txid, other.txid}
    assert_pool_consistent(pool)
