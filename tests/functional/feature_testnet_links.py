"""System tests of ``obol-testnet link`` and ``up --wan``: emulated WAN links between hosts.

A real ``--hosts`` network (a namespace per node, scripts/testnet_hosts.py), the real
link emulator and kernel rules; RTTs measured from inside the nodes' namespaces with
``ping -U`` (user-space times: the delay is applied where packets arrive, after the
kernel's receive timestamp).  Bounds are generous: the machine is noisy.

Scenario: up --wan world gives every pair its drawn link, the nodes sync over them;
``link 0 1 --delay 80ms`` changes the measured RTT of that pair only; ``link --all
--clear`` removes every rule; ``down`` stops the emulator; ``chaos --wan`` draws
profiles and puts the links back.  Needs root, iptables and
NetfilterQueue; skipped, saying why, otherwise.
"""

from __future__ import annotations

import json
import re
import statistics

import pytest

from scripts import testnet_hosts
from scripts.linkrules import chain_rules, missing_tools
from tests.functional.feature_testnet_hosts import HostNet

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(
        testnet_hosts.missing_requirements() is not None,
        reason=f"namespace tests: {testnet_hosts.missing_requirements()}",
    ),
    pytest.mark.skipif(missing_tools() is not None, reason=f"link tests: {missing_tools()}"),
]


def rtt(net: HostNet, a: int, b: int, count: int = 10) -> float:
    """The median RTT (seconds) from node a's namespace to node b, by ping -U."""
    out = net.inside(
        a, "ping", "-U", "-n", "-c", str(count), "-i", "0.05", "-W", "2", net.node(b)["ip"]
    ).stdout
    times = [float(ms) / 1000 for ms in re.findall(r"time=([0-9.]+) ms", out)]
    assert times, out
    return statistics.median(times)


def test_wan_profile_link_clear_and_down(tmp_path):
    net = HostNet(tmp_path / "net")
    try:
        net.run(
            "up", "--hosts", "--nodes", "3", "--miners", "1", "--network", "regtest",
            "--wan", "world", "--seed", "3",
        )  # fmt: skip
        state = net.state
        assert sorted(state["links"]) == ["0-1", "0-2", "1-2"]
        assert state["wan"] == "world" and state["link_emulator"]
        for i in range(3):
            assert len(chain_rules(net.node(i)["netns"])) == 2  # from each other node
        drawn = state["links"]["0-2"]["delay"]
        assert 0.004 <= drawn <= 0.2
        assert 2 * drawn * 0.9 <= rtt(net, 0, 2) <= 2 * drawn * 1.1 + 0.015
        status = json.loads(net.run("status", "--json").stdout)
        assert status["links"]["profile"] == "world"
        assert status["links"]["emulator"] == state["link_emulator"]
        assert "profile world (seed 3)" in net.run("status").stdout
        # blocks cross the emulated links (bootstrap mined 100 on node 0)
        net.run("mine", "3", "--node", "0")
        net.run("wait-converged", "--timeout", "60")

        net.run("link", "0", "1", "--delay", "80ms")
        assert 0.155 <= rtt(net, 0, 1) <= 0.2
        assert 2 * drawn * 0.9 <= rtt(net, 0, 2) <= 2 * drawn * 1.1 + 0.015  # unchanged
        assert "80ms" in net.run("link").stdout

        net.run("link", "--all", "--clear")
        assert all(chain_rules(n["netns"]) == [] for n in net.state["nodes"])
        assert net.state["links"] == {}
        assert rtt(net, 0, 1) < 0.02
    finally:
        net.run("down", "--clean", check=False)
    assert net.dir.exists() is False
    assert testnet_hosts.leftovers(testnet_hosts.tag_of(net.dir)) == []


def test_bad_links_chaos_profiles_and_down(tmp_path):
    """One small network: refusals, a cut link, chaos --wan puts the links back, down."""
    net = HostNet(tmp_path / "net")
    try:
        net.run("up", "--hosts", "--nodes", "2", "--miners", "0", "--network", "regtest")
        bad = net.run("link", "0", "0", "--delay", "5ms", check=False)
        assert bad.returncode == 1 and "itself" in bad.stderr
        bad = net.run("link", "0", "1", "--delay", "fast", check=False)
        assert bad.returncode == 1 and "not a duration" in bad.stderr
        bad = net.run("link", "0", "1", check=False)
        assert bad.returncode == 1 and "--delay" in bad.stderr
        net.run("link", "0", "1", "--loss", "100%")  # a cut link: nothing gets through
        out = net.inside(0, "ping", "-c", "2", "-i", "0.05", "-W", "1", net.node(1)["ip"])
        assert out.returncode != 0
        net.run("link", "0", "1", "--delay", "5ms")
        out = net.run("chaos", "--duration", "4", "--wan", "--seed", "3").stdout
        assert "WAN links: profile" in out and "chaos: all invariants hold" in out, out
        assert "WAN links as before the run: 1 pair(s)" in out
        # the fresh node of the last invariant joined; the one link set before is back
        assert list(net.state["links"]) == ["0-1"]
        assert net.state["links"]["0-1"]["delay"] == 0.005
        pid = net.state["link_emulator"]
        net.run("down")
        assert not (net.dir / "links" / "linkemu.pid").exists()
        assert not _alive(pid)
    finally:
        net.run("down", "--clean", check=False)


def _alive(pid: int) -> bool:
    try:
        return b"scripts.linkemu" in open(f"/proc/{pid}/cmdline", "rb").read()
    except OSError:
        return False
