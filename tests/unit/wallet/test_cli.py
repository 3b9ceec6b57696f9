"""obol-wallet without a real node: arguments, errors, keystore files, messages, amounts.

Commands run in-process through ``wallet.cli.main`` (fast); a few fake HTTP
servers on 127.0.0.1 stand in for nodes that answer wrongly.  The flows
against a real node are in test_wallet_e2e.py.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from mnemonic import Mnemonic

from node.primitives.crypto import SigningKey, encode_address
from node.primitives.tx import COIN
from tests.framework.programs import free_port
from tests.framework.walletcli import PASSPHRASE, Result, call_wallet, wallet_env
from wallet.cli import main
from wallet.keys import KeyChain, mnemonic_to_seed
from wallet.service import format_amount, parse_amount

REG = ["--network", "regtest"]


@pytest.fixture
def env(tmp_path):
    return wallet_env(tmp_path / "home")


@pytest.fixture
def wallet(tmp_path, env):
    """A regtest wallet: (path, mnemonic, first receive address)."""
    path = tmp_path / "w.json"
    r = call_wallet(REG + ["--wallet", str(path), "--json", "create", "--words", "12"], env)
    assert r.code == 0, r
    doc = r.json
    return path, doc["mnemonic"], doc["address"]


def run(args, env, input="") -> Result:
    return call_wallet(args, env, input)


def expect_error(r: Result, code: str, *, exit_code: int = 1, json_mode: bool = False) -> str:
    assert r.code == exit_code, r
    line = r.error_line()
    assert line.startswith(f"obol-wallet: error: {code}: "), line
    if json_mode:
        body = json.loads(r.out)
        assert body == {"error": {"code": code, "message": body["error"]["message"]}}, body
        assert body["error"]["message"] in line
    return line


# --- amounts -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, units",
    [
        ("1", COIN),
        ("1.25", 125_000_000),
        ("0.00000001", 1),
        ("21000000", 21_000_000 * COIN),
        (".5", 50_000_000),
        ("2.", 2 * COIN),
        (" 3.10 ", 310_000_000),
        ("0.123456780", 12_345_678),
    ],
)
def test_parse_amount(text, units):
    assert parse_amount(text) == units


@pytest.mark.parametrize(
    "text, words",
    [
        ("abc", "not a number"),
        ("", "not a number"),
        ("1e5", "not a number"),
        ("nan", "not a number"),
        ("inf", "not a number"),
        ("1,5", "not a number"),
        ("0x10", "not a number"),
        ("0", "zero"),
        ("0.000000000", "zero"),
        ("-1", "negative"),
        ("-0.5", "negative"),
        ("1.123456789", "more than 8 decimals"),
        ("0.000000001", "more than 8 decimals"),
        ("21000000.00000001", "more than can ever exist"),
    ],
)
def test_parse_amount_errors(text, words):
    from wallet.service import BadAmountError

    with pytest.raises(BadAmountError) as info:
        parse_amount(text)
    assert info.value.code == "bad-amount" and words in info.value.message


def test_format_amount():
    assert format_amount(125_000_000) == "1.25000000"
    assert format_amount(-100_000_209) == "-1.00000209"
    assert format_amount(0) == "0.00000000"


# --- usage -----------------------------------------------------------------------------


def test_usage_errors_are_one_line(env):
    expect_error(run([], env), "usage", exit_code=2)
    expect_error(run(["bogus"], env), "usage", exit_code=2)
    expect_error(run(["send", "--json"], env), "usage", exit_code=2, json_mode=True)
    expect_error(run(["--json", "send", "robol1x"], env), "usage", exit_code=2, json_mode=True)


def test_help_exits_zero(env, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"], env=env)
    assert info.value.code == 0
    assert "send" in capsys.readouterr().out


def test_unknown_network(env):
    expect_error(run(["--network", "moon", "balance"], env), "unknown-network")


# --- create and the keystore file ----------------------------------------------------------


def test_create_shows_the_words_once_with_a_warning(tmp_path, env):
    path = tmp_path / "w.json"
    r = run(REG + ["--wallet", str(path), "create"], env)
    assert r.code == 0, r
    assert "WARNING: write these words down" in r.out
    assert "shown only this once" in r.out
    numbered = [tok for tok in r.out.split() if tok.endswith(".") and tok[:-1].isdigit()]
    assert numbered == [f"{n}." for n in range(1, 25)]  # 24 words by default
    assert r.out.strip().splitlines()[-1].startswith("Receive address: robol1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_create_json_and_the_file_holds_no_secret(wallet, env):
    path, mnemonic, address = wallet
    assert len(mnemonic.split()) == 12
    chain = KeyChain.for_network(mnemonic_to_seed(mnemonic), "regtest")
    assert chain.address(0, 0) == address
    raw = path.read_text()
    doc = json.loads(raw)
    assert set(doc) == {"format", "version", "kdf", "cipher", "ciphertext"}
    assert doc["kdf"]["n"] == 1024
    seed = mnemonic_to_seed(mnemonic)
    for secret in [
        mnemonic,
        " ".join(mnemonic.split()[:3]),
        seed.hex(),
        mnemonic.encode().hex(),
        chain.key(0, 0).secret.hex(),
        chain.key(1, 0).secret.hex(),
        PASSPHRASE,
    ]:
        assert secret not in raw
    # no word of the phrase as a JSON value or a word of one (field names such as
    # "ciphertext" may contain a word by chance: "text" is one of BIP-39's)
    values: list[str] = []
    todo: list[object] = [doc]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo.extend(item.values())
        elif isinstance(item, str):
            values.append(item)
    words = set(mnemonic.split())
    for value in values:
        assert not words & set(value.split()), value


def test_create_refuses_to_overwrite(wallet, env):
    path, _, _ = wallet
    before = path.read_bytes()
    r = run(REG + ["--wallet", str(path), "create"], env)
    expect_error(r, "keystore-exists")
    assert path.read_bytes() == before


def test_create_word_counts(tmp_path, env):
    expect_error(
        run(REG + ["--wallet", str(tmp_path / "a"), "create", "--words", "13"], env), "bad-option"
    )
    r = run(REG + ["--wallet", str(tmp_path / "b"), "--json", "create", "--words", "24"], env)
    assert r.code == 0 and len(r.json["mnemonic"].split()) == 24


def test_default_wallet_path_is_under_home(tmp_path, env):
    r = run(REG + ["--json", "create"], env)
    assert r.code == 0, r
    path = tmp_path / "home" / ".obol" / "regtest" / "wallet.json"
    assert r.json["wallet"] == str(path) and path.exists()
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    # the wallet knows its network: no --network needed afterwards
    r2 = run(["--wallet", str(path), "--json", "address", "--offline"], env)
    assert r2.json == {"address": r.json["address"]}


def test_kdf_n_override_must_be_valid(tmp_path, env):
    r = run(REG + ["--wallet", str(tmp_path / "w"), "create"], {**env, "OBOL_WALLET_KDF_N": "1000"})
    expect_error(r, "bad-option")
    r = run(REG + ["--wallet", str(tmp_path / "w"), "create"], {**env, "OBOL_WALLET_KDF_N": "x"})
    expect_error(r, "bad-option")


# --- passphrases ------------------------------------------------------------------------------


def test_passphrase_sources(wallet, tmp_path, env):
    path, _, address = wallet
    args = REG + ["--wallet", str(path), "--json", "address", "--offline"]
    no_env = {k: v for k, v in env.items() if k != "OBOL_WALLET_PASSPHRASE"}
    expect_error(run(args, no_env), "passphrase-required", json_mode=True)
    pfile = tmp_path / "pass.txt"
    pfile.write_text(PASSPHRASE + "\n")
    r = run(args + ["--passphrase-file", str(pfile)], no_env)
    assert r.code == 0 and r.json == {"address": address}, r
    # the file wins over the environment
    r = run(["--passphrase-file", str(pfile)] + args, {**env, "OBOL_WALLET_PASSPHRASE": "other"})
    assert r.code == 0, r
    expect_error(
        run(args + ["--passphrase-file", str(tmp_path / "missing")], no_env), "bad-passphrase-file"
    )


def test_wrong_passphrase(wallet, env):
    path, _, _ = wallet
    r = run(
        REG + ["--wallet", str(path), "--json", "balance"],
        {**env, "OBOL_WALLET_PASSPHRASE": "wrong"},
    )
    line = expect_error(r, "wrong-passphrase", json_mode=True)
    assert "passphrase is wrong" in line


def test_empty_passphrase_refused_on_create(tmp_path, env):
    r = run(
        REG + ["--wallet", str(tmp_path / "w"), "create"], {**env, "OBOL_WALLET_PASSPHRASE": ""}
    )
    expect_error(r, "empty-passphrase")
    assert not (tmp_path / "w").exists()


def test_missing_wallet_and_network_mismatch(wallet, tmp_path, env):
    path, _, _ = wallet
    expect_error(run(REG + ["--wallet", str(tmp_path / "none.json"), "balance"], env), "no-wallet")
    line = expect_error(
        run(["--network", "main", "--wallet", str(path), "balance"], env), "wallet-network-mismatch"
    )
    assert "regtest" in line


# --- addresses offline ------------------------------------------------------------------------


def test_address_offline_and_new(wallet, env):
    path, mnemonic, first = wallet
    chain = KeyChain.for_network(mnemonic_to_seed(mnemonic), "regtest")
    base = REG + ["--wallet", str(path), "--json"]
    assert run(base + ["address", "--offline"], env).json == {"address": first}
    assert run(base + ["address", "--offline"], env).json == {"address": first}
    second = run(base + ["address", "--new", "--offline"], env).json["address"]
    assert second == chain.address(0, 1)
    assert run(base + ["address", "--offline"], env).json == {"address": second}
    r = run(REG + ["--wallet", str(path), "address", "--offline"], env)
    assert r.out.strip() == second


# --- restore offline ---------------------------------------------------------------------------


def test_restore_offline(wallet, tmp_path, env):
    _, mnemonic, first = wallet
    new = tmp_path / "restored.json"
    r = run(
        REG + ["--wallet", str(new), "--json", "restore", "--offline"],
        env,
        input="  " + mnemonic.upper().replace(" ", "\n  ") + "\n",
    )
    assert r.code == 0, r
    assert r.json["address"] == first and r.json["scanned"] is False
    # a mistyped word: the first word of the list that breaks the checksum (swapping two
    # words would not do: a 12-word phrase has a 4-bit checksum, 1 swap in 16 still passes)
    words = mnemonic.split()
    english = Mnemonic("english")
    bad = next(
        words[:-1] + [w] for w in english.wordlist if not english.check(" ".join(words[:-1] + [w]))
    )
    r = run(
        REG + ["--wallet", str(tmp_path / "x.json"), "restore", "--offline"],
        env,
        input=" ".join(bad),
    )
    expect_error(r, "bad-mnemonic")
    r = run(
        REG + ["--wallet", str(tmp_path / "y.json"), "restore", "--offline"],
        env,
        input="hello world",
    )
    expect_error(r, "bad-mnemonic")
    assert not (tmp_path / "y.json").exists()


def test_bip39_passphrase_extends_the_words(tmp_path, env):
    """create --bip39-passphrase-file: the words with that BIP-39 passphrase are the wallet;
    restoring them with it gives the same addresses, without it (or with another) another
    wallet; the wallet file stays encrypted with the wallet passphrase as before."""
    secret = tmp_path / "bip39.txt"
    secret.write_text("correct horse battery staple\nignored second line\n")
    r = run(
        REG
        + [
            "--wallet",
            str(tmp_path / "w.json"),
            "--json",
            "create",
            "--words",
            "12",
            "--bip39-passphrase-file",
            str(secret),
        ],
        env,
    )
    assert r.code == 0, r
    words, first = r.json["mnemonic"], r.json["address"]
    assert r.json["bip39_passphrase"] is True
    seed = mnemonic_to_seed(words, "correct horse battery staple")
    assert first == KeyChain.for_network(seed, "regtest").address(0, 0)
    assert "correct horse" not in (tmp_path / "w.json").read_text()
    human = run(
        REG
        + ["--wallet", str(tmp_path / "h.json"), "create", "--bip39-passphrase-file", str(secret)],
        env,
    )
    assert human.code == 0 and "BIP-39 passphrase" in human.out, human

    def restore(name, *extra):
        return run(
            REG + ["--wallet", str(tmp_path / name), "--json", "restore", "--offline", *extra],
            env,
            input=words,
        )

    assert restore("same.json", "--bip39-passphrase-file", str(secret)).json["address"] == first
    assert restore("none.json").json["address"] not in (first, None)
    other = tmp_path / "other.txt"
    other.write_text("correct horse battery stapler")
    assert restore("other.json", "--bip39-passphrase-file", str(other)).json["address"] != first
    expect_error(
        restore("missing.json", "--bip39-passphrase-file", str(tmp_path / "nope")),
        "bad-passphrase-file",
    )
    assert not (tmp_path / "missing.json").exists()


# --- keys and messages ----------------------------------------------------------------------------


def test_export_address_key(wallet, env):
    path, mnemonic, first = wallet
    chain = KeyChain.for_network(mnemonic_to_seed(mnemonic), "regtest")
    r = run(REG + ["--wallet", str(path), "--json", "export-address-key", first], env)
    assert r.json == {
        "address": first,
        "private_key": chain.key(0, 0).secret.hex(),
        "public_key": chain.key(0, 0).pubkey.hex(),
        "path": "m/86'/1'/0'/0/0",
    }
    change = chain.address(1, 3)  # within the gap limit: still the wallet's
    r = run(REG + ["--wallet", str(path), "--json", "export-address-key", change], env)
    assert r.json["path"] == "m/86'/1'/0'/1/3"
    human = run(REG + ["--wallet", str(path), "export-address-key", first], env)
    assert "WARNING" in human.out and chain.key(0, 0).secret.hex() in human.out
    other = encode_address("robol", SigningKey.generate().address_hash)
    expect_error(run(REG + ["--wallet", str(path), "export-address-key", other], env), "not-mine")
    expect_error(
        run(REG + ["--wallet", str(path), "export-address-key", "robol1zzz"], env), "bad-address"
    )


def test_sign_and_verify_message(wallet, env):
    path, mnemonic, first = wallet
    r = run(REG + ["--wallet", str(path), "--json", "sign-message", first, "héllo wörld"], env)
    assert r.code == 0, r
    sig = r.json["signature"]
    assert len(sig) == 192
    chain = KeyChain.for_network(mnemonic_to_seed(mnemonic), "regtest")
    assert sig[:64] == chain.key(0, 0).pubkey.hex()
    human = run(REG + ["--wallet", str(path), "sign-message", first, "héllo wörld"], env)
    assert len(human.out.strip()) == 192

    no_wallet = {k: v for k, v in env.items() if k != "OBOL_WALLET_PASSPHRASE"}
    ok = run(["--json", "verify-message", first, sig, "héllo wörld"], no_wallet)
    assert ok.code == 0 and ok.json["valid"] is True, ok
    assert (
        run(["verify-message", first, sig, "héllo wörld"], no_wallet).out.strip()
        == "signature is valid"
    )
    bad = run(["--json", "verify-message", first, sig, "hello world"], no_wallet)
    assert bad.code == 1 and bad.json["valid"] is False
    second = chain.address(0, 1)
    other = run(["--json", "verify-message", second, sig, "héllo wörld"], no_wallet)
    assert other.code == 1 and "not the key of this address" in other.json["reason"]
    flipped = sig[:-2] + ("00" if sig[-2:] != "00" else "01")
    assert run(["verify-message", first, flipped, "héllo wörld"], no_wallet).code == 1
    expect_error(run(["verify-message", first, "abcd", "x"], no_wallet), "bad-signature")
    expect_error(run(["verify-message", first, "zz" * 96, "x"], no_wallet), "bad-signature")
    expect_error(
        run(["--network", "main", "verify-message", first, sig, "x"], no_wallet), "wrong-network"
    )
    other_key = encode_address("robol", SigningKey.generate().address_hash)
    expect_error(
        run(REG + ["--wallet", str(path), "sign-message", other_key, "x"], env), "not-mine"
    )


# --- send input checks (before any node is asked) ----------------------------------------------


@pytest.mark.parametrize(
    "amount, words",
    [("abc", "not a number"), ("0", "zero"), ("-1", "negative"), ("1.123456789", "8 decimals")],
)
def test_send_rejects_bad_amounts(wallet, env, amount, words):
    path, _, first = wallet
    r = run(REG + ["--wallet", str(path), "--json", "send", first, amount, "--yes"], env)
    line = expect_error(r, "bad-amount", json_mode=True)
    assert words in line


def test_send_rejects_bad_addresses(wallet, env):
    path, _, _ = wallet
    base = REG + ["--wallet", str(path), "--json", "send"]
    expect_error(run(base + ["nonsense", "1", "--yes"], env), "bad-address", json_mode=True)
    addr = encode_address("robol", SigningKey.generate().address_hash)
    typo = addr[:-1] + ("q" if addr[-1] != "q" else "p")
    expect_error(run(base + [typo, "1", "--yes"], env), "bad-address", json_mode=True)
    main_addr = encode_address("obol", SigningKey.generate().address_hash)
    line = expect_error(run(base + [main_addr, "1", "--yes"], env), "wrong-network", json_mode=True)
    assert "obol" in line
    expect_error(run(base + [addr, "1", "--fee-rate", "-3", "--yes"], env), "bad-fee-rate")
    expect_error(run(base + [addr, "1", "--fee-rate", "1.5", "--yes"], env), "bad-fee-rate")


# --- unreachable and foreign nodes ----------------------------------------------------------------


def test_node_unreachable_names_the_url(wallet, env):
    path, _, _ = wallet
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["balance"], ["address"], ["history"], ["send", wallet[2], "1", "--yes"]):
        r = run(REG + ["--wallet", str(path), "--node", url, "--json"] + command, env)
        line = expect_error(r, "node-unreachable", json_mode=True)
        assert url in line


def test_bad_node_url(wallet, env):
    path, _, _ = wallet
    expect_error(
        run(REG + ["--wallet", str(path), "--node", "ftp://x", "balance"], env), "bad-node-url"
    )


class _FakeNode:
    """An HTTP server on 127.0.0.1 answering every GET with one fixed body."""

    def __init__(self, status: int, body: bytes, content_type: str = "application/json"):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(outer.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(outer.body)))
                self.end_headers()
                self.wfile.write(outer.body)

            def log_message(self, *args):
                pass

        self.status, self.body = status, body
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_node_on_another_network(wallet, env):
    path, _, _ = wallet
    with _FakeNode(200, json.dumps({"network": "testnet", "height": 5}).encode()) as node:
        r = run(REG + ["--wallet", str(path), "--node", node.url, "--json", "balance"], env)
        line = expect_error(r, "node-wrong-network", json_mode=True)
        assert "testnet" in line and "regtest" in line and node.url in line


def test_node_answering_garbage(wallet, env):
    path, _, _ = wallet
    with _FakeNode(404, b"<html>nope</html>", "text/html") as node:
        r = run(REG + ["--wallet", str(path), "--node", node.url, "balance"], env)
        expect_error(r, "node-bad-response")


# --- scans and spendable outputs, against an in-memory node --------------------------------------


class _MemoryNode:
    """Stands in for NodeClient: per-address history and unspent outputs, transactions by id."""

    def __init__(self):
        self.history_of: dict[str, list[dict]] = {}
        self.utxos_of: dict[str, list[dict]] = {}
        self.txs: dict[str, dict] = {}
        self.asked: list[str] = []

    def pay(
        self,
        address: str,
        txid: str,
        amount: int,
        *,
        confirmations: int = 6,
        coinbase: bool = False,
        mature: bool = True,
        spent_by: str | None = None,
        inputs: list[str] = (),
    ):
        self.history_of.setdefault(address, []).append({"txid": txid})
        self.utxos_of.setdefault(address, []).append(
            {
                "txid": txid,
                "index": 0,
                "amount": amount,
                "confirmations": confirmations,
                "height": None if confirmations == 0 else 1,
                "coinbase": coinbase,
                "mature": mature,
                "spent_by": spent_by,
            }
        )
        self.txs[txid] = {
            "txid": txid,
            "coinbase": coinbase,
            "inputs": [{"address": a} for a in inputs],
        }

    def address_used(self, address):
        self.asked.append(address)
        return bool(self.history_of.get(address))

    def address(self, address):
        utxos = self.utxos_of.get(address, [])
        confirmed = sum(u["amount"] for u in utxos if u["confirmations"])
        immature = sum(u["amount"] for u in utxos if u["confirmations"] and not u["mature"])
        unconfirmed = sum(u["amount"] for u in utxos if not u["confirmations"])
        return {
            "balance": {"confirmed": confirmed, "unconfirmed": unconfirmed, "immature": immature},
            "utxos": utxos,
        }

    def tx(self, txid):
        return self.txs.get(txid)


@pytest.fixture
def service(wallet, env):
    from node.consensus.params import REGTEST
    from wallet.keystore import Keystore
    from wallet.service import WalletService

    path, _, _ = wallet
    return WalletService(Keystore.open(path, PASSPHRASE), _MemoryNode(), REGTEST)


def test_gap_limit_scan_finds_used_addresses_and_moves_the_indices(service):
    from wallet.service import GAP_LIMIT, discover

    chain, node = service.keychain, service.client
    node.pay(chain.address(0, 19), "aa" * 32, 5)  # within 20 of the last used (none)
    node.pay(chain.address(0, 39), "bb" * 32, 7)  # within 20 of index 19
    node.pay(chain.address(0, 60), "cc" * 32, 11)  # 20 unused before it: not found
    node.pay(chain.address(1, 2), "dd" * 32, 13)
    assert discover(chain, node) == {0: 40, 1: 3}
    scan = service.scan()
    assert scan.confirmed == 5 + 7 + 13
    assert service.keystore.next_receive_index == 40 and service.keystore.next_change_index == 3
    assert [a.index for a in scan.addresses if a.change == 0][-1] == 39 + GAP_LIMIT
    # saved: a fresh open sees the moved indices
    from wallet.keystore import Keystore

    again = Keystore.open(service.keystore.path, PASSPHRASE)
    assert (again.next_receive_index, again.next_change_index) == (40, 3)
    assert service.current_address(check=False) == chain.address(0, 40)


def test_spendable_outputs(service):
    chain, node = service.keychain, service.client
    mine_a, mine_b, change = chain.address(0, 0), chain.address(0, 1), chain.address(1, 0)
    stranger = encode_address("robol", SigningKey.generate().address_hash)
    node.pay(mine_a, "01" * 32, 100_000, confirmations=3)  # spendable
    node.pay(mine_a, "02" * 32, 200_000, coinbase=True, mature=False)  # immature
    node.pay(mine_a, "03" * 32, 300_000, spent_by="ff" * 32)  # being spent
    node.pay(change, "04" * 32, 400_000, confirmations=0, inputs=[mine_a])  # own change
    node.pay(mine_b, "05" * 32, 500_000, confirmations=0, inputs=[stranger])  # someone else's
    scan = service.scan()
    coins, unconfirmed = service.spendable(scan)
    assert sorted(c.amount for c in coins) == [100_000, 400_000] and unconfirmed == 1
    assert (scan.confirmed, scan.immature, scan.unconfirmed) == (400_000, 200_000, 900_000)
    with pytest.raises(Exception) as info:
        service.plan_send(stranger, 600_000, fee_rate=1)
    assert info.value.code == "insufficient-funds"
    assert "spendable 0.00500000" in info.value.message and "immature" in info.value.message
    plan = service.plan_send(stranger, 450_000, fee_rate=2)
    assert {c.amount for c in plan.selection.inputs} == {100_000, 400_000}
    assert plan.unconfirmed_inputs == 1
    assert plan.fee == plan.tx.size * 2  # the rate on the real size
    assert plan.amount + plan.fee + plan.change == 500_000
    assert plan.change_address == chain.address(1, 1)  # change 0 is in use
