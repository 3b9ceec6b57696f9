"""obol-wallet end to end: real ``obol-wallet`` subprocesses against a real regtest ``obol-node``.

One daemon for the module; the tests run in file order and build on each
other (create -> mine -> mature -> send -> confirm -> restore -> errors).
Coins for the next block are always mined to a throwaway address, so the
wallets' balances are exact.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from node.consensus.params import REGTEST
from node.primitives.crypto import SigningKey, encode_address
from node.primitives.tx import COIN
from tests.framework.daemon import Daemon
from tests.framework.programs import killed_at_exit, process_env
from tests.framework.util import poll_until
from tests.framework.walletcli import PASSPHRASE, Result, run_wallet, wallet_command, wallet_env

SUBSIDY = REGTEST.initial_subsidy
BURN = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)  # nobody's coins


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("wallet-e2e") / "node").start()
    yield d
    code = d.stop()
    assert code == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("wallet-home")


class W:
    """One wallet file driven through the obol-wallet program."""

    def __init__(self, daemon: Daemon, path, home, network: str = "regtest") -> None:
        self.daemon = daemon
        self.path = path
        self.env = wallet_env(home)
        self.base = [
            "--network",
            network,
            "--node",
            f"http://127.0.0.1:{daemon.api_port}",
            "--wallet",
            str(path),
        ]

    def run(self, *args: str, input: str = "", env: dict | None = None) -> Result:
        return run_wallet(self.base + list(args), env or self.env, input=input)

    def ok(self, *args: str, input: str = ""):
        r = self.run("--json", *args, input=input)
        assert r.code == 0, r
        assert "Traceback" not in r.err, r
        return r.json

    def balance(self) -> dict:
        return self.ok("balance")

    def address(self) -> str:
        return self.ok("address")["address"]


def mine(daemon: Daemon, n: int, to: str = BURN) -> int:
    return daemon.client.ok("POST", "mine", {"blocks": n, "address": to})["height"]


def expect_error(r: Result, code: str) -> str:
    assert r.code == 1, r
    line = r.error_line()
    assert line.startswith(f"obol-wallet: error: {code}: "), line
    if r.out.strip():
        assert json.loads(r.out)["error"]["code"] == code
    return line


STATE: dict = {}


@pytest.fixture(scope="module")
def w1(daemon, home, tmp_path_factory):
    return W(daemon, tmp_path_factory.mktemp("w1") / "wallet.json", home)


@pytest.fixture(scope="module")
def w2(daemon, home, tmp_path_factory):
    return W(daemon, tmp_path_factory.mktemp("w2") / "wallet.json", home)


def test_create_two_wallets(w1, w2):
    for w in (w1, w2):
        doc = w.ok("create", "--words", "12")
        assert len(doc["mnemonic"].split()) == 12
        STATE[w.path] = doc["mnemonic"]
        raw = w.path.read_text()
        assert doc["mnemonic"] not in raw and doc["mnemonic"].split()[0] + " " not in raw
        assert json.loads(raw)["format"] == "obol-keystore"
        assert w.balance() == {"confirmed": 0, "unconfirmed": 0, "immature": 0}
        assert w.ok("history") == {"transactions": []}


def test_mined_coins_are_immature_then_mature(daemon, w1):
    a1 = w1.address()
    assert w1.address() == a1  # unused: the same address again
    mine(daemon, 1, a1)
    assert w1.balance() == {"confirmed": 0, "unconfirmed": 0, "immature": SUBSIDY}
    assert w1.address() != a1  # used now: a new one
    # immature coins cannot be spent; the error says how much is spendable
    line = expect_error(w1.run("--json", "send", BURN, "1", "--yes"), "insufficient-funds")
    assert "spendable 0.00000000" in line and "immature" in line
    mine(daemon, REGTEST.coinbase_maturity - 1)
    assert w1.balance() == {"confirmed": SUBSIDY, "unconfirmed": 0, "immature": 0}
    history = w1.ok("history")["transactions"]
    assert [(t["type"], t["amount"], t["fee"]) for t in history] == [("mined", SUBSIDY, None)]


def test_send_and_send_again_with_unconfirmed_change(daemon, w1, w2):
    to = w2.address()
    first = w1.ok("send", to, "1.25", "--yes")
    assert set(first) == {"txid", "fee"} and first["fee"] > 0
    tx1 = daemon.client.ok("GET", f"tx/{first['txid']}")
    assert tx1["in_mempool"] and tx1["fee"] == first["fee"]
    assert w1.balance() == {
        "confirmed": SUBSIDY,
        "unconfirmed": -(125_000_000 + first["fee"]),
        "immature": 0,
    }
    assert w2.balance() == {"confirmed": 0, "unconfirmed": 125_000_000, "immature": 0}

    # the only confirmed coin is being spent: the second send must use the first one's change
    second = w1.ok("send", w2.address(), "2.5", "--yes")
    tx2 = daemon.client.ok("GET", f"tx/{second['txid']}")
    assert [i["txid"] for i in tx2["inputs"]] == [first["txid"]]
    assert tx2["fee"] == second["fee"] and tx2["fee"] >= tx2["size"]  # at least 1 per byte
    STATE["sent"] = (first, second)

    mine(daemon, 1)
    fees = first["fee"] + second["fee"]
    assert w1.balance() == {
        "confirmed": SUBSIDY - 375_000_000 - fees,
        "unconfirmed": 0,
        "immature": 0,
    }
    assert w2.balance() == {"confirmed": 375_000_000, "unconfirmed": 0, "immature": 0}


def test_history_shows_net_amounts_fees_and_confirmations(w1, w2):
    first, second = STATE["sent"]
    h1 = {t["txid"]: t for t in w1.ok("history")["transactions"]}
    assert h1[first["txid"]]["type"] == "outgoing"
    assert h1[first["txid"]]["amount"] == -(125_000_000 + first["fee"])
    assert h1[first["txid"]]["fee"] == first["fee"]
    assert h1[second["txid"]]["amount"] == -(250_000_000 + second["fee"])
    assert all(t["confirmations"] >= 1 for t in h1.values())
    assert len(h1) == 3  # the coinbase and the two sends
    h2 = w2.ok("history")["transactions"]
    assert sorted((t["type"], t["amount"], t["fee"]) for t in h2) == [
        ("incoming", 125_000_000, None),
        ("incoming", 250_000_000, None),
    ]
    human = w1.run("history")
    assert human.code == 0 and first["txid"] in human.out and "-1.25000" in human.out


def test_addresses_lists_balances(w1):
    rows = w1.ok("addresses")["addresses"]
    assert sum(r["confirmed"] for r in rows) == w1.balance()["confirmed"]
    assert {r["chain"] for r in rows} == {"receive", "change"}
    assert all(r["path"].startswith("m/86'/1'/0'/") for r in rows)


def test_send_asks_for_confirmation(daemon, w1, w2):
    to = w2.address()
    before = daemon.client.ok("GET", "mempool")["count"]
    r = w1.run("send", to, "0.1", input="n\n")
    assert r.code == 1 and "Traceback" not in r.err, r
    assert r.err.splitlines()[-1].startswith("obol-wallet: error: cancelled: "), r
    assert "Send 0.10000000 OBOL to " + to in r.err and "fee" in r.err
    assert daemon.client.ok("GET", "mempool")["count"] == before
    r = w1.run("send", to, "0.1", input="y\n")
    assert r.code == 0, r
    txid = r.out.strip().splitlines()[-1].split()[-1]
    assert daemon.client.ok("GET", f"tx/{txid}")["in_mempool"]
    mine(daemon, 1)


def test_send_wait_shows_progress(daemon, w1, w2):
    to = w2.address()
    command = wallet_command() + w1.base + ["--json", "send", to, "0.2", "--yes", "--wait", "2"]
    with killed_at_exit(
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=process_env(w1.env),
        )
    ) as proc:
        poll_until(
            lambda: daemon.client.ok("GET", "mempool")["count"] == 1 or proc.poll() is not None,
            timeout=30,
            what="the transaction in the mempool",
        )
        assert proc.poll() is None, proc.communicate()
        mine(daemon, 1)
        mine(daemon, 1)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert set(doc) == {"txid", "fee"}
    assert "confirmations: 2/2" in err
    assert daemon.client.ok("GET", f"tx/{doc['txid']}")["confirmations"] == 2


def test_restore_finds_the_same_coins(w1, w2, tmp_path_factory):
    docs = {}
    for w in (w1, w2):
        restored = W(
            w.daemon,
            tmp_path_factory.mktemp("restored") / "wallet.json",
            tmp_path_factory.mktemp("home2"),
        )
        doc = docs[w] = restored.ok("restore", input=STATE[w.path] + "\n")
        assert doc["scanned"] is True
        assert restored.balance() == w.balance()
        assert restored.address() == w.address()  # the same next unused address
        got = {t["txid"] for t in restored.ok("history")["transactions"]}
        assert got == {t["txid"] for t in w.ok("history")["transactions"]}
    # w1 mined to receive address 0 and kept its coins in 4 change addresses since
    assert (docs[w1]["next_receive_index"], docs[w1]["next_change_index"]) == (1, 4)
    assert docs[w2]["next_change_index"] == 0 and docs[w2]["next_receive_index"] == 4


def test_errors_against_the_node(daemon, w1, w2, home, tmp_path_factory):
    to = w1.address()
    spendable = w2.balance()["confirmed"]
    line = expect_error(w2.run("--json", "send", to, "1000", "--yes"), "insufficient-funds")
    assert f"spendable {spendable // COIN}.{spendable % COIN:08d}" in line

    line = expect_error(
        w2.run("--json", "send", to, "0.5", "--fee-rate", "0", "--yes"), "tx-rejected"
    )
    assert "min-fee-not-met" in line

    # wrong passphrase, invalid and other network's addresses, bad amounts
    expect_error(
        w1.run("--json", "balance", env={**w1.env, "OBOL_WALLET_PASSPHRASE": "nope"}),
        "wrong-passphrase",
    )
    expect_error(w1.run("--json", "send", "robol1notanaddress", "1", "--yes"), "bad-address")
    main_addr = encode_address("obol", SigningKey.generate().address_hash)
    expect_error(w1.run("send", main_addr, "1", "--yes"), "wrong-network")
    for amount in ("x", "0", "-2", "0.000000001"):
        expect_error(w1.run("--json", "send", to, amount, "--yes"), "bad-amount")

    # a main-network wallet pointed at this regtest node
    mainnet = W(daemon, tmp_path_factory.mktemp("main") / "wallet.json", home, network="main")
    line = expect_error(mainnet.run("create"), "bad-option")  # a weak test KDF: never on main
    assert "OBOL_WALLET_KDF_N" in line and not mainnet.path.exists()
    del mainnet.env["OBOL_WALLET_KDF_N"]  # the full-strength file of a real network
    assert mainnet.run("create").code == 0
    line = expect_error(mainnet.run("--json", "balance"), "node-wrong-network")
    assert "regtest" in line and f"127.0.0.1:{daemon.api_port}" in line

    # nobody listening
    gone = W(daemon, w1.path, home)
    gone.base[3] = "http://127.0.0.1:9"
    line = expect_error(gone.run("balance"), "node-unreachable")
    assert "http://127.0.0.1:9" in line


def test_keystore_never_holds_secrets_in_the_clear(w1, w2):
    from wallet.keys import KeyChain, mnemonic_to_seed

    for w in (w1, w2):
        mnemonic = STATE[w.path]
        raw = w.path.read_text()
        chain = KeyChain.for_network(mnemonic_to_seed(mnemonic), "regtest")
        secrets = [mnemonic, mnemonic_to_seed(mnemonic).hex(), PASSPHRASE]
        secrets += [chain.key(c, i).secret.hex() for c in (0, 1) for i in range(5)]
        for secret in secrets:
            assert secret not in raw
        assert set(json.loads(raw)) == {"format", "version", "kdf", "cipher", "ciphertext"}


def test_send_wait_gives_up_after_its_timeout(daemon, w1, w2):
    """Nothing mines: --wait 1 --wait-timeout 2 stops after about two seconds with
    wait-timeout, and the transaction it sent stays in the node's mempool.  (Last in the
    module: its send uses another change address, which the restore test counts.)"""
    r = w1.run("send", w2.address(), "0.1", "--yes", "--wait", "1", "--wait-timeout", "2")
    assert r.code == 1, r
    assert r.err.splitlines()[-1].startswith(
        "obol-wallet: error: wait-timeout: 0/1 confirmations"
    ), r
    txid = r.out.strip().splitlines()[-1].split()[-1]
    assert daemon.client.ok("GET", f"tx/{txid}")["in_mempool"]
    r = w1.run("send", w2.address(), "0.1", "--yes", "--wait", "1", "--wait-timeout", "0")
    assert r.code == 1 and "bad-option: --wait-timeout must be at least 1" in r.err, r
    mine(daemon, 1)


def test_send_refuses_a_fee_above_the_cap(daemon, w1, w2):
    """A fee rate that makes the fee larger than the cap (0.1 coin by default, as Bitcoin
    Core's -maxtxfee) is refused before anything is sent, whoever chose the rate; the cap
    moves with --max-fee or OBOL_WALLET_MAX_FEE."""
    to = w2.address()
    before = daemon.client.ok("GET", "mempool")["count"]
    r = w1.run("send", to, "0.1", "--yes", "--fee-rate", "100000")  # ~0.2 coin of fee
    assert r.code == 1, r
    assert r.err.splitlines()[-1].startswith("obol-wallet: error: max-fee-exceeded: "), r
    assert "above the cap of 0.10000000" in r.err, r
    env = {**w1.env, "OBOL_WALLET_MAX_FEE": "0.00000001"}
    r = w1.run("send", to, "0.1", "--yes", env=env)  # the node's rate, over a 1-unit cap
    assert "max-fee-exceeded" in r.err, r
    r = w1.run("send", to, "0.1", "--yes", "--max-fee", "nope")
    assert "bad-option: --max-fee: " in r.err, r
    assert daemon.client.ok("GET", "mempool")["count"] == before
    r = w1.run("send", to, "0.1", "--yes", "--fee-rate", "100000", "--max-fee", "1")
    assert r.code == 0, r
    assert daemon.client.ok("GET", "mempool")["count"] == before + 1
    mine(daemon, 1)
