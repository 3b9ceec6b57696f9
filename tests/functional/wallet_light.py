"""SPV: ``GET /tx/{txid}/proof``, ``GET /headers`` and ``obol-wallet --light``, against real
regtest ``obol-node`` processes, and against a node that lies (tests/framework/lyingnode.py).

One daemon for the module; the tests run in file order and build on each other: a block
of five transactions (an odd count: the last leaf is promoted), proofs of each, a light
wallet that verifies them, then forged proofs, a forged header and a lower-work chain,
each refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.consensus.params import REGTEST, TX_VERSION
from node.primitives.block import BlockHeader, merkle_branch_root
from node.primitives.crypto import SigningKey, encode_address
from node.primitives.tx import OutPoint, Transaction, TxOut, sign_transaction
from tests.framework.daemon import Client, Daemon
from tests.framework.lyingnode import LyingNode
from tests.framework.util import scenario_log
from tests.framework.walletcli import Result, run_wallet, wallet_env

log = scenario_log(__name__)
HRP = REGTEST.hrp
FUNDING_TXS = 4  # transactions in the test block besides its coinbase
PAYMENT = 3 * 10**8  # base units each funding transaction pays the wallet
FEE = 10_000


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("light") / "node").start()
    yield d
    code = d.stop()
    assert code == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("light-home")


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def wallet(home: Path, port: int, *args: str) -> Result:
    base = ["--network", "regtest", "--node", f"http://127.0.0.1:{port}"]
    return run_wallet([*base, "--wallet", str(home / "w.json"), *args], wallet_env(home))


def mine(api: Client, n: int, to: str) -> list[str]:
    return api.ok("POST", "mine", {"blocks": n, "address": to})["hashes"]


def pay(coin: dict, key: SigningKey, to: bytes) -> Transaction:
    change = coin["amount"] - PAYMENT - FEE
    return sign_transaction(
        TX_VERSION,
        [
            (
                OutPoint(bytes.fromhex(coin["txid"]), coin["index"]),
                TxOut(coin["amount"], key.address_hash),
                key,
            )
        ],
        [TxOut(PAYMENT, to), TxOut(change, key.address_hash)],
        REGTEST.network_id,
    )


def kept_headers(home: Path) -> list[str]:
    return json.loads((home / "w.headers.json").read_text())["headers"]


# --- the node's routes ---------------------------------------------------------------------


def test_a_block_of_five_transactions(daemon, home, key):
    api = daemon.client
    created = wallet(home, daemon.api_port, "create")
    assert created.code == 0, created
    to = wallet(home, daemon.api_port, "address", "--offline", "--json").json["address"]
    from node.primitives.crypto import decode_address

    log.info(
        "Mine %d mature coins to a test key, pay the wallet from %d of them",
        FUNDING_TXS,
        FUNDING_TXS,
    )
    mine(api, REGTEST.coinbase_maturity + FUNDING_TXS, encode_address(HRP, key.address_hash))
    coins = [
        u
        for u in api.ok("GET", f"address/{encode_address(HRP, key.address_hash)}")["utxos"]
        if u["mature"]
    ]
    for coin in sorted(coins, key=lambda u: u["height"])[:FUNDING_TXS]:
        api.ok("POST", "tx", {"hex": pay(coin, key, decode_address(HRP, to)).raw.hex()})
    block_hash = mine(api, 1, encode_address(HRP, SigningKey.generate().address_hash))[0]
    block = api.ok("GET", f"blocks/{block_hash}")
    assert block["tx_count"] == FUNDING_TXS + 1


def test_every_transaction_of_the_block_has_a_proof_to_its_header(daemon):
    api = daemon.client
    tip = api.ok("GET", "status")["height"]
    block = api.ok("GET", f"blocks/{tip}")
    served = api.ok("GET", f"headers?from={tip}&count=5")
    assert served["height"] == tip and served["from"] == tip and len(served["headers"]) == 1
    header = BlockHeader.from_bytes(bytes.fromhex(served["headers"][0]))
    assert header.hash.hex() == block["hash"]
    for index, txid in enumerate(block["txids"]):
        proof = api.ok("GET", f"tx/{txid}/proof")
        assert (proof["block_hash"], proof["height"], proof["index"]) == (block["hash"], tip, index)
        assert proof["tx_count"] == 5 and proof["header"] == served["headers"][0]
        branch = [bytes.fromhex(h) for h in proof["branch"]]
        assert len(branch) == (1 if index == 4 else 3)  # the fifth leaf is promoted twice
        root = merkle_branch_root(bytes.fromhex(txid), index, 5, branch)
        assert root == header.merkle_root, index


def test_headers_are_bounded_and_link(daemon):
    api = daemon.client
    tip = api.ok("GET", "status")["height"]
    served = api.ok("GET", "headers?from=0&count=2000")
    headers = [BlockHeader.from_bytes(bytes.fromhex(h)) for h in served["headers"]]
    assert len(headers) == tip + 1 and headers[0].hash == REGTEST.genesis_hash
    assert all(b.prev_hash == a.hash for a, b in zip(headers, headers[1:], strict=False))
    assert api.ok("GET", f"headers?from={tip + 1}")["headers"] == []
    for bad in ("count=2001", "count=0", "from=-1", "from=x"):
        resp = api.get(f"headers?{bad}")
        assert resp.status == 400 and resp.json["error"]["code"] == "bad-param", bad


def test_no_proof_for_an_unconfirmed_or_unknown_transaction(daemon, key):
    api = daemon.client
    coins = [
        u
        for u in api.ok("GET", f"address/{encode_address(HRP, key.address_hash)}")["utxos"]
        if u["mature"] and u["spent_by"] is None
    ]
    tx = pay(coins[0], key, SigningKey.generate().address_hash)
    api.ok("POST", "tx", {"hex": tx.raw.hex()})
    resp = api.get(f"tx/{tx.txid.hex()}/proof")
    assert resp.status == 404 and resp.json["error"]["code"] == "tx-unconfirmed", resp
    resp = api.get(f"tx/{'00' * 32}/proof")
    assert resp.status == 404 and resp.json["error"]["code"] == "tx-not-found", resp
    resp = api.get("tx/xyz/proof")
    assert resp.status == 400 and resp.json["error"]["code"] == "bad-txid", resp
    mine(api, 1, encode_address(HRP, SigningKey.generate().address_hash))


# --- the light wallet ----------------------------------------------------------------------


def test_light_history_and_balance_verify_every_confirmation(daemon, home):
    tip = daemon.client.ok("GET", "status")["height"]
    history = wallet(home, daemon.api_port, "--light", "history", "--json")
    assert history.code == 0, history
    rows = history.json["transactions"]
    assert len(rows) == FUNDING_TXS and all(r["verified"] for r in rows), rows
    assert all(r["confirmations"] == tip - r["height"] + 1 for r in rows)
    assert history.json["light"]["verified_txs"] == FUNDING_TXS
    assert history.json["light"]["height"] == tip
    assert len(kept_headers(home)) == tip + 1
    human = wallet(home, daemon.api_port, "--light", "history")
    assert human.code == 0 and f"light: {FUNDING_TXS} confirmed transactions verified" in human.out
    assert human.out.count("  verified") == FUNDING_TXS
    balance = wallet(home, daemon.api_port, "--light", "balance", "--json")
    assert balance.code == 0, balance
    assert balance.json["confirmed"] == FUNDING_TXS * PAYMENT
    assert balance.json["light"]["verified_txs"] == FUNDING_TXS


def forge_branch(path: str, doc):
    if path.endswith("/proof"):
        doc["branch"][0] = "00" * 32
    return doc


def forge_index(path: str, doc):
    if path.endswith("/proof"):
        doc["index"] = (doc["index"] + 1) % doc["tx_count"]
    return doc


def forge_height(path: str, doc):
    if path.endswith("/proof"):
        doc["height"] -= 1  # another kept header: its hash and root do not match
    return doc


def forge_tx_bytes(path: str, doc):
    if "/tx/" in path and not path.endswith("/proof") and doc.get("hex"):
        tx = Transaction.from_bytes(bytes.fromhex(doc["hex"]))
        outputs = [TxOut(o.amount * 2, o.addr_hash) for o in tx.outputs]
        doc["hex"] = Transaction.create(tx.version, tx.inputs, outputs, tx.locktime).raw.hex()
    return doc


@pytest.mark.parametrize("forge", [forge_branch, forge_index, forge_height, forge_tx_bytes])
def test_a_forged_proof_is_refused(daemon, home, forge):
    before = kept_headers(home)
    with LyingNode(daemon.api_port, forge) as liar:
        for command in ("history", "balance"):
            result = wallet(home, liar.port, "--light", command)
            assert result.code != 0, result
            assert result.error_code() == "light-bad-proof", result
    assert kept_headers(home) == before
    assert wallet(home, daemon.api_port, "--light", "history").code == 0  # the truth still passes


def test_without_light_the_lie_is_believed(daemon, home):
    with LyingNode(daemon.api_port, forge_branch) as liar:
        assert wallet(home, liar.port, "history").code == 0


def test_a_forged_header_is_refused(daemon, home):
    api = daemon.client
    mine(api, 1, encode_address(HRP, SigningKey.generate().address_hash))
    tip = api.ok("GET", "status")["height"]

    def forge_bits(path: str, doc):
        if (
            path.startswith("/api/v1/headers")
            and doc["headers"]
            and doc["from"] + len(doc["headers"]) == tip + 1
        ):
            last = BlockHeader.from_bytes(bytes.fromhex(doc["headers"][-1]))
            easier = BlockHeader.create(
                last.version,
                last.prev_hash,
                last.merkle_root,
                last.timestamp,
                0x2100FFFF,
                last.nonce,
            )
            doc["headers"][-1] = easier.raw.hex()
        return doc

    before = kept_headers(home)
    with LyingNode(daemon.api_port, forge_bits) as liar:
        result = wallet(home, liar.port, "--light", "balance")
    assert result.error_code() == "light-bad-header", result
    assert f"header {tip} " in result.err
    assert kept_headers(home) == before


def test_a_chain_with_less_work_is_refused_and_one_with_more_replaces_it(daemon, home, tmp_path):
    kept = kept_headers(home)
    with Daemon(tmp_path / "other") as other:
        to = encode_address(HRP, SigningKey.generate().address_hash)
        log.info("Another node mines a branch of %d blocks from genesis: less work", 3)
        mine(other.client, 3, to)
        result = wallet(home, other.api_port, "--light", "balance")
        assert result.error_code() == "light-low-work", result
        assert kept_headers(home) == kept
        log.info("It mines past the kept chain's work: the wallet follows (a reorg)")
        mine(other.client, len(kept) - 3, to)
        result = wallet(home, other.api_port, "--light", "balance", "--json")
        assert result.code == 0, result
        tip = other.client.ok("GET", "status")
        assert result.json["light"]["tip"] == tip["tip"] and result.json["confirmed"] == 0
        assert kept_headers(home)[-1] != kept[-1] and len(kept_headers(home)) == len(kept) + 1
