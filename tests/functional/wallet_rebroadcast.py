"""The wallet keeps what it sent and puts it back (issue 16's "no acknowledged, non-conflicting
transaction is lost"): real ``obol-wallet`` subprocesses against one real regtest ``obol-node``
with no peers, so nothing it accepts is relayed anywhere.

The node is killed with SIGKILL (it saves its mempool only on a clean stop) and started
again with an empty mempool; the wallet's next command resubmits the payment, which is then
mined.  A payment whose coins another copy of the wallet spent in a mined block is dropped
as conflicted.  The tests run in file order and build on each other.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

import pytest

from node.consensus.params import REGTEST
from node.primitives.crypto import SigningKey, encode_address
from tests.framework.daemon import Daemon
from tests.framework.programs import free_port
from tests.framework.walletcli import PASSPHRASE, Result, run_wallet, wallet_env
from wallet.client import NodeClient, NodeUnreachableError
from wallet.keystore import Keystore
from wallet.sent import SentStore
from wallet.service import WalletService

BURN = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)  # nobody's coins
DEPTH = 6  # wallet.sent.CONFIRMED_DEPTH, as the documentation promises it


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("rebroadcast") / "node").start()
    yield d
    code = d.stop()
    assert code == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


class W:
    """One wallet file driven through the obol-wallet program, at the daemon's current port."""

    def __init__(self, daemon: Daemon, path, home) -> None:
        self.daemon = daemon
        self.path = path
        self.env = wallet_env(home)

    @property
    def record(self):
        return self.path.with_name(self.path.stem + ".sent.json")

    def run(self, *args: str) -> Result:
        base = ["--network", "regtest", "--node", f"http://127.0.0.1:{self.daemon.api_port}"]
        return run_wallet([*base, "--wallet", str(self.path), "--json", *args], self.env)

    def ok(self, *args: str) -> tuple[dict, str]:
        r = self.run(*args)
        assert r.code == 0, r
        assert "Traceback" not in r.err, r
        return r.json, r.err

    def kept(self) -> list[str]:
        if not self.record.exists():
            return []
        return [t["txid"] for t in json.loads(self.record.read_text())["txs"]]


@pytest.fixture(scope="module")
def w(daemon, tmp_path_factory):
    return W(daemon, tmp_path_factory.mktemp("w") / "wallet.json", tmp_path_factory.mktemp("h"))


def mine(daemon: Daemon, n: int, to: str = BURN) -> None:
    daemon.client.ok("POST", "mine", {"blocks": n, "address": to})


def crash_and_restart(daemon: Daemon) -> None:
    """SIGKILL, then start again on the same datadir: the mempool is empty."""
    daemon.kill()
    daemon.start()
    assert daemon.client.ok("GET", "mempool")["count"] == 0


def known(daemon: Daemon, txid: str) -> dict | None:
    r = daemon.client.get(f"tx/{txid}")
    return r.json if r.status == 200 else None


def test_a_lost_payment_is_resubmitted_by_the_next_command(daemon, w):
    w.ok("create", "--words", "12")
    mine(daemon, 1, w.ok("address")[0]["address"])
    mine(daemon, REGTEST.coinbase_maturity)
    sent, _ = w.ok("send", BURN, "1.5", "--yes")
    txid = sent["txid"]
    assert w.kept() == [txid]
    assert stat.S_IMODE(os.stat(w.record).st_mode) == 0o600
    doc = json.loads(w.record.read_text())["txs"][0]
    assert doc["acknowledged"] is True and doc["raw"] == known(daemon, txid)["hex"]

    crash_and_restart(daemon)
    assert known(daemon, txid) is None  # lost with the node's mempool

    balance, err = w.ok("balance")
    assert f"sent tx {txid}: RESUBMITTED" in err
    assert known(daemon, txid)["in_mempool"]
    assert balance["unconfirmed"] == -(150_000_000 + sent["fee"])  # counted once
    mine(daemon, 1)
    assert known(daemon, txid)["confirmations"] == 1


def test_rebroadcast_reports_and_forgets_once_deep(daemon, w):
    txid = w.kept()[0]
    doc, _ = w.ok("rebroadcast")
    assert doc["transactions"] == [
        {"txid": txid, "action": "confirmed", "detail": "1 confirmations"}
    ]
    assert doc["resubmitted"] == 0 and doc["kept"] == 1
    mine(daemon, DEPTH - 1)
    doc, _ = w.ok("rebroadcast")
    assert [t["action"] for t in doc["transactions"]] == ["forgotten-confirmed"]
    assert w.kept() == []
    doc, _ = w.ok("rebroadcast")
    assert doc == {"transactions": [], "resubmitted": 0, "kept": 0}


def test_a_payment_whose_coins_were_spent_in_a_block_is_dropped(daemon, w, tmp_path_factory):
    # the same wallet elsewhere, without this copy's record of what it sent
    elsewhere = W(daemon, tmp_path_factory.mktemp("copy") / "wallet.json", w.env["HOME"])
    shutil.copy(w.path, elsewhere.path)
    first, _ = w.ok("send", BURN, "2", "--yes")
    crash_and_restart(daemon)
    other, _ = elsewhere.ok("send", BURN, "3", "--yes")  # the same only coin, spent again
    mine(daemon, 1)
    assert known(daemon, other["txid"])["confirmations"] == 1
    assert w.kept() == [first["txid"]]

    doc, _ = w.ok("rebroadcast")
    [row] = doc["transactions"]
    assert row["action"] == "conflicted", row
    assert "spent by another transaction in the chain" in row["detail"]
    assert w.kept() == [] and known(daemon, first["txid"]) is None


def test_a_send_never_spends_the_coins_of_a_kept_payment(daemon, w):
    # a kept payment the node refuses for a reason that is no conflict (here: bytes it
    # cannot decode) still holds its coins: the wallet will try it again
    [coin] = [u for a in w.ok("addresses")[0]["addresses"] for u in [a] if a["confirmed"]]
    utxos = daemon.client.ok("GET", f"address/{coin['address']}")["utxos"]
    spends = [f"{u['txid']}:{u['index']}" for u in utxos]
    fake = {"txid": "ab" * 32, "raw": "00", "created": 1, "spends": spends, "acknowledged": True}
    w.record.write_text(json.dumps({"format": 1, "network": "regtest", "txs": [fake]}))
    r = w.run("send", BURN, "1", "--yes")
    assert r.code == 1 and '"insufficient-funds"' in r.out, r
    assert "refused by the node, kept" in r.err
    assert w.kept() == [fake["txid"]]
    w.record.unlink()
    sent, _ = w.ok("send", BURN, "1", "--yes")  # without the record the coin is spendable
    assert known(daemon, sent["txid"])["in_mempool"]


def test_a_send_whose_answer_never_came_is_kept_then_resubmitted(daemon, w):
    # the record is written before POST /tx: here the node the send goes to is not there
    # (a closed port), as if the wallet died between the two
    service = WalletService(
        Keystore.open(w.path, PASSPHRASE),
        NodeClient(f"http://127.0.0.1:{daemon.api_port}"),
        REGTEST,
        sent=SentStore.beside(w.path, "regtest"),
    )
    plan = service.plan_send(BURN, 50_000_000)
    service.client = NodeClient(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NodeUnreachableError):
        service.broadcast(plan)
    txid = plan.tx.txid.hex()
    [record] = [r for r in SentStore.beside(w.path, "regtest").load() if r.txid == txid]
    assert record.acknowledged is False and known(daemon, txid) is None

    doc, _ = w.ok("rebroadcast")
    assert {"txid": txid, "action": "resubmitted"}.items() <= doc["transactions"][-1].items()
    assert known(daemon, txid)["in_mempool"]
    assert all(r.acknowledged for r in SentStore.beside(w.path, "regtest").load())
