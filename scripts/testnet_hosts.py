"""``obol-testnet up --hosts``: a host per node, made of Linux network namespaces.

The layout of one network (its tag: 6 hex digits of a hash of its directory, so
that two networks coexist)::

    machine (root namespace)                      node i: namespace obn-<tag>-<i>
      bridge obr-<tag>, address 10.X.Y.1/24  <--   veth obh<tag>i<i>  ==  eth0 10.X.Y.(i+2)/24
                                                   lo up, default route via 10.X.Y.1

A node listens for P2P and for its API on its own address; the machine reaches
every API through the bridge.  Traffic between nodes is bridged (layer 2): no
IP forwarding is needed.  When the kernel passes bridged frames through the
machine's iptables (br_netfilter), a FORWARD rule accepts the bridge's own
traffic, and an INPUT rule the answers of the nodes' APIs, so that a host
firewall cannot drop them; both carry the comment ``obol-testnet:<tag>``.

Every namespace has an iptables chain OBOL-PARTITION, jumped to first from
INPUT: ``partition`` fills it with DROP rules for the addresses across the cut
(each side drops what the other sends, so established connections stall as on
a real cut: no RST, no ICMP), ``heal`` empties it.  Other fault injectors (the
link emulator) keep their rules in chains of their own.

Everything is named from the tag, so ``teardown`` removes a network's
namespaces, veths, bridge and rules from the tag alone: after a crash, or with
the state file gone.  Root is needed (and the ``ip`` and ``iptables`` programs).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from .testnet_lib import HostNet, NodeInfo, TestnetError

PARTITION_CHAIN = "OBOL-PARTITION"  # per namespace: the DROP rules of a partition
SUBNET_PREFIX = 24  # each network is a /24: nodes .2 .. .254
FIRST_NODE_HOST = 2  # node i has host number FIRST_NODE_HOST + i (.1 is the bridge)
MAX_HOST_NODES = 253  # .2 .. .254
SECOND_OCTETS = range(64, 192)  # 10.X.Y.0/24: X from here (clear of 10.0/16-style defaults)
TOOLS = ("ip", "iptables", "iptables-restore")
COMMAND_TIMEOUT = 30.0  # seconds for one `ip` or `iptables` run
NETNS_DIR = Path("/run/netns")  # where `ip netns` keeps its named namespaces


def tag_of(directory: Path) -> str:
    return hashlib.sha256(str(directory.absolute()).encode()).hexdigest()[:6]


def bridge_name(tag: str) -> str:
    return f"obr-{tag}"


def netns_name(tag: str, index: int) -> str:
    return f"obn-{tag}-{index}"


def veth_name(tag: str, index: int) -> str:
    return f"obh{tag}i{index}"  # at most 13 of the 15 characters an interface name may have


def firewall_comment(tag: str) -> str:
    return f"obol-testnet:{tag}"


def node_ip(hosts: HostNet, index: int) -> str:
    net = ipaddress.ip_network(hosts.subnet)
    return str(net.network_address + FIRST_NODE_HOST + index)


def missing_requirements() -> str | None:
    """Why namespaces cannot be made here (None: they can)."""
    if os.geteuid() != 0:
        return "--hosts needs root (network namespaces, veth pairs, a bridge): run it as root"
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    if absent:
        return (
            f"--hosts needs {', '.join(absent)} (Debian: apt-get install iproute2 iptables, "
            "or `make hosts`)"
        )
    return None


def can_make_namespaces() -> bool:
    """Whether this machine lets us make a network namespace (a container may not)."""
    probe = f"obol-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode == 0
    if made:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return made


def require() -> None:
    reason = missing_requirements()
    if reason is not None:
        raise TestnetError(reason)


def run(args: list[str], stdin: str | None = None, check: bool = True) -> str:
    """Run one `ip`/`iptables` command; its output.  TestnetError if it fails and ``check``."""
    proc = subprocess.run(
        args, input=stdin, capture_output=True, text=True, timeout=COMMAND_TIMEOUT
    )
    if check and proc.returncode != 0:
        raise TestnetError(f"{shlex.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


# --- planning --------------------------------------------------------------------------------


def used_networks() -> list[ipaddress.IPv4Network]:
    """IPv4 networks this machine already routes or has addresses in."""
    found = []
    for entry in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        dst = entry.get("dst", "")
        if dst and dst != "default":
            found.append(ipaddress.ip_network(dst, strict=False))
    for link in json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        for addr in link.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{addr['local']}/{addr['prefixlen']}", strict=False))
    return [n for n in found if isinstance(n, ipaddress.IPv4Network)]


def plan(directory: Path) -> HostNet:
    """The bridge and subnet of the network in ``directory``: a free 10.X.Y.0/24 chosen
    from its tag (the next free one if that clashes with a route of this machine)."""
    tag = tag_of(directory)
    used = used_networks()
    start = int(tag, 16)
    count = len(SECOND_OCTETS) * 256
    for step in range(count):
        slot = (start + step) % count
        x, y = SECOND_OCTETS[slot // 256], slot % 256
        subnet = ipaddress.ip_network(f"10.{x}.{y}.0/{SUBNET_PREFIX}")
        if not any(subnet.overlaps(other) for other in used):
            return HostNet(
                tag=tag,
                bridge=bridge_name(tag),
                subnet=str(subnet),
                gateway=str(subnet.network_address + 1),
            )
    raise TestnetError("no free 10.X.Y.0/24 for the bridge: every one clashes with a route")


def assign(hosts: HostNet, node: NodeInfo) -> None:
    """Give ``node`` its namespace and address (P2P listens there too)."""
    if node.index >= MAX_HOST_NODES:
        raise TestnetError(f"--hosts: at most {MAX_HOST_NODES} nodes on one /24")
    node.netns = netns_name(hosts.tag, node.index)
    node.ip = node_ip(hosts, node.index)
    node.host = node.ip


# --- set up ----------------------------------------------------------------------------------


def bridge_up(hosts: HostNet) -> None:
    """The bridge with the machine's address, and the firewall rules that let it through."""
    prefix = ipaddress.ip_network(hosts.subnet).prefixlen
    run(["ip", "link", "add", hosts.bridge, "type", "bridge"])
    run(["ip", "addr", "add", f"{hosts.gateway}/{prefix}", "dev", hosts.bridge])
    run(["ip", "link", "set", hosts.bridge, "up"])
    comment = ["-m", "comment", "--comment", firewall_comment(hosts.tag)]
    bridged = ["-i", hosts.bridge, "-o", hosts.bridge]
    run(["iptables", "-w", "-I", "FORWARD", *bridged, *comment, "-j", "ACCEPT"])
    run(["iptables", "-w", "-I", "INPUT", "-i", hosts.bridge, *comment, "-j", "ACCEPT"])


def host_up(hosts: HostNet, node: NodeInfo) -> None:
    """Node ``node``'s namespace, its veth pair on the bridge, its address and route, and
    its (empty) partition chain."""
    assert node.netns is not None and node.ip is not None
    prefix = ipaddress.ip_network(hosts.subnet).prefixlen
    veth = veth_name(hosts.tag, node.index)
    run(["ip", "netns", "add", node.netns])
    run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", node.netns])
    run(["ip", "link", "set", veth, "master", hosts.bridge, "up"])
    run(
        ["ip", "-n", node.netns, "-batch", "-"],
        stdin=(
            "link set lo up\n"
            f"addr add {node.ip}/{prefix} dev eth0\n"
            "link set eth0 up\n"
            f"route add default via {hosts.gateway}\n"
        ),
    )
    set_partition_rules(node.netns, [])


def setup(hosts: HostNet, nodes: Iterable[NodeInfo]) -> None:
    """Make the whole network from nothing (leftovers of an earlier run are removed first)."""
    require()
    teardown(hosts.tag)
    bridge_up(hosts)
    for node in nodes:
        host_up(hosts, node)


def ensure_host(hosts: HostNet, node: NodeInfo) -> None:
    """Make ``node``'s host if it is missing (a node added later, a namespace deleted)."""
    require()
    if not link_exists(hosts.bridge):
        bridge_up(hosts)
    if not (NETNS_DIR / (node.netns or "")).exists():
        host_up(hosts, node)


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


# --- partitions -------------------------------------------------------------------------------


def set_partition_rules(netns: str, blocked: list[str]) -> None:
    """Make namespace ``netns``'s partition chain drop exactly what comes from ``blocked``.

    iptables-restore --noflush replaces the chain's rules in one step (declaring a chain
    flushes it) and leaves every other chain alone; the jump from INPUT is added once.
    """
    inside = ["ip", "netns", "exec", netns]
    lines = ["*filter", f":{PARTITION_CHAIN} - [0:0]"]
    lines += [f"-A {PARTITION_CHAIN} -s {ip}/32 -j DROP" for ip in blocked]
    lines.append("COMMIT")
    run([*inside, "iptables-restore", "-w", "--noflush"], stdin="\n".join(lines) + "\n")
    if not has_jump(netns):
        run([*inside, "iptables", "-w", "-I", "INPUT", "1", "-j", PARTITION_CHAIN])


def has_jump(netns: str) -> bool:
    rules = run(["ip", "netns", "exec", netns, "iptables", "-w", "-S", "INPUT"])
    return f"-A INPUT -j {PARTITION_CHAIN}" in rules.splitlines()


def partition_rules(netns: str) -> list[str]:
    """The addresses namespace ``netns`` drops now (its partition chain)."""
    out = run(["ip", "netns", "exec", netns, "iptables", "-w", "-S", PARTITION_CHAIN], check=False)
    return [
        line.split()[3].removesuffix("/32")
        for line in out.splitlines()
        if line.startswith(f"-A {PARTITION_CHAIN} -s ")
    ]


def cut(nodes: list[NodeInfo], side: dict[int, int]) -> None:
    """Every node's namespace drops what comes from the nodes of another side."""
    for node in nodes:
        assert node.netns is not None
        blocked = [o.ip for o in nodes if side[o.index] != side[node.index] and o.ip]
        set_partition_rules(node.netns, blocked)


def mend(nodes: list[NodeInfo]) -> None:
    """Empty every partition chain; nothing is dialled: the nodes reconnect by themselves."""
    for node in nodes:
        assert node.netns is not None
        set_partition_rules(node.netns, [])


# --- tear down -------------------------------------------------------------------------------


def leftovers(tag: str) -> list[str]:
    """What of network ``tag`` exists on this machine: namespaces, links, firewall rules."""
    found = [p.name for p in NETNS_DIR.glob(f"obn-{tag}-*")] if NETNS_DIR.exists() else []
    found += [p.name for p in Path("/sys/class/net").glob(f"ob?{tag}*")]
    found += [p.name for p in Path("/sys/class/net").glob(f"obr-{tag}")]
    found += firewall_rules(tag)
    return sorted(found)


def firewall_rules(tag: str) -> list[str]:
    """The machine's iptables rules of network ``tag`` (as `iptables -S` prints them)."""
    if shutil.which("iptables") is None:
        return []
    out = run(["iptables", "-w", "-S"], check=False)
    return [line for line in out.splitlines() if firewall_comment(tag) in line]


def teardown(tag: str) -> list[str]:
    """Remove everything of network ``tag``; safe to repeat.  What was removed."""
    removed = []
    if NETNS_DIR.exists():
        for path in sorted(NETNS_DIR.glob(f"obn-{tag}-*")):
            run(["ip", "netns", "del", path.name], check=False)  # its eth0 and veth go with it
            removed.append(path.name)
    for path in sorted(Path("/sys/class/net").glob(f"obh{tag}i*")):
        run(["ip", "link", "del", path.name], check=False)
        removed.append(path.name)
    if link_exists(bridge_name(tag)):
        run(["ip", "link", "del", bridge_name(tag)], check=False)
        removed.append(bridge_name(tag))
    for rule in firewall_rules(tag):
        words = shlex.split(rule)
        if words[:1] == ["-A"]:
            run(["iptables", "-w", "-D", *words[1:]], check=False)
            removed.append(f"iptables {rule}")
    return removed


def netns_of_pid(pid: int) -> str | None:
    """The named namespace process ``pid`` runs in (None: another one, or it is gone)."""
    try:
        inode = os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None
    if not NETNS_DIR.exists():
        return None
    for path in NETNS_DIR.iterdir():
        try:
            if os.stat(path).st_ino == inode:
                return path.name
        except OSError:
            continue
    return None
