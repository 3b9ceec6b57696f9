"""Chain state on real LMDB files: genesis, connecting, reopening, queries,
locators, headers-first sync, chain tips, invalidate/reconsider."""

from __future__ import annotations

import os
from itertools import pairwise

import pytest

from node.chain.chainstate import ChainState
from node.chain.index import (
    MAX_LOCATOR_ENTRIES,
    BlockStatus,
    chain_tips,
    find_fork,
    headers_after,
    locator,
)
from node.consensus.params import REGTEST
from node.primitives.errors import BlockValidationError
from node.primitives.tx import OutPoint, TxOut
from node.storage.store import StoreError
from tests.framework.blocktools import (
    NEUTRAL_STEP,
    Wallet,
    build_block,
    coinbase_coin,
    extend,
    spend,
)
from tests.framework.chains import ChainSet, open_chain, opened_chain
from tests.framework.replay import (
    assert_chain_db_matches,
    assert_matches_replay,
    recompute_stats,
    stats_tuple,
    utxo_set,
)
from tests.framework.util import REPO_ROOT


@pytest.fixture
def chain(tmp_path, uparams):
    c = open_chain(tmp_path / "chain", uparams)
    yield c
    c.close()


def tips_by_hash(chain):
    return {bytes.fromhex(t["hash"]): t for t in chain_tips(chain.index, chain.chain)}


# --- genesis, connecting, reopening ------------------------------------------------


def test_genesis_on_fresh_datadir(chain, uparams):
    """A fresh datadir holds only the genesis block: height 0, empty UTXO set."""
    assert chain.height == 0
    assert chain.tip.hash == uparams.genesis_hash
    assert chain.tip.status == BlockStatus.VALID and chain.tip.parent is None
    assert stats_tuple(chain) == (0, 0, bytes(32))
    assert list(chain.reader.iter_utxos()) == []
    assert chain.reader.get_block_raw(uparams.genesis_hash) == uparams.genesis.raw
    # the genesis coinbase is not spendable and not indexed
    assert chain.reader.get_coin(OutPoint(uparams.genesis.txs[0].txid, 0)) is None
    assert chain_tips(chain.index, chain.chain) == [
        {
            "hash": uparams.genesis_hash.hex(),
            "height": 0,
            "work": chain.tip.chain_work,
            "branchlen": 0,
            "status": "active",
        }
    ]
    assert_chain_db_matches(chain)


def test_connect_updates_tip_height_and_utxo_stats(chain, uparams, tmp_path):
    """Each connected block moves the tip and adds its coinbase to the UTXO stats."""
    wallet = Wallet()
    blocks = []
    for n in range(1, 5):
        block = build_block(chain, chain.tip, wallet.addr)
        result = chain.accept_block(block)
        blocks.append(block)
        assert result.status == "connected" and result.block_hash == block.hash
        assert [b.hash for b in result.connected] == [block.hash] and result.disconnected == []
        assert chain.tip.hash == block.hash and chain.height == n
        assert chain.utxo_stats.count == n
        assert chain.utxo_stats.amount == sum(uparams.subsidy(h) for h in range(1, n + 1))
        coin = chain.reader.get_coin(coinbase_coin(block)[0])
        assert coin.height == n and coin.coinbase and coin.addr_hash == wallet.addr
    # spend the first coinbase (mature at height 3) into two outputs, 1000 fee
    op, out = coinbase_coin(blocks[0])
    tx = spend(
        chain,
        [(op, out)],
        wallet.key,
        [TxOut(1000, b"\x01" * 20), TxOut(out.amount - 2000, wallet.addr)],
    )
    block = build_block(chain, chain.tip, wallet.addr, [tx], fees=1000)
    assert chain.accept_block(block).status == "connected"
    assert chain.reader.get_coin(op) is None
    assert chain.reader.get_coin(OutPoint(tx.txid, 1)).amount == out.amount - 2000
    assert not chain.reader.get_coin(OutPoint(tx.txid, 0)).coinbase
    # 5 coinbases + 2 outputs - 1 spent; fees are paid to the miner: the amount equals all subsidies
    assert chain.utxo_stats.count == 5 + 2 - 1
    assert chain.utxo_stats.amount == sum(uparams.subsidy(h) for h in range(1, 6))
    assert recompute_stats(chain) == chain.utxo_stats
    assert chain.accept_block(block).status == "duplicate"
    assert_matches_replay(chain, tmp_path / "replay")


def test_reopen_gives_same_tip_stats_and_digest(tmp_path, uparams):
    """Closing and reopening a datadir restores tip, height, UTXO set, stats and index."""
    wallet = Wallet()
    chain = open_chain(tmp_path / "c", uparams)
    blocks = extend(chain, wallet.addr, 3)
    op, out = coinbase_coin(blocks[0])
    tx = spend(chain, [(op, out)], wallet.key, [TxOut(out.amount - 500, wallet.addr)])
    chain.accept_block(build_block(chain, chain.tip, wallet.addr, [tx], fees=500))
    # a side block, stored but not active
    side = build_block(chain, chain.index[blocks[0].hash], wallet.addr)
    assert chain.accept_block(side).status == "stored"
    before = (
        chain.tip.hash,
        chain.height,
        stats_tuple(chain),
        utxo_set(chain),
        {h: (e.status, e.height, e.chain_work, e.seq) for h, e in chain.index.items()},
        chain_tips(chain.index, chain.chain),
    )
    chain.close()
    with opened_chain(tmp_path / "c", uparams) as again:
        after = (
            again.tip.hash,
            again.height,
            stats_tuple(again),
            utxo_set(again),
            {h: (e.status, e.height, e.chain_work, e.seq) for h, e in again.index.items()},
            chain_tips(again.index, again.chain),
        )
        assert after == before
        assert again.reader.utxo_digest() == before[2][2] != bytes(32)
        assert_chain_db_matches(again)
        # new blocks get a later arrival sequence than anything loaded
        nxt = build_block(again, again.tip, wallet.addr)
        again.accept_block(nxt)
        assert again.index[nxt.hash].seq > max(s for (_, _, _, s) in before[4].values())


def test_get_transaction(chain):
    """get_transaction finds confirmed transactions (and coinbases) with their block entry."""
    wallet = Wallet()
    blocks = extend(chain, wallet.addr, 3)
    op, out = coinbase_coin(blocks[0])
    tx = spend(chain, [(op, out)], wallet.key, [TxOut(out.amount - 500, wallet.addr)])
    block = build_block(chain, chain.tip, wallet.addr, [tx], fees=500)
    chain.accept_block(block)
    found, entry = chain.reader.get_transaction(tx.txid)
    assert found == tx and found.txid == tx.txid and found.raw == tx.raw
    assert entry.hash == block.hash and entry.height == 4
    assert chain.reader.get_tx_location(tx.txid) == (block.hash, 1)
    cb, cb_entry = chain.reader.get_transaction(blocks[1].txs[0].txid)
    assert cb.is_coinbase and cb_entry.hash == blocks[1].hash
    assert chain.reader.get_transaction(os.urandom(32)) is None


def test_address_coins(chain):
    """address_coins lists exactly the unspent outputs paying an address."""
    alice, bob = Wallet(), Wallet()
    blocks = extend(chain, alice.addr, 3)
    coins = dict(chain.reader.address_coins(alice.addr))
    assert set(coins) == {coinbase_coin(b)[0] for b in blocks}
    assert all(c.addr_hash == alice.addr and c.coinbase for c in coins.values())
    op, out = coinbase_coin(blocks[0])
    tx = spend(
        chain, [(op, out)], alice.key, [TxOut(7000, bob.addr), TxOut(out.amount - 8000, alice.addr)]
    )
    chain.accept_block(build_block(chain, chain.tip, b"\x02" * 20, [tx]))
    alice_coins = dict(chain.reader.address_coins(alice.addr))
    assert op not in alice_coins
    assert alice_coins[OutPoint(tx.txid, 1)].amount == out.amount - 8000
    assert len(alice_coins) == 3
    assert chain.reader.address_coins(bob.addr) == [
        (OutPoint(tx.txid, 0), chain.reader.get_coin(OutPoint(tx.txid, 0)))
    ]
    assert chain.reader.address_coins(Wallet().addr) == []
    assert chain.reader.address_coins(b"\xff" * 20) == []


def test_address_history_newest_first_with_paging(chain):
    """address_history is newest first; limit and before_height page through it."""
    alice, bob = Wallet(), Wallet()
    blocks = extend(chain, alice.addr, 4)  # heights 1-4 pay alice
    op, out = coinbase_coin(blocks[0])
    tx = spend(
        chain, [(op, out)], alice.key, [TxOut(5000, bob.addr), TxOut(out.amount - 6000, alice.addr)]
    )
    chain.accept_block(build_block(chain, chain.tip, b"\x03" * 20, [tx]))  # height 5
    extend(chain, b"\x03" * 20, 1)  # height 6: not alice
    full = chain.reader.address_history(alice.addr)
    assert full == [(5, 1, tx.txid)] + [(h, 0, blocks[h - 1].txs[0].txid) for h in (4, 3, 2, 1)]
    assert chain.reader.address_history(alice.addr, limit=2) == full[:2]
    assert chain.reader.address_history(alice.addr, before_height=4) == full[2:]
    assert chain.reader.address_history(alice.addr, limit=1, before_height=3) == [full[3]]
    assert chain.reader.address_history(alice.addr, before_height=1) == []
    assert chain.reader.address_history(alice.addr, before_height=100) == full
    # paging: each page continues below the last height seen
    pages, before = [], None
    while True:
        page = chain.reader.address_history(alice.addr, limit=2, before_height=before)
        if not page:
            break
        pages.extend(page)
        before = page[-1][0]
    assert pages == full
    assert chain.reader.address_history(bob.addr) == [(5, 1, tx.txid)]
    miner_cbs = [chain.reader.get_block(chain.chain[h].hash).txs[0].txid for h in (6, 5)]
    assert chain.reader.address_history(b"\x03" * 20) == [
        (6, 0, miner_cbs[0]),
        (5, 0, miner_cbs[1]),
    ]
    for unknown in (b"\x00" * 20, b"\xff" * 20, Wallet().addr):
        assert chain.reader.address_history(unknown) == []


def test_datadir_of_another_network_is_refused(tmp_path, uparams):
    """Opening a datadir with another network's params raises StoreError and releases the files."""
    chain = ChainState(tmp_path / "d", REGTEST)
    chain.close()
    with pytest.raises(StoreError, match="regtest") as refused:
        ChainState(tmp_path / "d", uparams)
    # the refused environment was closed, even while the error (and its traceback) is alive
    datadir = str((tmp_path / "d").resolve())
    open_files = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(datadir):
            open_files.append(target)
    assert open_files == [], refused.value
    again = ChainState(tmp_path / "d", REGTEST)
    assert again.tip.hash == REGTEST.genesis_hash
    again.close()


# --- locators and header sync -----------------------------------------------------


def test_locator_shape(chain, uparams):
    """The locator starts at the tip, steps by 1 ten times, then doubles, and ends at genesis."""
    assert locator(chain.tip) == [uparams.genesis_hash]
    extend(chain, b"\x04" * 20, 60)
    loc = locator(chain.tip)
    heights = [chain.index[h].height for h in loc]
    assert loc[0] == chain.tip.hash and loc[-1] == uparams.genesis_hash
    assert len(loc) <= MAX_LOCATOR_ENTRIES and len(set(loc)) == len(loc)
    assert heights[:10] == list(range(60, 50, -1))
    gaps = [a - b for a, b in pairwise(heights)]
    assert all(g2 >= g1 for g1, g2 in pairwise(gaps))  # never shrinking steps
    # doubling (last may be cut)
    assert all(g2 == 2 * g1 for g1, g2 in pairwise(gaps[10:-1]))
    assert all(chain.on_active_chain(chain.index[h]) for h in loc)
    # a locator of an earlier entry starts there
    mid = chain.chain[5]
    assert locator(mid) == [chain.chain[h].hash for h in (5, 4, 3, 2, 1, 0)]


def test_find_fork_and_headers_after(tmp_path, uparams):
    """find_fork picks the newest shared block;
    headers_after returns the active chain from there."""
    with opened_chain(tmp_path / "a", uparams) as a, opened_chain(tmp_path / "b", uparams) as b:
        shared = extend(a, b"\x05" * 20, 10)
        for block in shared:
            b.accept_block(block)
        extend(a, b"\x05" * 20, 8)
        extend(b, b"\x06" * 20, 3)
        fork = find_fork(a.index, a.chain, locator(b.tip))
        assert fork.hash == shared[-1].hash and fork.height == 10
        assert find_fork(b.index, b.chain, locator(a.tip)).hash == shared[-1].hash
        headers = headers_after(a.index, a.chain, locator(b.tip), bytes(32), 5)
        assert [h.hash for h in headers] == [e.hash for e in a.chain[11:16]]
        stop = a.chain[12].hash
        assert [h.hash for h in headers_after(a.index, a.chain, locator(b.tip), stop, 100)] == [
            a.chain[11].hash,
            stop,
        ]
        assert len(headers_after(a.index, a.chain, locator(b.tip), bytes(32), 100)) == 8
        # an unknown locator falls back to genesis
        assert find_fork(a.index, a.chain, [os.urandom(32)]).height == 0
        assert [h.hash for h in headers_after(a.index, a.chain, [], bytes(32), 3)] == [
            e.hash for e in a.chain[1:4]
        ]
        # a peer already at our tip gets nothing
        assert headers_after(a.index, a.chain, locator(a.tip), bytes(32), 10) == []


def test_headers_first_then_blocks(tmp_path, uparams):
    r"""After headers-first sync the chain advances only as block data arrives,
    along the headers' branch.

    genesis -> r1 -> r2 -> r3 -> r4 -> r5   remote: headers first, then blocks r3, r2, r1, r5, r4
           \-> l1 -> l2                     dst's own: active until r1-r3 are complete
    """
    with (
        opened_chain(tmp_path / "src", uparams) as src,
        opened_chain(tmp_path / "dst", uparams) as dst,
    ):
        remote = extend(src, b"\x07" * 20, 5)
        local = extend(dst, b"\x08" * 20, 2)  # dst's own, shorter branch
        entries = dst.accept_headers([b.header for b in remote])
        assert [e.hash for e in entries] == [b.hash for b in remote]
        assert all(e.status == BlockStatus.HEADER for e in entries)
        assert dst.tip.hash == local[-1].hash  # headers alone move nothing
        assert dst.accept_headers([b.header for b in remote]) == entries  # idempotent
        tips = tips_by_hash(dst)
        assert tips[remote[-1].hash]["status"] == "headers-only"
        assert tips[remote[-1].hash]["branchlen"] == 5
        # blocks 3 and 2 come first: their ancestors have no data yet
        assert dst.accept_block(remote[2]).status == "stored"
        assert dst.accept_block(remote[1]).status == "stored"
        assert dst.tip.hash == local[-1].hash
        assert tips_by_hash(dst)[remote[-1].hash]["status"] == "headers-only"
        result = dst.accept_block(remote[0])  # now blocks 1-3 are complete
        assert dst.tip.hash == remote[2].hash
        assert [b.hash for b in result.connected] == [b.hash for b in remote[:3]]
        assert [b.hash for b in result.disconnected] == [local[1].hash, local[0].hash]
        assert dst.accept_block(remote[4]).status == "stored"
        assert dst.tip.hash == remote[2].hash
        assert dst.accept_block(remote[3]).status == "connected"
        assert dst.tip.hash == remote[4].hash
        assert all(dst.index[b.hash].status == BlockStatus.VALID for b in remote)
        assert tips_by_hash(dst)[local[-1].hash]["status"] == "valid-fork"
        assert_matches_replay(dst, tmp_path / "replay")
        assert stats_tuple(dst) == stats_tuple(src) and utxo_set(dst) == utxo_set(src)


def test_accept_headers_rejects_bad_headers(tmp_path, uparams):
    """accept_headers keeps the valid headers before a bad one and refuses unknown parents."""
    with ChainSet() as chains:
        src = chains.open(tmp_path / "src", uparams)
        dst = chains.open(tmp_path / "dst", uparams)
        blocks = extend(src, b"\x09" * 20, 3)
        with pytest.raises(BlockValidationError) as exc:
            dst.accept_headers([blocks[1].header])
        assert exc.value.code == "prev-blk-not-found"
        bad = blocks[1].header.with_nonce(blocks[1].header.nonce + 1)
        while int.from_bytes(bad.hash, "big") <= (1 << 250):  # make sure it misses the target
            bad = bad.with_nonce(bad.nonce + 1)
        with pytest.raises(BlockValidationError) as exc:
            dst.accept_headers([blocks[0].header, bad, blocks[2].header])
        assert exc.value.code == "high-hash"
        assert blocks[0].hash in dst.index and bad.hash not in dst.index
        dst = chains.reopen(dst)  # the good header was persisted
        assert dst.index[blocks[0].hash].status == BlockStatus.HEADER
        assert dst.tip.height == 0


def test_chain_tips_statuses(tmp_path, uparams):
    r"""chain_tips reports active, valid-fork, valid-headers, headers-only and invalid branches.

    genesis -> a1 -> a2 -> a3 -> bad     a3 active; bad: invalid (its coinbase overpays)
                  |\-> f2                valid-fork: active until a3
                  |\-> d2                valid-headers: stored with equal work, never connected
                   \-> h2 -> h3          headers-only
    """
    with (
        opened_chain(tmp_path / "c", uparams) as chain,
        opened_chain(tmp_path / "o", uparams) as other,
    ):
        (a1,) = extend(chain, b"\x0a" * 20, 1)
        other.accept_block(a1)
        f2 = build_block(chain, chain.tip, b"\x0b" * 20)
        chain.accept_block(f2)  # f2 active for a while
        a2 = build_block(chain, chain.index[a1.hash], b"\x0a" * 20)
        assert chain.accept_block(a2).status == "stored"  # equal work: first seen stays
        a3 = build_block(chain, chain.index[a2.hash], b"\x0a" * 20)
        chain.accept_block(a3)  # reorg: f2 becomes a valid fork
        assert chain.tip.hash == a3.hash
        d2 = build_block(chain, chain.index[a1.hash], b"\x0c" * 20)
        assert chain.accept_block(d2).status == "stored"  # never connected
        h2, h3 = extend(other, b"\x0d" * 20, 2)
        chain.accept_headers([h2.header, h3.header])  # headers only
        bad = build_block(chain, chain.tip, b"\x0e" * 20, overpay=1)
        with pytest.raises(BlockValidationError) as exc:
            chain.accept_block(bad)
        assert exc.value.code == "bad-cb-amount"
        tips = tips_by_hash(chain)
        assert {h: (t["status"], t["height"], t["branchlen"]) for h, t in tips.items()} == {
            a3.hash: ("active", 3, 0),
            f2.hash: ("valid-fork", 2, 1),
            d2.hash: ("valid-headers", 2, 1),
            h3.hash: ("headers-only", 3, 2),
            bad.hash: ("invalid", 4, 1),
        }
        assert chain_tips(chain.index, chain.chain)[0]["status"] == "active"
        assert tips[a3.hash]["work"] == chain.tip.chain_work
        assert chain.index[bad.hash].status == BlockStatus.INVALID
        assert chain.index[bad.hash].failure == "bad-cb-amount"
        # resubmitting a known invalid block fails fast with the same code
        with pytest.raises(BlockValidationError) as exc:
            chain.accept_block(bad)
        assert exc.value.code == "bad-cb-amount"
        assert_matches_replay(chain, tmp_path / "replay")


def test_check_block_failure_marks_invalid_but_mutation_does_not(chain, uparams):
    """A block breaking a context-free rule is marked invalid; a mutated body is only dropped."""
    from node.mining.miner import solve_block
    from node.primitives.block import Block, BlockHeader, merkle_root

    extend(chain, b"\x0f" * 20, 1)
    good = build_block(chain, chain.tip, b"\x0f" * 20)
    # same header, body with a different transaction list: a mutation, header stays usable
    mutated = Block.create(good.header, list(good.txs) + [good.txs[0]])
    with pytest.raises(BlockValidationError) as exc:
        chain.accept_block(mutated)
    assert exc.value.code in ("bad-txns-duplicate", "bad-txnmrklroot")
    assert good.hash not in chain.index
    assert chain.accept_block(good).status == "connected"
    # a block with no coinbase, merkle root matching: invalid for good
    cb = build_block(chain, chain.tip, b"\x0f" * 20).txs[0]
    from node.primitives.tx import Transaction, TxIn

    fake = Transaction.create(
        1, [TxIn(os.urandom(32), 0, bytes(64), bytes(32))], [TxOut(1, b"\x0f" * 20)]
    )
    header = BlockHeader.create(
        1,
        chain.tip.hash,
        merkle_root([fake.txid, cb.txid]),
        chain.tip.header.timestamp + NEUTRAL_STEP,
        chain.next_bits(chain.tip),
        1 << 32,
    )
    nocb = solve_block(Block.create(header, [fake, cb]))
    with pytest.raises(BlockValidationError) as exc:
        chain.accept_block(nocb)
    assert exc.value.code == "bad-cb-missing"
    assert chain.index[nocb.hash].status == BlockStatus.INVALID
    assert chain.tip.hash == good.hash


# --- invalidate / reconsider ------------------------------------------------------


def _chain_with_txs(chain, wallet, length):
    """Blocks 1-2 pay ``wallet``; blocks 3.. each spend one earlier coin of the wallet."""
    blocks = extend(chain, wallet.addr, 2)
    for n in range(3, length + 1):
        op, out = coinbase_coin(blocks[n - 3])
        tx = spend(
            chain,
            [(op, out)],
            wallet.key,
            [TxOut(out.amount // 2, wallet.addr), TxOut(out.amount // 2 - 300, b"\x10" * 20)],
        )
        block = build_block(chain, chain.tip, wallet.addr, [tx], fees=300)
        chain.accept_block(block)
        blocks.append(block)
    return blocks


def test_invalidate_and_reconsider(tmp_path, uparams):
    """invalidate_block rewinds the tip (UTXO as if replayed),
    persists, and reconsider_block restores it."""
    wallet = Wallet()
    with ChainSet() as chains:
        chain = chains.open(tmp_path / "c", uparams)
        blocks = _chain_with_txs(chain, wallet, 6)
        snapshot = (stats_tuple(chain), utxo_set(chain), chain.reader.address_history(wallet.addr))
        result = chain.invalidate_block(blocks[3].hash)  # height 4
        assert [b.hash for b in result.disconnected] == [
            blocks[5].hash,
            blocks[4].hash,
            blocks[3].hash,
        ]
        assert result.connected == []
        assert chain.tip.hash == blocks[2].hash and chain.height == 3
        assert chain.index[blocks[3].hash].status == BlockStatus.INVALID
        assert chain.index[blocks[3].hash].failure == "manually-invalidated"
        assert chain.index[blocks[5].hash].status == BlockStatus.INVALID
        assert chain.index[blocks[5].hash].failure == "bad-prevblk"
        assert all(h < 4 for h, _, _ in chain.reader.address_history(wallet.addr))
        assert chain.reader.get_transaction(blocks[4].txs[1].txid) is None
        assert tips_by_hash(chain)[blocks[5].hash]["status"] == "invalid"
        assert_matches_replay(chain, tmp_path / "replay1")
        with pytest.raises(BlockValidationError):
            chain.accept_block(blocks[4])
        chain = chains.reopen(chain)  # persisted
        assert chain.tip.hash == blocks[2].hash
        assert chain.index[blocks[4].hash].status == BlockStatus.INVALID
        result = chain.reconsider_block(blocks[3].hash)
        assert [b.hash for b in result.connected] == [b.hash for b in blocks[3:]]
        assert chain.tip.hash == blocks[5].hash
        assert (
            stats_tuple(chain),
            utxo_set(chain),
            chain.reader.address_history(wallet.addr),
        ) == snapshot
        assert all(chain.index[b.hash].status == BlockStatus.VALID for b in blocks)
        assert_matches_replay(chain, tmp_path / "replay2")
        with pytest.raises(ValueError):
            chain.invalidate_block(uparams.genesis_hash)
        with pytest.raises(KeyError):
            chain.invalidate_block(os.urandom(32))
        with pytest.raises(KeyError):
            chain.reconsider_block(os.urandom(32))


def test_invalidate_switches_to_best_other_branch(tmp_path, uparams):
    r"""Invalidating an active block moves the tip to the best remaining branch; reconsider returns.

    genesis -> 1 -> 2 -> 3 -> 4 -> 5     invalidate 3: the tip moves to s4
                      \-> s3 -> s4       reconsider 5: back to 5, s4 a valid fork
    """
    wallet = Wallet()
    with opened_chain(tmp_path / "c", uparams) as chain:
        blocks = _chain_with_txs(chain, wallet, 5)
        side = extend(chain, b"\x11" * 20, 2, parent=chain.index[blocks[1].hash])  # heights 3-4
        assert chain.tip.hash == blocks[4].hash
        assert tips_by_hash(chain)[side[-1].hash]["status"] == "valid-headers"
        result = chain.invalidate_block(blocks[2].hash)  # height 3 of the main branch
        assert chain.tip.hash == side[-1].hash
        assert [b.hash for b in result.connected] == [b.hash for b in side]
        assert [b.hash for b in result.disconnected] == [b.hash for b in reversed(blocks[2:])]
        assert_matches_replay(chain, tmp_path / "r1")
        # invalidating a block off the active chain changes nothing else
        chain.invalidate_block(blocks[4].hash)
        assert chain.tip.hash == side[-1].hash
        result = chain.reconsider_block(blocks[4].hash)  # clears its ancestors too
        assert chain.tip.hash == blocks[4].hash
        assert [b.hash for b in result.disconnected] == [b.hash for b in reversed(side)]
        assert tips_by_hash(chain)[side[-1].hash]["status"] == "valid-fork"
        assert_matches_replay(chain, tmp_path / "r2")


def test_reconsider_of_truly_invalid_block_fails_again(chain, uparams):
    """Reconsidering a block that really breaks a rule marks it invalid again; the tip stays."""
    extend(chain, b"\x12" * 20, 2)
    tip = chain.tip.hash
    bad = build_block(chain, chain.tip, b"\x12" * 20, overpay=5)
    with pytest.raises(BlockValidationError):
        chain.accept_block(bad)
    result = chain.reconsider_block(bad.hash)
    assert result.invalid == [(bad.hash, "bad-cb-amount")]
    assert chain.tip.hash == tip
    assert chain.index[bad.hash].status == BlockStatus.INVALID
    assert chain.index[bad.hash].failure == "bad-cb-amount"


def test_block_stored_but_not_connected_before_a_crash_is_connected_on_reopen(tmp_path, uparams):
    """A crash between storing a better block and connecting it: the reopened chain connects it."""
    chain = open_chain(tmp_path / "c", uparams)
    extend(chain, b"\x13" * 20, 2)
    block = build_block(chain, chain.tip, b"\x13" * 20)

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash inside the switch")

    chain._switch = crash
    with pytest.raises(RuntimeError):
        chain.accept_block(block)
    chain.close()
    with opened_chain(tmp_path / "c", uparams) as chain:
        assert chain.index[block.hash].status in (BlockStatus.DATA, BlockStatus.VALID)
        assert chain.tip.hash == block.hash and chain.height == 3
        # a competing block arriving later with equal work does not displace it
        rival = build_block(chain, chain.index[block.header.prev_hash], b"\x14" * 20)
        assert chain.accept_block(rival).status == "stored"
        nxt = build_block(chain, chain.tip, b"\x13" * 20)
        assert chain.accept_block(nxt).status == "connected"
        assert_matches_replay(chain, tmp_path / "replay")


def test_only_the_node_s_own_data_is_decoded_without_the_strict_check():
    """decode_stored / from_stored read bytes the node itself checked and kept (its LMDB
    records, its mempool entries); everything from outside (peers, API, files) must go
    through the strict decoders.  A new reader of these belongs on this list only if it
    reads such bytes."""
    import re

    trusted_readers = {
        "node/storage/store.py",
        "node/storage/upgrade.py",
        "node/chain/chainstate.py",
        "node/chain/connect.py",
        "node/chain/reader.py",
        "node/primitives/block.py",
        "node/primitives/tx.py",
        "node/primitives/encoding.py",
        "node/mempool/entry.py",
    }
    root = REPO_ROOT
    for path in [*root.glob("node/**/*.py"), *root.glob("network/*.py"), *root.glob("wallet/*.py")]:
        if re.search(r"\b(decode_stored|from_stored)\(", path.read_text()):
            assert path.relative_to(root).as_posix() in trusted_readers, path


def test_utxo_set_info_is_one_snapshot_remembered_per_tip(tmp_path, uparams):
    """The scan reports the tip it read with the coins; a second call at the same tip is
    answered from the first; a new block makes a new scan whose totals match the stats."""
    wallet = Wallet()
    with opened_chain(tmp_path / "d", uparams) as chain:
        extend(chain, wallet.addr, 3)
        first = chain.reader.utxo_set_info()
        assert first["tip"] == chain.tip.hash and first["height"] == 3
        assert (first["count"], first["amount"]) == (
            chain.utxo_stats.count,
            chain.utxo_stats.amount,
        )
        assert chain.reader.utxo_set_info() is first
        extend(chain, wallet.addr, 1)
        second = chain.reader.utxo_set_info()
        assert second["tip"] == chain.tip.hash and second["count"] == first["count"] + 1
        assert second["digest"] != first["digest"]
