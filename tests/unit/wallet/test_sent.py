"""The record of sent transactions (wallet/sent.py): the file, its bounds, the coins it holds."""

from __future__ import annotations

import json
import os
import stat

import pytest
from hypothesis import given
from hypothesis import strategies as st

from node.consensus.params import REGTEST
from node.primitives.crypto import SigningKey
from node.primitives.tx import OutPoint, TxOut, sign_transaction
from wallet.sent import (
    MAX_SENT,
    SentDamagedError,
    SentStore,
    SentTx,
    bounded,
    pending_spends,
)

HEX32 = st.binary(min_size=32, max_size=32).map(bytes.hex)
OUTPOINTS = st.tuples(HEX32, st.integers(0, 2**32 - 1)).map(lambda p: f"{p[0]}:{p[1]}")
RECORDS = st.builds(
    SentTx,
    txid=HEX32,
    raw=st.binary(max_size=40).map(bytes.hex),
    created=st.integers(0, 2**40),
    spends=st.lists(OUTPOINTS, max_size=4).map(tuple),
    acknowledged=st.booleans(),
    confirmations=st.integers(0, 10),
)


def store(tmp_path, cap: int = MAX_SENT) -> SentStore:
    return SentStore(tmp_path / "wallet.sent.json", "regtest", cap)


def test_beside_the_wallet_file(tmp_path):
    assert SentStore.beside(tmp_path / "w.json", "main").path == tmp_path / "w.sent.json"


def test_record_of_a_signed_transaction():
    key = SigningKey.generate()
    prev = OutPoint(bytes(range(32)), 3)
    tx = sign_transaction(1, [(prev, TxOut(10_000, key.address_hash), key)], [], REGTEST.network_id)
    record = SentTx.of(tx, 1700000000)
    assert record.txid == tx.txid.hex() and record.raw == tx.raw.hex()
    assert record.spends == (f"{bytes(range(32)).hex()}:3",)
    assert record.acknowledged is False and record.created == 1700000000


def test_written_private_and_atomically(tmp_path):
    s = store(tmp_path)
    a = SentTx("aa" * 32, "00", 1, ("bb" * 32 + ":0",), False)
    s.add(a)
    assert stat.S_IMODE(os.stat(s.path).st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [s.path.name]  # no temporary file left
    s.acknowledge(a.txid)
    assert s.load()[0].acknowledged is True
    s.remove(a.txid)
    assert s.load() == []


@given(st.lists(RECORDS, max_size=12, unique_by=lambda r: r.txid))
def test_save_then_load_gives_the_records_back_oldest_first(tmp_path_factory, records):
    s = store(tmp_path_factory.mktemp("s"))
    assert s.save(records) == []
    assert s.load() == sorted(records, key=lambda r: r.created)


@given(st.lists(RECORDS, max_size=20), st.integers(0, 10))
def test_bounded_keeps_at_most_the_cap_and_forgets_confirmed_first(records, cap):
    kept, forgotten = bounded(records, cap)
    assert len(kept) == min(cap, len(records))
    assert sorted(map(id, kept + forgotten)) == sorted(map(id, records))
    if any(r.confirmations == 0 for r in forgotten):  # an unconfirmed one only as a last resort
        assert all(r.confirmations == 0 for r in kept)
    assert kept == sorted(kept, key=lambda r: r.created)


def test_a_full_record_forgets_the_oldest_confirmed_one(tmp_path):
    s = store(tmp_path, cap=2)
    old_unconfirmed = SentTx("01" * 32, "00", 1, (), True)
    old_confirmed = SentTx("02" * 32, "00", 2, (), True, confirmations=3)
    s.save([old_unconfirmed, old_confirmed])
    forgotten = s.add(SentTx("03" * 32, "00", 3, (), False))
    assert forgotten == [old_confirmed]
    assert [r.txid for r in s.load()] == ["01" * 32, "03" * 32]


@given(st.lists(RECORDS, max_size=8))
def test_pending_spends_is_every_outpoint_spent(records):
    spent = pending_spends(records)
    for r in records:
        for o in r.spends:
            txid, _, index = o.partition(":")
            assert (txid, int(index)) in spent
    assert len(spent) <= sum(len(r.spends) for r in records)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"format": 2, "network": "regtest", "txs": []}),
        json.dumps({"format": 1, "network": "main", "txs": []}),
        json.dumps({"format": 1, "network": "regtest", "txs": [{"txid": "aa"}]}),
        json.dumps(
            {
                "format": 1,
                "network": "regtest",
                "txs": [{"txid": "a", "raw": "zz", "created": 1, "spends": [], "acknowledged": 1}],
            }
        ),
        json.dumps(
            {
                "format": 1,
                "network": "regtest",
                "txs": [{"txid": "a", "raw": "", "created": 1, "spends": ["x"], "acknowledged": 1}],
            }
        ),
    ],
)
def test_a_damaged_record_is_refused_by_name(tmp_path, text):
    s = store(tmp_path)
    s.path.write_text(text)
    with pytest.raises(SentDamagedError) as err:
        s.load()
    assert err.value.code == "sent-damaged" and str(s.path) in err.value.message
