"""A private network from a chain spec, end to end: real ``obol-node`` and ``obol-wallet``
processes on loopback.

``obol-node chain new`` writes the spec of a regtest-like chain ``acme`` with a genesis
allocation; two nodes started with ``--chain`` sync, see the allocation in their UTXO
set, and a wallet (``--chain``, ``acme1`` addresses) moves mined coins.  A node of a
second chain with the same magic but another genesis is refused at the handshake with a
clear log line, and a node of another magic at the first frame.  Seeds from the spec
are resolved at start (``localhost`` has an address) and dialled.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from node.consensus.chainspec import load_spec
from node.primitives.crypto import SigningKey, encode_address
from node.primitives.tx import COIN
from tests.framework.daemon import Daemon, run_node
from tests.framework.programs import free_port, process_env, program
from tests.framework.util import poll_until
from tests.framework.walletcli import run_wallet, wallet_env

ALLOCATION = 7 * COIN  # base units of the genesis allocation


def chain_new(directory: Path, name: str, *extra: str, file: str = "") -> Path:
    path = directory / (file or f"{name}.toml")
    result = run_node(
        ["chain", "new", name, "--out", str(path), "--mine-on-demand", "--no-retarget", *extra]
    )
    assert result.returncode == 0, result.stderr
    assert f"network {name}, genesis " in result.stdout
    return path


def height(daemon: Daemon) -> int:
    return int(daemon.client.ok("GET", "status")["height"])


@pytest.fixture(scope="module")
def chains(tmp_path_factory):
    """Spec files: ``acme`` (allocation to a known key), ``rival`` (acme's magic, another
    genesis) and ``other`` (its own magic)."""
    base = tmp_path_factory.mktemp("chainspec")
    key = SigningKey.generate()
    regtest_address = encode_address("robol", key.address_hash)  # rewritten as acme1...
    acme = chain_new(
        base,
        "acme",
        "--coinbase-maturity",
        "1",
        "--halving-interval",
        "2500",
        "--alloc",
        f"{regtest_address}={ALLOCATION}",
    )
    magic = load_spec(acme).magic.hex()
    rival = chain_new(base, "acme", "--magic", magic, "--message", "rival", file="rival.toml")
    other = chain_new(base, "other")
    return base, acme, rival, other, encode_address("acme", key.address_hash)


@pytest.fixture
def acme_pair(chains, tmp_path):
    _, acme, *_ = chains
    a = Daemon(tmp_path / "a", chain=acme).start()
    b = Daemon(tmp_path / "b", chain=acme, args=["--peer", f"127.0.0.1:{a.p2p_port}"]).start()
    yield a, b
    for d in (b, a):
        assert d.stop() == 0, d.log()
        assert "Traceback" not in d.log(), d.log()


def test_chain_show_prints_the_genesis_hash(chains):
    _, acme, *_ = chains
    result = run_node(["chain", "show", str(acme), "--json"])
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    params = load_spec(acme)
    assert shown["genesis_hash"] == params.genesis_hash.hex()
    assert shown["name"] == "acme" and shown["address_prefix"] == "acme"
    assert shown["genesis_allocations"][0]["amount"] == ALLOCATION


def test_two_nodes_of_a_private_chain_sync_and_move_coins(chains, acme_pair, tmp_path):
    base, acme, _, _, allocated = chains
    a, b = acme_pair
    status = a.client.ok("GET", "status")
    assert status["network"] == "acme"
    # the genesis allocation is a coin of both nodes' UTXO sets
    for d in (a, b):
        doc = d.client.ok("GET", f"address/{allocated}")
        assert doc["balance"]["total"] == ALLOCATION, doc

    env = wallet_env(tmp_path / "home")
    wallet = ["--chain", str(acme), "--node", f"http://127.0.0.1:{a.api_port}"]
    wallet += ["--wallet", str(tmp_path / "w.json"), "--json"]
    created = run_wallet([*wallet, "create"], env)
    assert created.code == 0, created
    mine_to = run_wallet([*wallet, "address"], env)
    assert mine_to.code == 0, mine_to
    address = mine_to.json["address"]
    assert address.startswith("acme1")
    a.client.ok("POST", "mine", {"blocks": 3, "address": address})
    poll_until(lambda: height(b) == 3, what="node b synced to height 3")

    payee = encode_address("acme", SigningKey.generate().address_hash)
    sent = run_wallet([*wallet, "send", payee, "1.5", "--yes"], env)
    assert sent.code == 0, sent
    a.client.ok("POST", "mine", {"blocks": 1, "address": allocated})
    poll_until(lambda: height(b) == 4, what="node b synced to height 4")
    doc = b.client.ok("GET", f"address/{payee}")
    assert doc["balance"]["confirmed"] == 150_000_000, doc
    # a regtest address is another network's: refused with the prefix named
    refused = a.client.post("mine", {"blocks": 1, "address": "robol1" + address[5:]})
    assert refused.status == 400, refused


def test_a_node_of_another_genesis_is_refused_at_the_handshake(chains, tmp_path):
    _, acme, rival, _, _ = chains
    with Daemon(tmp_path / "a", chain=acme) as a:
        peer = ["--peer", f"127.0.0.1:{a.p2p_port}"]
        with Daemon(tmp_path / "r", chain=rival, args=peer) as r:
            ours = load_spec(acme).genesis_hash.hex()[:16]
            theirs = load_spec(rival).genesis_hash.hex()[:16]
            line = f"wrong network: its genesis {theirs}"
            poll_until(lambda: line in a.log(), what="a logs the rival's genesis")
            assert f"ours {ours}" in a.log()
            assert a.client.ok("GET", "status")["peers"] == 0
            assert r.client.ok("GET", "status")["peers"] == 0
            # a wallet of acme refuses the rival's node: same name, another genesis
            env = wallet_env(tmp_path / "home")
            wallet = ["--chain", str(acme), "--node", f"http://127.0.0.1:{r.api_port}"]
            wallet += ["--wallet", str(tmp_path / "w.json")]
            assert run_wallet([*wallet, "create"], env).code == 0
            refused = run_wallet([*wallet, "balance"], env)
            assert refused.code == 1 and refused.error_code() == "node-wrong-network", refused


def test_a_node_of_another_magic_is_refused_at_the_first_frame(chains, tmp_path):
    _, acme, _, other, _ = chains
    with Daemon(tmp_path / "a", chain=acme) as a:
        o = Daemon(tmp_path / "o", chain=other, args=["--peer", f"127.0.0.1:{a.p2p_port}"])
        with o:
            poll_until(
                lambda: "disconnected: another network or protocol" in a.log(),
                what="a drops the other chain's frame",
            )
            assert a.client.ok("GET", "status")["peers"] == 0


def test_seeds_of_the_spec_are_resolved_and_dialled(chains, tmp_path):
    base, acme, *_ = chains
    with Daemon(tmp_path / "a", chain=acme) as a:
        text = acme.read_text().replace("seeds = []", f'seeds = ["localhost:{a.p2p_port}"]')
        seeded = base / "acme-seeded.toml"
        seeded.write_text(text)
        with Daemon(tmp_path / "b", chain=seeded) as b:
            poll_until(lambda: b.client.ok("GET", "status")["peers"] >= 1, what="b dialled a")
            assert f"seed localhost:{a.p2p_port} resolved to" in b.log()


def test_a_bad_spec_stops_the_node_with_its_reason(chains, tmp_path):
    base, acme, *_ = chains
    broken = base / "broken.toml"
    broken.write_text(acme.read_text().replace("coinbase-maturity", "coinbase-maturty"))
    result = run_node(["--chain", str(broken), "--datadir", str(tmp_path / "d")])
    assert result.returncode == 1, result
    assert "unknown key 'coinbase-maturty'" in result.stderr and "[spec-unknown-key]" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    both = run_node(
        ["--chain", str(acme), "--network", "regtest", "--api", f"127.0.0.1:{free_port()}"]
    )
    assert both.returncode == 1 and "give one" in both.stderr, both


def test_obol_testnet_runs_a_private_chain(chains, tmp_path):
    """``obol-testnet up --chain FILE`` passes the spec to its nodes and wallets."""
    base, _, _, _, _ = chains
    spec = chain_new(base, "tiny", "--coinbase-maturity", "2", file="tiny.toml")
    cmd = program("obol-testnet", "scripts.testnet") + ["--dir", str(tmp_path / "tn")]

    def testnet(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            cmd + list(args), capture_output=True, text=True, timeout=300, env=process_env()
        )

    try:
        up = testnet("up", "--nodes", "2", "--miners", "1", "--chain", str(spec))
        assert up.returncode == 0, up.stdout + up.stderr
        assert "tiny1" in up.stdout  # the wallets' addresses have the spec's prefix
        mined = testnet("mine")
        assert mined.returncode == 0, mined.stdout + mined.stderr

        def agreed() -> bool:
            status = json.loads(testnet("status", "--json").stdout)
            assert status["network"] == "tiny"
            tips = {node["tip"] for node in status["nodes"]}
            return len(tips) == 1 and status["nodes"][0]["height"] > 0

        poll_until(agreed, what="both testnet nodes on one tip")
    finally:
        down = testnet("down", "--clean")
        assert down.returncode == 0, down.stdout + down.stderr
