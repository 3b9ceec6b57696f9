"""System tests of ``obol-testnet``: real nodes, real wallets, driven through the command.

Each test starts a small network in its own directory with the real
``obol-testnet`` program (nodes on 127.0.0.10.. with free ports), checks it
through the command's output, the nodes' HTTP API and ``obol-wallet``, and
stops it (``down``) whatever happens.  Regtest everywhere but in the one test
where real proof of work is the point.  Waits poll with timeouts.

Scenarios:
* traffic: 4 nodes, 2 miners, random payments; the nodes converge on one tip
  and one UTXO set, and the wallets together hold every coin ever issued.
* partition: two sides both mine and take payments, and a coin is spent
  differently on each side; after `heal` all nodes follow the side with more
  work, the other side's still-valid payments are mined later, and the double
  spend appears exactly once.
* kill -9 a node while it syncs and while it mines; it restarts and agrees.
* a node added after hundreds of blocks syncs from the others.
* testnet (real proof of work): miners find blocks; one is killed while mining,
  restarted, and catches up.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from node.consensus.params import REGTEST
from node.primitives.crypto import decode_address
from node.primitives.tx import OutPoint, TxOut, sign_transaction
from tests.framework.daemon import Client
from tests.framework.programs import killed_at_exit, process_env, program
from tests.framework.testnet_cli import TestnetCli
from tests.framework.util import poll_until

pytestmark = pytest.mark.system

COIN = 100_000_000


class Net(TestnetCli):
    """One test network: ``obol-testnet --dir DIR ...`` and views of its nodes."""

    def json(self, *args: str, **kw) -> Any:
        return json.loads(self.run(*args, **kw).stdout)

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            program("obol-testnet", "scripts.testnet") + ["--dir", str(self.dir), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=process_env(),
            stdin=subprocess.DEVNULL,
        )

    def api(self, i: int) -> Client:
        node = self.node(i)
        token = (Path(node["datadir"]) / "api.token").read_text().strip()
        return Client(node["api_port"], token)

    def get(self, i: int, path: str) -> Any:
        return self.api(i).ok("GET", path)

    def height(self, i: int) -> int:
        return self.get(i, "status")["height"]

    def wallet(self, i: int, *args: str) -> Any:
        node = self.node(i)
        env = process_env()
        env["OBOL_WALLET_PASSPHRASE"] = (self.dir / "passphrase").read_text().strip()
        proc = subprocess.run(
            program("obol-wallet", "wallet.cli")
            + [
                "--wallet",
                node["wallet"],
                "--node",
                f"http://127.0.0.1:{node['api_port']}",
                "--network",
                self.state["network"],
                "--json",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return json.loads(proc.stdout)

    def peer_hosts(self, i: int) -> set[str]:
        return {p["address"].rpartition(":")[0] for p in self.get(i, "peers")}

    def logs(self) -> str:
        return "\n".join(
            f"--- node {n['index']} ---\n" + Path(n["log"]).read_text(errors="replace")[-4000:]
            for n in self.state["nodes"]
            if Path(n["log"]).exists()
        )


@pytest.fixture
def net(tmp_path):
    network = Net(tmp_path / "testnet")
    yield network
    if (network.dir / "testnet.json").exists():
        network.run("down", timeout=120, check=False)
        for n in network.state["nodes"]:
            text = Path(n["log"]).read_text(errors="replace") if Path(n["log"]).exists() else ""
            assert "Traceback" not in text, f"node {n['index']} logged a traceback:\n{text[-6000:]}"


def wallets_total(net: Net) -> int:
    total = 0
    for n in net.state["nodes"]:
        bal = net.wallet(n["index"], "balance")
        total += bal["confirmed"] + bal["unconfirmed"] + bal["immature"]
    return total


def issued(height: int) -> int:
    return sum(REGTEST.subsidy(h) for h in range(1, height + 1))


def settle(net: Net, rounds: int = 6) -> dict:
    """Mine until every mempool is empty and all nodes agree; the last wait-converged answer.

    Each round mines one block on every node whose mempool is not empty (a
    transaction put back by a reorg stays in the mempools of the nodes that
    reorganised: the node does not relay it again).
    """
    for _ in range(rounds):
        pending = [
            n["index"] for n in net.state["nodes"] if net.get(n["index"], "mempool")["count"]
        ]
        for i in pending:
            net.run("mine", "--node", str(i), "1")
            net.run("wait-converged", "--timeout", "60")
        answer = net.json("wait-converged", "--timeout", "60", "--json")
        if not pending and answer["converged"]:
            return answer
    raise AssertionError("mempools did not empty")


def test_traffic_converges_and_wallets_hold_every_coin(net):
    out = net.run(
        "up", "--nodes", "4", "--miners", "2", "--network", "regtest", "--topology", "line"
    ).stdout
    assert "all 4 nodes up and linked" in out
    again = net.run("up", "--network", "regtest", check=False)
    assert again.returncode == 1 and "already running" in again.stdout

    status = net.json("status", "--json")
    assert status["agree"] and len(status["nodes"]) == 4
    start_height = status["height"]
    for row in status["nodes"]:
        assert row["state"] == "running" and row["peers"] >= 1
    assert [n["miner"] for n in net.state["nodes"]] == [True, True, False, False]
    assert net.node(2)["host"] == "127.0.0.12"
    # every node is seen by its peers under its own loopback address
    assert "127.0.0.10" in net.peer_hosts(1) and "127.0.0.12" in net.peer_hosts(1)

    # until 5 payments went out, not for a fixed time: each one runs obol-wallet, which on a
    # busy machine takes seconds; the duration is only the deadline
    traffic = net.run(
        "traffic", "--rate", "3", "--count", "5", "--duration", "120", "--block-interval", "1"
    ).stdout
    sent = int(traffic.rsplit("traffic: ", 1)[1].split()[0])
    assert sent >= 5, traffic

    answer = settle(net)
    assert answer["converged"]
    height = answer["height"]
    assert height > start_height
    utxo = {json.dumps(net.get(n["index"], "utxoset"), sort_keys=True) for n in net.state["nodes"]}
    assert len(utxo) == 1  # one tip, one UTXO-set hash everywhere
    utxoset = net.get(0, "utxoset")
    assert utxoset["amount"] == issued(height)
    # the wallets together hold every coin issued: fees went back to the miners' wallets
    assert wallets_total(net) == issued(height)
    # and the blocks carried real transactions
    headers = net.get(0, f"blocks?start={start_height + 1}&count={height - start_height}")[
        "headers"
    ]
    carried = sum(net.get(0, f"blocks/{h['hash']}")["tx_count"] - 1 for h in headers)
    assert carried >= sent

    logs = net.run("logs", "1", "--lines", "5").stdout
    assert logs.strip()
    net.run("down")
    assert not net.json("status", "--json")["agree"]
    assert all(r["state"] == "stopped" for r in net.json("status", "--json")["nodes"])


def test_partition_double_spend_and_heal(net):
    net.run("up", "--nodes", "4", "--miners", "2", "--network", "regtest", "--topology", "line")
    # give the non-mining side coins of its own before the cut
    net.run("send", "0", "2", "10")
    net.run("send", "1", "3", "10")
    settle(net)

    net.run("partition", "0,1", "2,3")
    assert net.json("status", "--json")["partition"] == [[0, 1], [2, 3]]
    side = {0: "a", 1: "a", 2: "b", 3: "b"}
    for i in range(4):
        hosts = net.peer_hosts(i)
        others = {f"127.0.0.{10 + j}" for j in range(4) if side[j] != side[i]}
        assert not hosts & others, (i, hosts)
    # gossip cannot bring them together: a dial across the cut is refused
    refused = net.api(0).post("peers", {"connect": f"127.0.0.12:{net.node(2)['p2p_port']}"})
    assert refused.status == 409 and refused.json["error"]["code"] == "banned"

    # payments on both sides
    a_txs = [
        net.json("send", "0", "1", "1.5", "--json")["txid"],
        net.json("send", "1", "0", "2.5", "--json")["txid"],
    ]
    b_txs = [
        net.json("send", "2", "3", "1", "--json")["txid"],
        net.json("send", "3", "2", "2", "--json")["txid"],
    ]

    # a double spend: one coin of wallet 0, paid to node 1 on side a and to node 3 on side b
    from wallet.keys import RECEIVE
    from wallet.keystore import Keystore

    store = Keystore.open(net.node(0)["wallet"], (net.dir / "passphrase").read_text().strip())
    key = store.keychain.key(RECEIVE, 0)
    address0 = net.node(0)["address"]
    assert store.keychain.address(RECEIVE, 0) == address0
    coins_b = {(u["txid"], u["index"]): u for u in net.get(2, f"address/{address0}")["utxos"]}
    coin = next(
        u
        for u in net.get(0, f"address/{address0}")["utxos"]
        if u["mature"]
        and u["spent_by"] is None
        and u["height"] is not None
        and coins_b.get((u["txid"], u["index"]), {}).get("spent_by", "x") is None
    )
    outpoint = OutPoint(bytes.fromhex(coin["txid"]), coin["index"])
    spent = TxOut(coin["amount"], decode_address(REGTEST.hrp, address0))

    def pay(to: int):
        out = TxOut(coin["amount"] - 2_000, decode_address(REGTEST.hrp, net.node(to)["address"]))
        return sign_transaction(1, [(outpoint, spent, key)], [out], REGTEST.network_id)

    tx_a, tx_b = pay(1), pay(3)
    for i, tx in ((0, tx_a), (2, tx_b)):
        assert net.api(i).post("tx", {"hex": tx.raw.hex()}).status == 200
    poll_until(
        lambda: net.get(1, "mempool")["count"] == 3 and net.get(3, "mempool")["count"] == 3,
        timeout=15,
        what="each side's mempool to hold its 3 transactions",
    )

    fork_height = net.height(0)
    net.run("mine", "--node", "0", "2")  # side a: 2 blocks
    # side b: 4 blocks, more work
    b_tip = net.json("mine", "--node", "2", "4", "--json")["hashes"][-1]
    poll_until(
        lambda: (
            net.get(1, "status")["height"] == fork_height + 2
            and net.get(3, "status")["tip"] == b_tip
        ),
        timeout=15,
        what="both sides to mine",
    )
    assert net.get(0, "status")["tip"] != net.get(2, "status")["tip"]
    assert net.run("wait-converged", "--timeout", "1", check=False).returncode == 1

    net.run("heal")
    assert net.json("status", "--json")["partition"] is None
    answer = net.json("wait-converged", "--timeout", "60", "--json")
    assert answer["tip"] == b_tip  # the side with more work won
    for i in range(4):
        assert net.get(i, f"tx/{tx_b.txid.hex()}")["height"] is not None
        assert net.api(i).get(f"tx/{tx_a.txid.hex()}").status == 404  # the losing spend is gone
    for txid in b_txs:
        assert net.get(0, f"tx/{txid}")["height"] is not None
    # the losing side's valid payments went back to its mempools; its miners mine them later
    # (the node does not relay transactions a reorg puts back: only side a's nodes hold them)
    for txid in a_txs:
        assert net.get(0, f"tx/{txid}")["in_mempool"]
    net.run("mine", "--node", "0", "1")
    net.run("wait-converged", "--timeout", "60")
    settle(net)
    for txid in a_txs:
        assert net.get(3, f"tx/{txid}")["height"] is not None
    # the double-spent coin is spent exactly once in the final chain
    tip_height = net.height(0)
    spends = 0
    for h in range(fork_height + 1, tip_height + 1):
        block = net.get(2, f"blocks/{h}?tx=full")
        for tx in block["txs"][1:]:
            spends += sum(
                1 for i in tx["inputs"] if (i["txid"], i["index"]) == (coin["txid"], coin["index"])
            )
    assert spends == 1
    assert wallets_total(net) == issued(tip_height)


def test_kill_during_sync_and_while_mining(net):
    net.run("up", "--nodes", "3", "--miners", "2", "--network", "regtest", "--topology", "line")
    # while it syncs: node 2 comes back 3000 blocks behind and is killed during the download
    net.run("stop", "2")
    target = net.json("mine", "--node", "0", "3000", "--json")["height"]
    net.run("start", "2")
    seen = net.height(2)
    net.run("kill", "2")
    assert seen < target, "node 2 had finished syncing before the kill (too fast to test)"
    assert net.json("status", "--json")["nodes"][2]["state"] == "stopped"
    net.run("start", "2")
    answer = net.json("wait-converged", "--timeout", "90", "--json")
    assert answer["height"] == target and answer["nodes"] == [0, 1, 2]

    # while it mines: node 1 is killed in the middle of a long run of blocks
    before = net.height(1)
    with killed_at_exit(net.popen("mine", "--node", "1", "5000")) as miner:
        poll_until(lambda: net.height(1) >= before + 200, timeout=60, what="node 1 to mine")
        net.run("kill", "1")
        assert miner.wait(60) != 0  # the mining request died with the node
    net.run("start", "1")
    answer = net.json("wait-converged", "--timeout", "90", "--json")
    assert answer["height"] > before
    net.run("mine", "--node", "1", "3")  # the restarted node mines on the common chain
    answer = net.json("wait-converged", "--timeout", "60", "--json")
    assert net.get(1, "utxoset")["amount"] == issued(answer["height"])


def test_late_node_syncs(net):
    net.run("up", "--nodes", "3", "--miners", "1", "--network", "regtest", "--topology", "ring")
    net.run("send", "0", "1", "5")
    net.run("send", "0", "2", "7")
    net.run("mine", "--node", "0", "300")
    base = net.json("wait-converged", "--json")
    assert base["height"] >= 400
    out = net.run("add").stdout
    assert "node 3 started" in out
    node3 = net.node(3)
    assert node3["host"] == "127.0.0.13" and not node3["miner"]
    answer = net.json("wait-converged", "--timeout", "90", "--json")
    assert answer["tip"] == base["tip"] and answer["nodes"] == [0, 1, 2, 3]
    assert net.get(3, "utxoset") == net.get(0, "utxoset")
    assert net.wallet(1, "balance")["confirmed"] == 5 * COIN
    # the late node takes part: a payment to its wallet is relayed and mined
    net.run("send", "0", "3", "3")
    settle(net)
    assert net.wallet(3, "balance")["confirmed"] == 3 * COIN


def test_testnet_real_pow_miner_killed_and_restarted(net):
    net.run("up", "--nodes", "2", "--miners", "2", "--network", "testnet")
    poll_until(lambda: net.height(0) >= 3, timeout=120, interval=0.25, what="proof-of-work blocks")
    status = net.json("status", "--json")
    assert all(r["hashrate"] and r["hashrate"] > 0 for r in status["nodes"])
    assert net.get(0, "status")["miner"]["address"] == net.node(0)["address"]

    net.run("kill", "0")  # while it mines
    before = net.height(1)
    poll_until(
        lambda: net.height(1) > before, timeout=120, interval=0.25, what="node 1 to mine alone"
    )
    net.run("start", "0")
    reached = net.height(1)
    poll_until(
        lambda: net.height(0) > reached, timeout=120, interval=0.25, what="node 0 to catch up"
    )
    assert net.get(0, "status")["miner"]["enabled"]
    net.run("wait-converged", "--timeout", "120")


def test_a_killed_isolated_nodes_payment_is_put_back_by_its_wallet(net):
    """The loss chaos found (d7d86ff): a payment only an isolated node held is gone once that
    node is killed -9; its wallet kept it, and its next rebroadcast gets it mined."""
    net.run("up", "--nodes", "3", "--miners", "2", "--network", "regtest")
    net.run("partition", "0", "1,2")
    txid = net.json("send", "0", "1", "1", "--json")["txid"]
    assert net.get(0, f"tx/{txid}")["in_mempool"]
    net.run("kill", "0")
    net.run("start", "0")
    net.run("heal")
    net.run("wait-converged", "--timeout", "60")
    for i in range(3):  # nowhere: the node lost it with its mempool, nobody else had it
        assert net.api(i).get(f"tx/{txid}").status == 404

    answer = net.wallet(0, "rebroadcast")
    assert {(t["txid"], t["action"]) for t in answer["transactions"]} == {(txid, "resubmitted")}
    assert answer["resubmitted"] == 1
    settle(net)
    assert net.get(1, f"tx/{txid}")["confirmations"] >= 1
    assert net.wallet(0, "rebroadcast")["transactions"][0]["action"] == "confirmed"
