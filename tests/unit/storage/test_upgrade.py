"""Opening a datadir written by an older schema (node/storage/upgrade.py): each test
writes a chain with the current code, rewrites its records the way the older schema
stored them, and checks that the reopened node answers as before and goes on."""

from __future__ import annotations

import lmdb
import pytest

from node.primitives.encoding import decode, encode
from node.primitives.tx import OutPoint, TxOut
from node.storage.schema import (
    ADDR_HIST_ENTRY,
    COIN_KEY_SIZE,
    SCHEMA_VERSION,
    coin_from_record,
    encode_coin,
    outpoint_from_record,
    outpoint_key,
)
from tests.framework.blocktools import (
    Wallet,
    build_block,
    coinbase_coin,
    extend,
    make_params,
    spend,
)
from tests.framework.chains import open_chain, opened_chain
from tests.framework.replay import assert_matches_replay, stats_tuple, utxo_set


@pytest.fixture(scope="module")
def uparams():
    return make_params()


def rewrite_coins_as_schema_3(env, txn) -> None:
    """Schemas 1 to 3 keyed a coin by outpoint (txid + index) with the value [amount,
    addr_hash, height, coinbase], kept those values in ``undo``, and had every entry
    in ``txindex`` (no ``txrecent``)."""
    recent, index = env.open_db(b"txrecent", txn=txn), env.open_db(b"txindex", txn=txn)
    txn.cursor(db=index).putmulti(list(txn.cursor(db=recent)))
    txn.drop(recent, delete=True)
    utxo = env.open_db(b"utxo", txn=txn)
    records = list(txn.cursor(db=utxo))
    txn.drop(utxo, delete=False)
    for key, value in records:
        outpoint = outpoint_from_record(key, value)
        txn.put(outpoint_key(*outpoint), encode_coin(coin_from_record(key, value)), db=utxo)
    undo = env.open_db(b"undo", txn=txn)
    for block_hash, raw in list(txn.cursor(db=undo)):
        coins = [coin_from_record(e[:COIN_KEY_SIZE], e[COIN_KEY_SIZE:]) for e in decode(raw)]
        txn.put(
            block_hash,
            encode([[c.amount, c.addr_hash, c.height, int(c.coinbase)] for c in coins]),
            db=undo,
        )


def open_lmdb(path):
    return lmdb.open(str(path / "chain.lmdb"), max_dbs=16, subdir=True)


def test_schema_3_coins_keyed_by_outpoint_are_rekeyed_by_position(tmp_path, uparams):
    """Schema 3 -> 4: every coin, the digest, the totals, address coins and the spent
    coins of active blocks read the same after the upgrade; the undo data of a block
    a reorg left behind is dropped (a reconnect writes it again), and the node goes on
    connecting, spending and reorganising on the new keys."""
    alice, bob = Wallet(), Wallet()
    chain = open_chain(tmp_path / "d", uparams)
    blocks = extend(chain, alice.addr, 3)
    fork = chain.tip
    coins = [coinbase_coin(b) for b in blocks]
    lost = spend(chain, [coins[1]], alice.key, [TxOut(coins[1][1].amount - 1000, bob.addr)])
    losing = build_block(chain, fork, alice.addr, [lost], fees=1000)
    chain.accept_block(losing)
    pay = spend(
        chain,
        [coins[0]],
        alice.key,
        [TxOut(7000, bob.addr), TxOut(coins[0][1].amount - 8000, alice.addr)],
    )
    winner = build_block(chain, fork, alice.addr, [pay], fees=1000, time_step=1)
    chain.accept_block(winner)
    chain.accept_block(build_block(chain, chain.index[winner.hash], alice.addr, time_step=1))
    assert chain.tip.height == 5 and not chain.on_active_chain(chain.index[losing.hash])
    before = {
        "coins": utxo_set(chain),
        "stats": stats_tuple(chain),
        "addr": {a: chain.reader.address_coins(a) for a in (alice.addr, bob.addr)},
        "undo": {e.hash: chain.reader.get_undo(e.hash) for e in chain.chain},
    }
    assert chain.reader.get_undo(losing.hash) is not None
    chain.close()

    env = open_lmdb(tmp_path / "d")
    with env.begin(write=True) as txn:
        txn.put(b"schema", encode(3), db=env.open_db(b"meta", txn=txn))
        rewrite_coins_as_schema_3(env, txn)
    env.close()

    with opened_chain(tmp_path / "d", uparams) as again:
        assert decode(again.reader.db_get("meta", b"schema")) == SCHEMA_VERSION == 5
        assert all(len(k) == COIN_KEY_SIZE for k, _ in again.reader.db_items("utxo"))
        assert utxo_set(again) == before["coins"] and stats_tuple(again) == before["stats"]
        assert {a: again.reader.address_coins(a) for a in (alice.addr, bob.addr)} == before["addr"]
        assert {e.hash: again.reader.get_undo(e.hash) for e in again.chain} == before["undo"]
        assert again.reader.get_undo(losing.hash) is None
        assert again.reader.get_coin(OutPoint(lost.txid, 0)) is None
        bob_coin = (OutPoint(pay.txid, 0), pay.outputs[0])
        onward = spend(again, [bob_coin], bob.key, [TxOut(6000, alice.addr)])
        again.accept_block(build_block(again, again.tip, alice.addr, [onward], fees=1000))
        assert again.reader.get_coin(bob_coin[0]) is None
        extend(again, alice.addr, 2)
        assert_matches_replay(again, tmp_path / "replay")


def test_schema_1_datadir_is_upgraded_in_place(tmp_path, uparams):
    """A schema-1 datadir (a per-address coin index, one addrhist key per transaction,
    a stored UTXO digest, coins keyed by outpoint) opens as the current schema: the coin
    index is dropped, the history regrouped per block, and address queries, connecting
    and reorgs go on as before."""
    alice, bob = Wallet(), Wallet()
    chain = open_chain(tmp_path / "d", uparams)
    blocks = extend(chain, alice.addr, 3)
    op, out = coinbase_coin(blocks[0])
    pay = spend(
        chain, [(op, out)], alice.key, [TxOut(5000, bob.addr), TxOut(out.amount - 6000, alice.addr)]
    )
    chain.accept_block(build_block(chain, chain.tip, alice.addr, [pay], fees=1000))
    history = {a: chain.reader.address_history(a) for a in (alice.addr, bob.addr)}
    coins = {a: chain.reader.address_coins(a) for a in (alice.addr, bob.addr)}
    assert len(history[alice.addr]) == 5 and len(coins[alice.addr]) == 4
    chain.close()

    env = open_lmdb(tmp_path / "d")
    with env.begin(write=True) as txn:  # rewrite it the way schema 1 stored it
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"schema", encode(1), db=meta)
        rewrite_coins_as_schema_3(env, txn)
        txn.put(b"utxostats", encode(decode(txn.get(b"utxostats", db=meta)) + [bytes(32)]), db=meta)
        old_coins = env.open_db(b"addrutxo", txn=txn)
        for addr, items in coins.items():
            for outpoint, _ in items:
                txn.put(addr + outpoint.txid + outpoint.index.to_bytes(4, "big"), b"", db=old_coins)
        hist = env.open_db(b"addrhist", txn=txn)
        records = list(txn.cursor(db=hist))
        txn.drop(hist, delete=False)
        for key, value in records:
            for at in range(0, len(value), ADDR_HIST_ENTRY):
                txn.put(key + value[at : at + ADDR_HIST_ENTRY], b"", db=hist)
    env.close()

    with opened_chain(tmp_path / "d", uparams) as again:
        assert decode(again.reader.db_get("meta", b"schema")) == SCHEMA_VERSION == 5

        for addr in (alice.addr, bob.addr):
            assert again.reader.address_history(addr) == history[addr]
            assert again.reader.address_coins(addr) == coins[addr]
        extend(again, alice.addr, 2)
        assert len(again.reader.address_coins(alice.addr)) == 6
        assert len(again.reader.address_history(alice.addr)) == 7
        assert_matches_replay(again, tmp_path / "replay")
    env = open_lmdb(tmp_path / "d")  # the chain is closed: read the file's named databases
    with env.begin() as txn:
        assert b"addrutxo" not in {key for key, _ in txn.cursor()}
    env.close()


def test_schema_2_datadir_drops_the_stored_digest_and_keeps_its_totals(tmp_path, uparams):
    """Schema 2 kept [count, amount, digest] in meta/utxostats; schema 3 keeps the totals
    and computes the digest from the coins, which gives the same value as before."""
    wallet = Wallet()
    chain = open_chain(tmp_path / "d", uparams)
    extend(chain, wallet.addr, 4)
    before = stats_tuple(chain)
    chain.close()
    env = open_lmdb(tmp_path / "d")
    with env.begin(write=True) as txn:
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"schema", encode(2), db=meta)
        rewrite_coins_as_schema_3(env, txn)
        txn.put(b"utxostats", encode(decode(txn.get(b"utxostats", db=meta)) + [before[2]]), db=meta)
    env.close()
    with opened_chain(tmp_path / "d", uparams) as again:
        assert decode(again.reader.db_get("meta", b"schema")) == SCHEMA_VERSION
        assert decode(again.reader.db_get("meta", b"utxostats")) == list(before[:2])
        assert stats_tuple(again) == before


def test_read_only_open_refuses_an_older_schema_and_reads_the_current_one(tmp_path, uparams):
    """Read-only, the store cannot upgrade: an older datadir is refused with a reason (it
    may lack sub-databases, and its records have the old layout); a current one opens."""
    from node.storage.store import Store, StoreError

    chain = open_chain(tmp_path / "d", uparams)
    extend(chain, Wallet().addr, 2)
    chain.close()
    store = Store(tmp_path / "d", uparams.name, readonly=True)
    store.close()
    env = open_lmdb(tmp_path / "d")
    with env.begin(write=True) as txn:
        txn.put(b"schema", encode(4), db=env.open_db(b"meta", txn=txn))
        txn.drop(env.open_db(b"txrecent", txn=txn), delete=True)
    env.close()
    with pytest.raises(StoreError, match="schema 4, older than 5: open it once read-write"):
        Store(tmp_path / "d", uparams.name, readonly=True)
    again = open_chain(tmp_path / "d", uparams)  # read-write: upgraded, txrecent created
    again.close()
    Store(tmp_path / "d", uparams.name, readonly=True).close()
