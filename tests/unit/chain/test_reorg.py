"""Reorganisations, orphans and invalid branches on real LMDB chain states.

Branches are mined independently in separate ChainStates from the same
genesis, then their blocks are fed, in various orders, to a third one.
Work is steered with timestamps (``make_params()``): blocks 1 s apart double
their work every block, blocks 6000 s apart fall to the easiest target.
Each scenario with branches draws them in its docstring, the parent on the left.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.chain.index import BlockStatus, chain_tips
from node.chain.orphans import MAX_ORPHANS
from node.mempool.pool import Mempool
from node.mining.miner import create_block_template, solve_block
from node.primitives.errors import BlockValidationError, ValidationError
from node.primitives.tx import OutPoint, Transaction, TxIn, TxOut
from tests.framework.blocktools import (
    Wallet,
    build_block,
    coinbase_coin,
    extend,
    spend,
)
from tests.framework.chains import ChainSet, opened_chain
from tests.framework.replay import assert_matches_replay, stats_tuple, utxo_set

HYPO = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def feed(chain, blocks):
    """Accept every block, ignoring rejections; return the rejection codes (orphans' included)."""
    codes = []
    for block in blocks:
        try:
            result = chain.accept_block(block)
        except ValidationError as exc:
            codes.append(exc.code)
        else:
            codes.extend(code for _, code in result.invalid)
    return codes


def snapshot(chain):
    return chain.tip.hash, chain.height, stats_tuple(chain), utxo_set(chain)


def spending_branch(path: Path, params, wallet, steps, prefix=()):
    """Mine one block per entry of ``steps`` (its time step) on ``prefix``.

    From the 3rd block of the branch on, each block spends the coinbase of the block two
    below it to the wallet and a stranger.  Returns (blocks, snapshot of the builder).
    """
    with opened_chain(path, params) as chain:
        feed(chain, prefix)
        blocks = []
        for step in steps:
            txs, fees = [], 0
            if len(blocks) >= 2:
                op, out = coinbase_coin(blocks[-2])
                txs = [
                    spend(
                        chain,
                        [(op, out)],
                        wallet.key,
                        [
                            TxOut(out.amount // 2, wallet.addr),
                            TxOut(out.amount // 2 - 700, b"\x33" * 20),
                        ],
                    )
                ]
                fees = 700
            block = build_block(chain, chain.tip, wallet.addr, txs, time_step=step, fees=fees)
            chain.accept_block(block)
            assert chain.tip.hash == block.hash
            blocks.append(block)
        return blocks, snapshot(chain)


@pytest.fixture(scope="module")
def heavy_and_long(tmp_path_factory, uparams):
    r"""Branch A: 3 blocks 1 s apart (more work); branch B: 5 blocks 6000 s apart (less work).

    genesis -> a1 -> a2 -> a3                  (1 s apart: more work)
           \-> b1 -> b2 -> b3 -> b4 -> b5      (6000 s apart: longer, less work)
    """
    base = tmp_path_factory.mktemp("branches")
    wallet = Wallet()
    a, a_snap = spending_branch(base / "a", uparams, wallet, [1, 1, 1])
    b, b_snap = spending_branch(base / "b", uparams, wallet, [6000] * 5)
    return a, a_snap, b, b_snap


def test_branch_work_is_as_designed(tmp_path, uparams, heavy_and_long):
    """The short 1-second branch has more work than the longer 6000-second branch."""
    a, _, b, _ = heavy_and_long
    with opened_chain(tmp_path / "c", uparams) as chain:
        feed(chain, a + b)
        a_work = chain.index[a[-1].hash].chain_work
        b_work = chain.index[b[-1].hash].chain_work
        assert len(b) > len(a) and a_work > b_work
        assert chain.index[a[-1].hash].header.bits != chain.index[a[0].hash].header.bits
        assert chain.index[b[-1].hash].header.bits == chain.next_bits(chain.index[b[-2].hash])


@pytest.mark.parametrize("order", ["a-first", "b-first", "interleaved", "reversed"])
def test_more_work_wins_in_fixed_orders(tmp_path, uparams, heavy_and_long, order):
    """A shorter branch with more work beats a longer one with less, whatever the order."""
    a, a_snap, b, _ = heavy_and_long
    blocks = {
        "a-first": a + b,
        "b-first": b + a,
        "interleaved": [x for pair in zip(b[:3], a, strict=True) for x in pair] + b[3:],
        "reversed": list(reversed(b)) + list(reversed(a)),
    }[order]
    with opened_chain(tmp_path / "c", uparams) as chain:
        assert feed(chain, blocks) == []
        assert snapshot(chain) == a_snap
        assert len(chain.orphans) == 0
        assert all(chain.index[x.hash].status in (BlockStatus.DATA, BlockStatus.VALID) for x in b)
        if order == "b-first":
            # B was fully active before A replaced it
            assert all(chain.index[x.hash].status == BlockStatus.VALID for x in b)
        assert_matches_replay(chain, tmp_path / "replay")


@HYPO
@given(order=st.permutations(range(8)))
def test_more_work_wins_any_arrival_order(uparams, heavy_and_long, order):
    """Any permutation of both branches' blocks (orphans included)
    ends on the branch with more work."""
    a, a_snap, b, _ = heavy_and_long
    blocks = [(a + b)[i] for i in order]
    with tempfile.TemporaryDirectory() as tmp, opened_chain(Path(tmp) / "c", uparams) as chain:
        assert feed(chain, blocks) == []
        assert snapshot(chain) == a_snap
        assert len(chain.orphans) == 0
        assert all(x.hash in chain.index for x in a + b)
        assert chain.tip.chain_work == max(e.chain_work for e in chain.index.values())


def test_longer_branch_with_less_work_loses(tmp_path, uparams, heavy_and_long):
    r"""The 5-block branch does not replace the 3-block branch with more work,
    and vice versa it is replaced.

    genesis -> a1 -> a2 -> a3                  active, whichever branch came first
           \-> b1 -> b2 -> b3 -> b4 -> b5      stored (fed first: active until a3)
    """
    a, a_snap, b, b_snap = heavy_and_long
    with opened_chain(tmp_path / "c", uparams) as chain:
        feed(chain, a)
        for block in b:
            result = chain.accept_block(block)
            assert result.status == "stored" and result.connected == []
        assert snapshot(chain) == a_snap
        assert chain.height == 3
    with opened_chain(tmp_path / "d", uparams) as chain:
        feed(chain, b)
        assert snapshot(chain) == b_snap
        results = [chain.accept_block(block) for block in a]
        assert [r.status for r in results] == ["stored", "stored", "connected"]
        assert [x.hash for x in results[-1].disconnected] == [x.hash for x in reversed(b)]
        assert [x.hash for x in results[-1].connected] == [x.hash for x in a]
        assert snapshot(chain) == a_snap
        assert_matches_replay(chain, tmp_path / "replay")


@pytest.fixture(scope="module")
def equal_branches(tmp_path_factory, uparams):
    base = tmp_path_factory.mktemp("equal")
    c, c_snap = spending_branch(base / "c", uparams, Wallet(), [600, 600])
    d, d_snap = spending_branch(base / "d", uparams, Wallet(), [600, 600])
    return (c, c_snap), (d, d_snap)


@HYPO
@given(picks=st.permutations([0, 0, 1, 1]))
def test_equal_work_first_seen_stays(uparams, equal_branches, picks):
    r"""Two branches with equal work: the one whose tip arrived first stays active.

    genesis -> c1 -> c2      (600 s apart: equal work)
           \-> d1 -> d2
    """
    branches = equal_branches
    nxt = [0, 0]
    order = []
    for p in picks:  # parents first within each branch
        order.append(branches[p][0][nxt[p]])
        nxt[p] += 1
    winner = 0 if picks.index(0, picks.index(0) + 1) < picks.index(1, picks.index(1) + 1) else 1
    with tempfile.TemporaryDirectory() as tmp, opened_chain(Path(tmp) / "c", uparams) as chain:
        assert feed(chain, order) == []
        tips = [chain.index[branches[i][0][-1].hash] for i in (0, 1)]
        assert tips[0].chain_work == tips[1].chain_work
        assert snapshot(chain) == branches[winner][1]


def test_reorg_returns_losing_transactions_to_mempool(tmp_path, uparams):
    r"""After a reorg, txs only in the losing branch return to the pool;
    mined or conflicting ones do not.

        genesis -> 1 -> 2 -> 3 -> 4 -> a5            t_a, t_child, t_both, t_conf_a
                                   \-> b5 -> b6      t_both, t_conf_b (more work: z switches)

    Back in the pool: t_a and t_child; not t_both (mined in b5), not t_conf_a (b5 spent its
    coin); t_pool, never mined, stays.
    """
    wallet = Wallet()
    with (
        opened_chain(tmp_path / "x", uparams) as x,
        opened_chain(tmp_path / "y", uparams) as y,
        opened_chain(tmp_path / "z", uparams) as z,
    ):
        prefix = extend(x, wallet.addr, 4)
        feed(y, prefix)
        cb = [coinbase_coin(b) for b in prefix]
        t_a = spend(x, [cb[0]], wallet.key, [TxOut(cb[0][1].amount - 1000, wallet.addr)])
        t_child = spend(
            x,
            [(OutPoint(t_a.txid, 0), t_a.outputs[0])],
            wallet.key,
            [TxOut(t_a.outputs[0].amount - 1000, wallet.addr)],
        )
        t_both = spend(x, [cb[1]], wallet.key, [TxOut(cb[1][1].amount - 1000, wallet.addr)])
        t_conf_a = spend(x, [cb[2]], wallet.key, [TxOut(cb[2][1].amount - 1000, b"\x41" * 20)])
        t_conf_b = spend(x, [cb[2]], wallet.key, [TxOut(cb[2][1].amount - 2000, b"\x42" * 20)])
        t_pool = spend(x, [cb[3]], wallet.key, [TxOut(cb[3][1].amount - 1000, wallet.addr)])
        a5 = build_block(x, x.tip, wallet.addr, [t_a, t_child, t_both, t_conf_a], fees=4000)
        b5 = build_block(y, y.tip, wallet.addr, [t_both, t_conf_b], fees=3000)
        y.accept_block(b5)
        b6 = build_block(y, y.tip, wallet.addr)
        feed(z, prefix)
        pool = Mempool(z)
        result = z.accept_block(a5)
        pool.update_for_chain(result.connected, result.disconnected)
        pool.accept(t_pool)  # unrelated, unconfirmed
        for block in (b5, b6):
            result = z.accept_block(block)
            pool.update_for_chain(result.connected, result.disconnected)
        assert z.tip.hash == b6.hash
        assert [b.hash for b in result.disconnected] == [a5.hash]
        assert set(pool.entries) == {t_a.txid, t_child.txid, t_pool.txid}
        assert pool.get(t_child.txid).parents == {t_a.txid}
        assert pool.get(t_a.txid).children == {t_child.txid}
        assert pool.spender(cb[0][0]) == t_a.txid and pool.spender(cb[2][0]) is None
        assert pool.bytes == t_a.size + t_child.size + t_pool.size
        assert_matches_replay(z, tmp_path / "replay")
        # the returned transactions can be mined on the new branch
        template = create_block_template(z, pool, wallet.addr, now=z.tip.header.timestamp + 600)
        txids = [t.txid for t in template.txs[1:]]
        assert set(txids) == {t_a.txid, t_child.txid, t_pool.txid}
        assert txids.index(t_a.txid) < txids.index(t_child.txid)
        result = z.accept_block(solve_block(template))
        assert result.status == "connected"
        pool.update_for_chain(result.connected, result.disconnected)
        assert len(pool) == 0 and pool.bytes == 0


# --- invalid blocks deep inside a heavier branch --------------------------------------


def corrupt_signature(tx: Transaction) -> Transaction:
    txin = tx.inputs[0]
    bad = TxIn(
        txin.prev_txid,
        txin.prev_index,
        bytes([txin.signature[0] ^ 1]) + txin.signature[1:],
        txin.pubkey,
    )
    return Transaction.create(tx.version, [bad] + list(tx.inputs[1:]), tx.outputs, tx.locktime)


def invalid_branch(path: Path, params, wallet, kind: str, length: int = 5, bad_at: int = 3):
    """``length`` blocks 600 s apart whose block ``bad_at`` breaks a rule (``kind``)."""
    with opened_chain(path, params) as chain:
        blocks = extend(chain, wallet.addr, bad_at - 1)
        op, out = coinbase_coin(blocks[0])
        tx = spend(chain, [(op, out)], wallet.key, [TxOut(out.amount - 500, wallet.addr)])
        if kind == "bad-cb-amount":
            bad = build_block(chain, chain.tip, wallet.addr, [tx], fees=500, overpay=1)
        else:
            bad = build_block(chain, chain.tip, wallet.addr, [corrupt_signature(tx)], fees=500)
        blocks.append(bad)
        chain.accept_headers([bad.header])  # the header itself is fine
        entry = chain.index[bad.hash]
        for _ in range(length - bad_at):
            block = build_block(chain, entry, wallet.addr)
            chain.accept_headers([block.header])
            entry = chain.index[block.hash]
            blocks.append(block)
        return blocks


@pytest.fixture(scope="module", params=["bad-cb-amount", "bad-txns-signature"])
def valid_and_invalid(request, tmp_path_factory, uparams):
    r"""Branch A: 3 valid blocks; branch B: 5 blocks (more work) whose 3rd is invalid.

    genesis -> a1 -> a2 -> a3                  (valid)
           \-> b1 -> b2 -> B3 -> b4 -> b5      (B3 breaks the rule; b4 and b5 only as headers)
    """
    base = tmp_path_factory.mktemp("invalid")
    wallet = Wallet()
    a, a_snap = spending_branch(base / "a", uparams, wallet, [600] * 3)
    b = invalid_branch(base / "b", uparams, wallet, request.param)
    return a, a_snap, b, request.param


def check_invalid_branch_outcome(chain, a_snap, b, code):
    assert snapshot(chain) == a_snap
    bad = chain.index[b[2].hash]
    assert bad.status == BlockStatus.INVALID and bad.failure == code
    for block in b[:2]:
        assert chain.index[block.hash].status in (BlockStatus.DATA, BlockStatus.VALID)
    for block in b[3:]:
        entry = chain.index.get(block.hash)
        assert entry is None or (
            entry.status == BlockStatus.INVALID and entry.failure == "bad-prevblk"
        )
        # resubmitted, a descendant is refused, or (if its own parent was refused
        # before being indexed) parked as an orphan: never stored as valid
        try:
            status = chain.accept_block(block).status
        except BlockValidationError as exc:
            assert exc.code == "bad-prevblk"
        else:
            assert status == "orphan" and block.hash not in chain.index
    with pytest.raises(BlockValidationError) as exc:
        chain.accept_block(b[2])
    assert exc.value.code == code
    statuses = {t["hash"]: t["status"] for t in chain_tips(chain.index, chain.chain)}
    assert statuses[chain.tip.hash.hex()] == "active"
    assert "invalid" in statuses.values()


@pytest.mark.parametrize("order", ["a-first", "b-first", "b-reversed-then-a"])
def test_heavier_branch_with_invalid_block_is_rejected(tmp_path, uparams, valid_and_invalid, order):
    """A heavier branch with an invalid 3rd block loses;
    the tip stays on / returns to the valid branch."""
    a, a_snap, b, code = valid_and_invalid
    with ChainSet() as chains:
        chain = chains.open(tmp_path / "c", uparams)
        if order == "a-first":
            feed(chain, a)
            # equal work at b3
            assert [chain.accept_block(x).status for x in b[:3]] == ["stored"] * 3
            assert snapshot(chain) == a_snap
            with pytest.raises(BlockValidationError) as exc:
                # now B has more work: the switch is tried and abandoned
                chain.accept_block(b[3])
            assert exc.value.code == "bad-prevblk"
            assert snapshot(chain) == a_snap
            assert chain.index[b[3].hash].status == BlockStatus.INVALID
            feed(chain, b[4:])
        elif order == "b-first":
            codes = feed(chain, b)
            assert codes[0] == code and chain.tip.hash == b[1].hash  # stayed on the valid prefix
            feed(chain, a)
        else:
            codes = feed(chain, list(reversed(b)))
            assert code in codes
            feed(chain, a)
        check_invalid_branch_outcome(chain, a_snap, b, code)
        assert_matches_replay(chain, tmp_path / "replay")
        chain = chains.reopen(chain)  # the verdicts persist
        check_invalid_branch_outcome(chain, a_snap, b, code)


@settings(
    max_examples=10,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(order=st.permutations(range(8)))
def test_invalid_branch_any_arrival_order(uparams, valid_and_invalid, order):
    """Whatever the arrival order, the invalid heavier branch never becomes active."""
    a, a_snap, b, code = valid_and_invalid
    blocks = [(a + b)[i] for i in order]
    with tempfile.TemporaryDirectory() as tmp, opened_chain(Path(tmp) / "c", uparams) as chain:
        feed(chain, blocks)
        check_invalid_branch_outcome(chain, a_snap, b, code)


# --- random block trees ----------------------------------------------------------------


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 1000), st.sampled_from([60, 600, 3000])), min_size=4, max_size=12
    )
)
def test_random_block_tree_follows_most_work(uparams, plan):
    """Blocks with spends on random parents:
    the tip always has the most work and the UTXO set equals a replay."""
    wallet = Wallet()
    with tempfile.TemporaryDirectory() as tmp, opened_chain(Path(tmp) / "c", uparams) as chain:
        blocks = {}
        for pick, step in plan:
            candidates = sorted(
                (e for e in chain.index.values() if e.status != BlockStatus.INVALID),
                key=lambda e: e.seq,
            )
            parent = candidates[pick % len(candidates)]
            txs, fees = [], 0
            height = parent.height + 1
            if height >= 3:
                anc2 = blocks[parent.ancestor(height - 2).hash]
                inputs = [coinbase_coin(anc2)]
                prev = blocks[parent.hash]
                if len(prev.txs) > 1:
                    inputs.append((OutPoint(prev.txs[1].txid, 0), prev.txs[1].outputs[0]))
                total = sum(o.amount for _, o in inputs)
                txs = [
                    spend(
                        chain,
                        inputs,
                        wallet.key,
                        [TxOut(total // 2, wallet.addr), TxOut(total // 2 - 400, b"\x44" * 20)],
                    )
                ]
                fees = total - txs[0].total_out()
            block = build_block(chain, parent, wallet.addr, txs, time_step=step, fees=fees)
            blocks[block.hash] = block
            chain.accept_block(block)
            best = max(chain.index.values(), key=lambda e: (e.chain_work, -e.seq))
            assert chain.tip is best
        assert_matches_replay(chain, Path(tmp) / "replay")


def test_index_and_statuses_persist_after_reorg(tmp_path, uparams):
    r"""After a reorg the index, statuses, tips and UTXO set survive a reopen,
    and a later reorg works.

    genesis -> m1 -> m2 -> m3 -> m4 -> m5      m3, m4 stored (equal work); m5, after a reopen, wins
                  \-> o2 -> o3 -> o4           mined on the side chain; active after the first reorg
    """
    wallet = Wallet()
    with ChainSet() as chains:
        chain = chains.open(tmp_path / "c", uparams)
        side = chains.open(tmp_path / "s", uparams)
        main = extend(chain, wallet.addr, 2)
        feed(side, main[:1])
        other = extend(side, wallet.addr, 3)  # heights 2-4 on main[0]
        feed(chain, other)
        assert chain.tip.hash == other[-1].hash
        # main: heights 3-4, stored
        extend(chain, wallet.addr, 2, parent=chain.index[main[-1].hash])
        before = (
            snapshot(chain),
            chain_tips(chain.index, chain.chain),
            {
                h: (e.status, e.failure, e.chain_work, e.seq, e.height)
                for h, e in chain.index.items()
            },
        )
        chain = chains.reopen(chain)
        after = (
            snapshot(chain),
            chain_tips(chain.index, chain.chain),
            {
                h: (e.status, e.failure, e.chain_work, e.seq, e.height)
                for h, e in chain.index.items()
            },
        )
        assert after == before
        # extend the losing branch after the reopen: it wins, with the undo data of the old one
        main_tip = [
            t for t in chain_tips(chain.index, chain.chain) if t["status"] == "valid-headers"
        ][0]
        result = extend(chain, wallet.addr, 1, parent=chain.index[bytes.fromhex(main_tip["hash"])])
        assert chain.tip.hash == result[0].hash and chain.height == 5
        assert chain.index[other[-1].hash].status == BlockStatus.VALID
        assert_matches_replay(chain, tmp_path / "replay")
        chain = chains.reopen(chain)
        assert chain.tip.hash == result[0].hash
        assert_matches_replay(chain, tmp_path / "replay2")


# --- orphans ---------------------------------------------------------------------------


def test_orphans_children_first_connect_when_parent_arrives(tmp_path, uparams):
    """Blocks arriving children-first wait in the orphan pool and connect once the parent comes."""
    with (
        opened_chain(tmp_path / "src", uparams) as src,
        opened_chain(tmp_path / "dst", uparams) as dst,
    ):
        blocks = extend(src, b"\x50" * 20, 5)
        for block in reversed(blocks[1:]):
            result = dst.accept_block(block)
            assert result.status == "orphan" and result.connected == []
            assert block.hash not in dst.index
        assert set(dst.orphans) == {b.hash for b in blocks[1:]}
        assert dst.orphans.root(blocks[-1].hash) == blocks[0].hash
        assert dst.orphans.root(blocks[1].hash) == blocks[0].hash
        assert dst.orphans.root(blocks[0].hash) is None  # not an orphan
        assert dst.accept_block(blocks[3]).status == "orphan"  # duplicate orphan
        assert len(dst.orphans) == 4
        assert dst.height == 0
        result = dst.accept_block(blocks[0])
        assert result.status == "connected"
        assert [b.hash for b in result.connected] == [b.hash for b in blocks]
        assert len(dst.orphans) == 0 and dst.tip.hash == blocks[-1].hash
        assert snapshot(dst)[2:] == (stats_tuple(src), utxo_set(src))


def test_orphan_siblings_do_not_overwrite_each_other(tmp_path, uparams):
    r"""Two orphans with the same missing parent are both kept and both stored when it arrives.

    genesis -> parent -> k0
                     |\-> k1
                      \-> k2 -> grandkid      the only branch of height 3: it wins
    """
    with (
        opened_chain(tmp_path / "src", uparams) as src,
        opened_chain(tmp_path / "dst", uparams) as dst,
    ):
        (parent,) = extend(src, b"\x51" * 20, 1)
        kids = [build_block(src, src.tip, bytes([0x52 + i]) * 20) for i in range(3)]
        grandkid = build_block(src, src.accept_headers([kids[2].header])[0], b"\x55" * 20)
        for block in kids + [grandkid]:
            assert dst.accept_block(block).status == "orphan"
        assert len(dst.orphans) == 4
        assert {dst.orphans.root(k.hash) for k in kids + [grandkid]} == {parent.hash}
        result = dst.accept_block(parent)
        assert len(dst.orphans) == 0
        assert all(
            k.hash in dst.index
            and dst.index[k.hash].status in (BlockStatus.DATA, BlockStatus.VALID)
            for k in kids
        )
        assert dst.tip.hash == grandkid.hash  # the only branch of height 3
        assert {b.hash for b in result.connected} >= {parent.hash, kids[2].hash, grandkid.hash}
        tips = {t["hash"]: t["status"] for t in chain_tips(dst.index, dst.chain)}
        assert len(tips) == 3


def test_orphan_pool_is_bounded(tmp_path, uparams):
    """The orphan pool keeps at most MAX_ORPHANS blocks, evicting the oldest."""
    ticks = iter(range(10**6))
    with (
        opened_chain(tmp_path / "src", uparams) as src,
        opened_chain(tmp_path / "dst", uparams, clock=lambda: 10**10 + next(ticks)) as dst,
    ):
        (parent,) = extend(src, b"\x56" * 20, 1)
        kids = [build_block(src, src.tip, b"\x57" * 20) for _ in range(MAX_ORPHANS + 5)]
        for block in kids:
            assert dst.accept_block(block).status == "orphan"
            assert len(dst.orphans) <= MAX_ORPHANS
        assert len(dst.orphans) == MAX_ORPHANS
        assert set(dst.orphans) == {k.hash for k in kids[5:]}
        dst.accept_block(parent)
        assert len(dst.orphans) == 0
        assert all(k.hash in dst.index for k in kids[5:])
        assert not any(k.hash in dst.index for k in kids[:5])
        # first one processed wins the tie
        assert dst.index[kids[5].hash].status == BlockStatus.VALID
        assert dst.tip.hash == kids[5].hash


def test_header_only_parent_does_not_make_orphans(tmp_path, uparams):
    """A block whose parent is known as a header only is stored, not orphaned."""
    with (
        opened_chain(tmp_path / "src", uparams) as src,
        opened_chain(tmp_path / "dst", uparams) as dst,
    ):
        blocks = extend(src, b"\x58" * 20, 2)
        dst.accept_headers([blocks[0].header])
        assert dst.accept_block(blocks[1]).status == "stored"
        assert len(dst.orphans) == 0 and dst.index[blocks[1].hash].status == BlockStatus.DATA
        assert dst.index[blocks[0].hash].status == BlockStatus.HEADER
        assert dst.accept_block(blocks[0]).status == "connected"
        assert dst.tip.hash == blocks[1].hash


def test_orphans_without_proof_of_work_are_refused(tmp_path, uparams):
    """An orphan whose header misses its own target
    (or claims a target above the limit) is not pooled."""
    from node.primitives.block import Block, BlockHeader

    with (
        opened_chain(tmp_path / "src", uparams) as src,
        opened_chain(tmp_path / "dst", uparams) as dst,
    ):
        extend(src, b"\x59" * 20, 1)
        good = build_block(src, src.tip, b"\x59" * 20)
        header = good.header
        nonce = header.nonce + 1
        while int.from_bytes(header.with_nonce(nonce).hash, "big") <= (1 << 250):
            nonce += 1
        junk = Block.create(header.with_nonce(nonce), good.txs)
        with pytest.raises(BlockValidationError) as exc:
            dst.accept_block(junk)
        assert exc.value.code == "high-hash"
        easy = BlockHeader.create(
            1, header.prev_hash, header.merkle_root, header.timestamp, 0x2100FFFF, header.nonce
        )
        with pytest.raises(BlockValidationError) as exc:
            dst.accept_block(Block.create(easy, good.txs))
        assert exc.value.code == "bad-diffbits"
        assert len(dst.orphans) == 0
        assert dst.accept_block(good).status == "orphan"


def three_blocks_to_a_wallet(chain):
    """Mine 3 blocks to a new wallet: (the wallet, the tip as fork point, the coinbase coins
    of blocks 1 and 2)."""
    wallet = Wallet()
    blocks = extend(chain, wallet.addr, 3)
    return wallet, chain.tip, [coinbase_coin(b) for b in blocks[:2]]


def to_self(chain, wallet, coin, fee: int = 1000):
    """A transaction paying ``coin`` back to ``wallet``, less ``fee``."""
    return spend(chain, [coin], wallet.key, [TxOut(coin[1].amount - fee, wallet.addr)])


def test_tx_locations_follow_the_active_chain_across_reorgs(tmp_path, uparams):
    r"""A disconnect leaves txindex entries behind; they count only while their block is
    active: a transaction only in the losing branch is unconfirmed, one in both branches
    is found in the winner, and switching back finds the first location again.

        genesis -> 1 -> 2 -> 3 -> ours                 both, only_ours
                              \-> theirs1 -> theirs2   both (1 s apart: more work)
    """
    with opened_chain(tmp_path / "c", uparams) as chain:
        alice, fork, coins = three_blocks_to_a_wallet(chain)
        both = to_self(chain, alice, coins[0])
        only_ours = to_self(chain, alice, coins[1])
        ours = build_block(chain, fork, alice.addr, [both, only_ours], fees=2000)
        chain.accept_block(ours)
        assert chain.reader.get_tx_location(only_ours.txid) == (ours.hash, 2)
        theirs1 = build_block(chain, fork, alice.addr, [both], fees=1000, time_step=1)
        chain.accept_block(theirs1)
        theirs2 = build_block(chain, chain.index[theirs1.hash], alice.addr, time_step=1)
        result = chain.accept_block(theirs2)
        assert [b.hash for b in result.disconnected] == [ours.hash]
        assert chain.reader.get_tx_location(only_ours.txid) is None
        assert chain.reader.get_transaction(only_ours.txid) is None
        assert chain.reader.get_tx_location(both.txid) == (theirs1.hash, 1)
        chain.invalidate_block(theirs1.hash)
        assert chain.tip.hash == ours.hash
        assert chain.reader.get_tx_location(only_ours.txid) == (ours.hash, 2)
        assert chain.reader.get_tx_location(both.txid) == (ours.hash, 1)
        assert_matches_replay(chain, tmp_path / "replay")


def test_a_stale_txindex_entry_never_finds_another_transaction_s_coin(tmp_path, uparams):
    r"""Coins are keyed by (height, position, index) and found through txindex, which keeps
    the entries of disconnected blocks.  After a reorg puts another transaction at the
    losing transaction's height and position, its outpoint must not find that coin: it is
    unknown to queries and spending it fails the block with
    bad-txns-inputs-missingorspent, while the winner's coin at that key spends normally.

        genesis -> 1 -> 2 -> 3 -> x4                        lost; disconnected by the reorg
                              \-> theirs1 -> theirs2        won, at lost's height and position
                                                 |\-> bad   spends lost's coin: refused
                                                  \-> good  spends won's coin: connects
    """
    with opened_chain(tmp_path / "c", uparams) as chain:
        alice, fork, coins = three_blocks_to_a_wallet(chain)
        lost = to_self(chain, alice, coins[1])
        chain.accept_block(build_block(chain, fork, alice.addr, [lost], fees=1000))
        won = to_self(chain, alice, coins[0])
        theirs1 = build_block(chain, fork, alice.addr, [won], fees=1000, time_step=1)
        chain.accept_block(theirs1)
        chain.accept_block(build_block(chain, chain.index[theirs1.hash], alice.addr, time_step=1))
        assert chain.reader.get_tx_location(won.txid) == (theirs1.hash, 1)  # where ``lost`` was
        lost_coin = (OutPoint(lost.txid, 0), lost.outputs[0])
        won_coin = (OutPoint(won.txid, 0), won.outputs[0])
        assert chain.reader.get_coins([lost_coin[0], won_coin[0]]) == [
            None,
            chain.reader.get_coin(won_coin[0]),
        ]
        assert chain.reader.get_coin(won_coin[0]).amount == won.outputs[0].amount
        tip = chain.tip
        bad = to_self(chain, alice, lost_coin)
        block = build_block(chain, tip, alice.addr, [bad], fees=1000)
        with pytest.raises(BlockValidationError) as err:
            chain.accept_block(block)
        assert err.value.code == chain.index[block.hash].failure == "bad-txns-inputs-missingorspent"
        assert chain.tip is tip and chain.reader.get_coin(won_coin[0]) is not None
        good = to_self(chain, alice, won_coin)
        chain.accept_block(build_block(chain, tip, alice.addr, [good], fees=1000))
        assert (
            chain.reader.get_coin(won_coin[0]) is None
            and chain.reader.get_coin(OutPoint(good.txid, 0)) is not None
        )
        assert_matches_replay(chain, tmp_path / "replay")


def test_txrecent_entries_shadow_txindex_and_merge_into_it(tmp_path, uparams):
    r"""Connects write txindex entries to the small txrecent, which readers consult first
    (it holds the newer entry of a txid); a merge moves them into txindex and changes
    no answer.  A transaction merged with the losing branch's location and connected
    again in the winner is found in the winner, its coins spendable.

        genesis -> 1 -> 2 -> 3 -> ours                       lost, both (merged into txindex)
                              \-> theirs1 -> theirs2 -> 6    both; 6 spends it
    """
    with opened_chain(tmp_path / "c", uparams) as chain:
        alice, fork, coins = three_blocks_to_a_wallet(chain)
        both = to_self(chain, alice, coins[0])
        lost = to_self(chain, alice, coins[1])
        ours = build_block(chain, fork, alice.addr, [lost, both], fees=2000)
        chain.accept_block(ours)
        assert chain.merge_recent_txindex(threshold=10**6) == 0  # not due: nothing moves
        assert chain.merge_recent_txindex(threshold=1) == 6  # 4 coinbases, 2 txs
        assert chain.merge_recent_txindex(threshold=1) == 0
        assert chain.reader.get_tx_location(both.txid) == (ours.hash, 2)
        theirs1 = build_block(chain, fork, alice.addr, [both], fees=1000, time_step=1)
        chain.accept_block(theirs1)
        chain.accept_block(build_block(chain, chain.index[theirs1.hash], alice.addr, time_step=1))
        assert chain.tip.height == 5
        # txindex says ``ours`` (stale) for both txs; txrecent says theirs1 for ``both``
        answers = [
            chain.reader.get_tx_location(both.txid),
            chain.reader.get_tx_location(lost.txid),
            chain.reader.get_coins([OutPoint(both.txid, 0), OutPoint(lost.txid, 0)]),
        ]
        assert answers[:2] == [(theirs1.hash, 1), None]
        assert answers[2][0].amount == both.outputs[0].amount and answers[2][1] is None
        assert chain.merge_recent_txindex(threshold=1) == 3
        assert [
            chain.reader.get_tx_location(both.txid),
            chain.reader.get_tx_location(lost.txid),
            chain.reader.get_coins([OutPoint(both.txid, 0), OutPoint(lost.txid, 0)]),
        ] == answers
        onward = to_self(chain, alice, (OutPoint(both.txid, 0), both.outputs[0]))
        chain.accept_block(build_block(chain, chain.tip, alice.addr, [onward], fees=1000))
        assert chain.reader.get_coin(OutPoint(both.txid, 0)) is None
        assert_matches_replay(chain, tmp_path / "replay")
