"""System tests of ``obol-testnet up --hosts``: a network namespace per node, kernel cuts.

Every test drives the real ``obol-testnet`` program; the nodes are real processes
inside namespaces the tool made, talking over veth pairs and a bridge.  Nothing
leaves the namespaces and the bridge the tool created.  The tests need root and
the ``ip``/``iptables`` programs (CI has both: ``make hosts``) and skip, saying
why, without them.

Scenarios:
* up --hosts: each node in its own namespace with its own address, its pid the
  node's, its API answering from the machine through the bridge; down removes
  every namespace, veth, bridge and firewall rule, also after a crash.
* partition by the kernel: connections across the cut stall and are dropped by
  the nodes' ping timeout, a dial across the cut never gets through (TCP times
  out: no RST), both sides mine; heal removes the rules only and the nodes
  reconnect and converge by themselves.
* not root: one clear line, exit status 1.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from scripts import testnet_hosts
from tests.framework.programs import process_env, program
from tests.framework.testnet_cli import TestnetCli
from tests.framework.util import poll_until

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(
        testnet_hosts.missing_requirements() is not None,
        reason=f"namespace tests: {testnet_hosts.missing_requirements()}",
    ),
    pytest.mark.skipif(
        testnet_hosts.missing_requirements() is None and not testnet_hosts.can_make_namespaces(),
        reason="namespace tests: `ip netns add` fails here (a container without CAP_SYS_ADMIN?)",
    ),
]

CUT_TIMEOUT = 20.0  # seconds for connections across a cut to be dropped (pings time out)
HEAL_TIMEOUT = 20.0  # seconds for the nodes to reconnect and converge after a heal


class HostNet(TestnetCli):
    """One ``--hosts`` network: ``obol-testnet --dir DIR ...`` and views of its nodes."""

    def api(self, i: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Ask node i's API from the machine's namespace, through the bridge."""
        node = self.node(i)
        token = (Path(node["datadir"]) / "api.token").read_text().strip()
        conn = http.client.HTTPConnection(node["ip"], node["api_port"], timeout=30)
        try:
            conn.request(
                method,
                "/api/v1/" + path,
                body=json.dumps(body) if body is not None else None,
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            return resp.status, json.loads(resp.read() or b"null")
        finally:
            conn.close()

    def get(self, i: int, path: str) -> Any:
        status, answer = self.api(i, "GET", path)
        assert status == 200, answer
        return answer

    def peer_ips(self, i: int) -> set[str]:
        return {
            p["address"].rpartition(":")[0] for p in self.get(i, "peers") if p.get("established")
        }

    def tip(self, i: int) -> str:
        return self.get(i, "status")["tip"]

    def inside(self, i: int, *cmd: str, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run ``cmd`` in node i's namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self.node(i)["netns"], *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def tcp_probe(net: HostNet, source: int, target: int) -> str:
    """From node ``source``'s namespace, open a TCP connection to ``target``'s P2P port:
    'connected', 'refused' or 'timeout'."""
    node = net.node(target)
    script = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(({node['ip']!r}, {node['p2p_port']}), timeout=2).close()\n"
        "    print('connected')\n"
        "except ConnectionRefusedError:\n"
        "    print('refused')\n"
        "except (TimeoutError, OSError):\n"
        "    print('timeout')\n"
    )
    return net.inside(source, sys.executable, "-c", script).stdout.strip()


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    network = HostNet(tmp_path_factory.mktemp("hosts") / "net")
    try:
        network.run("up", "--hosts", "--nodes", "4", "--miners", "1", "--network", "regtest")
        yield network
    finally:
        network.run("down", "--clean", check=False)
        assert testnet_hosts.leftovers(testnet_hosts.tag_of(network.dir)) == []


def test_a_host_per_node(net):
    state = net.state
    hosts = state["hosts"]
    assert hosts["bridge"] == f"obr-{hosts['tag']}" and hosts["subnet"].endswith(".0/24")
    prefix = hosts["gateway"].rsplit(".", 1)[0]
    assert hosts["gateway"] == f"{prefix}.1"
    for i, node in enumerate(state["nodes"]):
        assert node["netns"] == f"obn-{hosts['tag']}-{i}"
        assert node["ip"] == node["host"] == f"{prefix}.{i + 2}"
        # the recorded pid is the node itself, and it runs inside its namespace
        cmdline = Path(f"/proc/{node['pid']}/cmdline").read_bytes().split(b"\0")
        assert node["datadir"].encode() in cmdline and b"ip" not in cmdline[:1]
        assert testnet_hosts.netns_of_pid(node["pid"]) == node["netns"]
        addresses = net.inside(i, "ip", "-j", "-4", "addr", "show", "dev", "eth0").stdout
        assert [a["local"] for a in json.loads(addresses)[0]["addr_info"]] == [node["ip"]]
        # the API answers from the machine through the bridge, the node sees its peers
        # under their own addresses
        assert net.get(i, "status")["height"] >= 100
    assert {state["nodes"][0]["ip"], state["nodes"][2]["ip"]} <= net.peer_ips(1)
    status = json.loads(net.run("status", "--json").stdout)
    assert [r["netns"] for r in status["nodes"]] == [n["netns"] for n in state["nodes"]]
    assert status["agree"]


def test_kernel_partition_and_heal(net):
    ips = [n["ip"] for n in net.state["nodes"]]
    assert tcp_probe(net, 1, 2) == "connected"
    net.run("partition", "0,1", "2,3")
    # the kernel drops; the nodes were asked nothing (no ban)
    for i in range(4):
        assert net.get(i, "bans") == []
    assert sorted(testnet_hosts.partition_rules(net.node(1)["netns"])) == sorted(ips[2:])
    assert sorted(testnet_hosts.partition_rules(net.node(3)["netns"])) == sorted(ips[:2])
    poll_until(
        lambda: not (net.peer_ips(1) & set(ips[2:])) and not (net.peer_ips(2) & set(ips[:2])),
        CUT_TIMEOUT,
        "the connections across the cut to time out",
    )
    # a cut is silence: a connection attempt times out rather than being refused
    assert tcp_probe(net, 1, 2) == "timeout"
    assert tcp_probe(net, 2, 0) == "timeout"
    assert tcp_probe(net, 0, 1) == "connected"
    # asked to dial across the cut, the node does not get through
    status, answer = net.api(1, "POST", "peers", {"connect": f"{ips[3]}:{net.node(3)['p2p_port']}"})
    assert status >= 400, answer
    assert ips[3] not in net.peer_ips(1)
    # each side mines; the right side mines more
    net.run("mine", "2", "--node", "0")
    net.run("mine", "3", "--node", "2")
    poll_until(lambda: net.tip(1) == net.tip(0), 20, "node 1 to follow node 0")
    poll_until(lambda: net.tip(3) == net.tip(2), 20, "node 3 to follow node 2")
    assert net.tip(0) != net.tip(2)
    heavier = net.tip(2)
    healed = net.run("heal").stdout
    assert "reconnect by themselves" in healed
    assert all(testnet_hosts.partition_rules(n["netns"]) == [] for n in net.state["nodes"])
    poll_until(lambda: all(net.tip(i) == heavier for i in range(4)), HEAL_TIMEOUT, "convergence")
    poll_until(lambda: ips[2] in net.peer_ips(1), HEAL_TIMEOUT, "node 2 to redial node 1")
    net.run("wait-converged", "--timeout", "20")


def test_chaos_on_hosts(net):
    """A short seeded chaos run on hosts: kills, kernel partitions, restarts, skewed clocks
    while payments flow; every invariant holds and the report says what happened."""
    proc = net.run("chaos", "--duration", "10", "--seed", "6", "--rate", "2", "--json", timeout=300)
    report = json.loads(proc.stdout)
    assert report["ok"], json.dumps(report, indent=2)
    assert [i["name"] for i in report["invariants"]] == [
        "converged",
        "restarts",
        "transactions",
        "supply",
        "fresh node",
    ]
    kinds = {f["kind"] for f in report["schedule"]}
    assert {"kill", "partition"} <= kinds, report["schedule"]
    assert len([e for e in report["events"] if "kill -9 node" in e]) == 1
    assert len([e for e in report["events"] if e.endswith(" partition 0,1 | 2,3 for 6.8s")]) == 1
    assert any(e.endswith("heal") for e in report["events"])
    assert report["traffic"]["sent"] > 0
    assert "t=" in proc.stderr and "the schedule" in proc.stderr


def test_restart_then_down_after_a_crash(tmp_path):
    """`down` removes the hosts and `up` makes them again (same addresses); then, nodes
    killed and state file gone, `down` still finds and removes the hosts by the tag."""
    crashed = HostNet(tmp_path / "net")
    crashed.run("up", "--hosts", "--nodes", "2", "--miners", "0", "--network", "regtest")
    tag = crashed.state["hosts"]["tag"]
    before = [(n["netns"], n["ip"]) for n in crashed.state["nodes"]]
    crashed.run("down")
    assert testnet_hosts.leftovers(tag) == []
    crashed.run("up")
    assert [(n["netns"], n["ip"]) for n in crashed.state["nodes"]] == before
    for i, node in enumerate(crashed.state["nodes"]):
        assert testnet_hosts.netns_of_pid(node["pid"]) == node["netns"]
        assert crashed.get(i, "status")["height"] == 0
    assert len(testnet_hosts.leftovers(tag)) >= 2 + 2 + 1 + 2  # namespaces, veths, bridge, rules
    for node in crashed.state["nodes"]:
        os.killpg(node["pid"], 9)
    (crashed.dir / "testnet.json").unlink()
    out = crashed.run("down").stdout
    assert "removed" in out
    assert testnet_hosts.leftovers(tag) == []
    assert "removed" not in crashed.run("down").stdout  # idempotent


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")
def test_not_root_is_one_clear_line():
    with tempfile.TemporaryDirectory(prefix="obol-hosts-") as name:  # a directory nobody can use
        directory = Path(name)
        directory.chmod(0o777)
        proc = as_nobody(directory)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "obol-testnet: --hosts needs root (network namespaces, veth pairs, a bridge): "
        "run it as root"
    ]


def as_nobody(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["setpriv", "--reuid", "nobody", "--regid", "nogroup", "--clear-groups"]
        + program("obol-testnet", "scripts.testnet")
        + ["--dir", str(directory / "net"), "up", "--hosts", "--network", "regtest"],
        capture_output=True,
        text=True,
        timeout=60,
        env=process_env(),
        stdin=subprocess.DEVNULL,
    )
