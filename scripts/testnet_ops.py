"""What ``obol-testnet`` does to a running network: start nodes, link them, partition and heal,
check convergence, mine on regtest, move coins, and collect status.

Everything goes through the nodes' HTTP API (``testnet_lib.Api``) and the
``obol-wallet`` program (``testnet_lib.WalletCli``).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import testnet_hosts, testnet_links
from .testnet_lib import (
    BAN_SECONDS,
    COIN,
    HOSTS_PEER_TIMEOUT,
    HOSTS_PING_INTERVAL,
    Api,
    ApiError,
    NodeInfo,
    PortInUse,
    State,
    Testnet,
    TestnetError,
    WalletCliError,
    connected_components,
    free_port,
    host_of,
    node_running,
    spawn_node,
    try_get,
    wait_for,
    wait_ready,
)

PARTITION_REASON = "testnet-partition"  # the reason of the bans `partition` sets
LINK_TIMEOUT = 30.0  # seconds for the links of a topology to handshake
SYNC_TIMEOUT = 30.0  # seconds for a node to reach another's tip (regtest mining)
BOOTSTRAP_BATCH = 10  # blocks each regtest miner mines in turn at `up`
# --hosts: seconds for the connections across a kernel cut to time out (a ping, no pong)
CUT_TIMEOUT = 2 * (HOSTS_PING_INTERVAL + HOSTS_PEER_TIMEOUT) + 5.0


def running(state: State) -> list[NodeInfo]:
    return [n for n in state.nodes if node_running(n)]


def peer_hosts(api: Api) -> set[str] | None:
    """IPs of the node's established peers (None if it does not answer)."""
    peers = try_get(api, "peers")
    if peers is None:
        return None
    return {
        p["address"].rpartition(":")[0].strip("[]") for p in peers if p.get("established", True)
    }


def group_of(state: State) -> dict[int, int]:
    """Node index -> its group in the current partition (every node in group 0 when healed)."""
    if not state.partition:
        return {n.index: 0 for n in state.nodes}
    groups = {i: g for g, members in enumerate(state.partition) for i in members}
    return {n.index: groups.get(n.index, len(state.partition)) for n in state.nodes}


def connect(tn: Testnet, a: NodeInfo, b: NodeInfo) -> bool:
    """Have node a dial node b (POST /peers); True if connected or already connected."""
    try:
        tn.client(a).post("peers", {"connect": b.p2p})
        return True
    except ApiError as exc:
        return exc.code == "already-connected"
    except OSError:
        return False


def linked(tn: Testnet, a: NodeInfo, b: NodeInfo) -> bool:
    hosts_a = peer_hosts(tn.client(a))
    hosts_b = peer_hosts(tn.client(b))
    return bool(hosts_a and hosts_b and b.host in hosts_a and a.host in hosts_b)


def wanted_links(state: State) -> list[tuple[NodeInfo, NodeInfo]]:
    """Topology links between running nodes on the same side of the partition (lower, higher)."""
    groups = group_of(state)
    live = {n.index for n in running(state)}
    return [
        (state.nodes[a], state.nodes[b])
        for a, b in state.edges
        if a in live and b in live and groups[a] == groups[b]
    ]


def wait_links(
    tn: Testnet, state: State, links: list[tuple[NodeInfo, NodeInfo]], timeout: float = LINK_TIMEOUT
) -> None:
    """Dial (higher index -> lower) and wait until every link has an established handshake."""
    pending = list(links)
    deadline = time.monotonic() + timeout
    dialled: dict[tuple[int, int], float] = {}
    while pending:
        for a, b in pending:
            key = (a.index, b.index)
            if time.monotonic() - dialled.get(key, 0.0) > 2.0:  # (re)dial now and then
                connect(tn, b, a)
                dialled[key] = time.monotonic()
        pending = [(a, b) for a, b in pending if not linked(tn, a, b)]
        if not pending:
            return
        if time.monotonic() > deadline:
            missing = ", ".join(f"{a.index}-{b.index}" for a, b in pending)
            raise TestnetError(
                f"timed out after {timeout:g}s waiting for handshakes on links {missing}"
            )
        time.sleep(0.1)


# --- starting nodes --------------------------------------------------------------------------


def launch(tn: Testnet, state: State, nodes: list[NodeInfo]) -> None:
    """Start ``nodes`` at once and wait for each API; on a port taken meanwhile, pick new ports."""
    for attempt in range(3):
        for node in nodes:
            spawn_node(state, node)
        retry = []
        errors = []
        for node in nodes:
            try:
                wait_ready(tn, node)
                check_host(node)
            except PortInUse as exc:
                if state.base_port is not None or state.hosts is not None or attempt == 2:
                    errors.append(str(exc))
                retry.append(node)
            except TestnetError as exc:
                errors.append(str(exc))
        if errors:
            raise TestnetError("\n".join(errors))
        if not retry:
            return
        for node in retry:
            node.pid = None
            node.p2p_port = free_port(node.host)
            node.api_port = free_port("127.0.0.1")
        nodes = retry


def check_host(node: NodeInfo) -> None:
    """On a host: the pid recorded is the node's, running inside the node's namespace."""
    if node.netns is None or node.pid is None:
        return
    inside = testnet_hosts.netns_of_pid(node.pid)
    if inside != node.netns:
        raise TestnetError(
            f"node {node.index}: pid {node.pid} runs in namespace {inside or 'unknown'}, "
            f"not {node.netns}"
        )


def after_start(tn: Testnet, state: State, node: NodeInfo) -> list[str]:
    """Apply the partition to a node that just started (or lift stale partition bans).

    On hosts the kernel holds the partition (rules in the namespaces): nothing to do."""
    if state.hosts is not None:
        return []
    notes = []
    api = tn.client(node)
    groups = group_of(state)
    if state.partition:
        for other in state.nodes:
            if groups[other.index] != groups[node.index]:
                api.post(
                    "bans", {"host": other.host, "seconds": BAN_SECONDS, "reason": PARTITION_REASON}
                )
    else:
        for ban in api.get("bans", admin=True):
            if ban.get("reason") == PARTITION_REASON:
                api.delete(f"bans/{ban['host']}")
                notes.append(f"node {node.index}: lifted the partition ban on {ban['host']}")
    return notes


# --- partition and heal ------------------------------------------------------------------------


def parse_groups(state: State, specs: list[str]) -> list[list[int]]:
    groups: list[list[int]] = []
    seen: set[int] = set()
    for spec in specs:
        try:
            members = [int(x) for x in spec.split(",") if x.strip() != ""]
        except ValueError:
            raise TestnetError(f"bad group {spec!r}: expected node indexes like 0,1") from None
        for i in members:
            state.node(i)
            if i in seen:
                raise TestnetError(f"node {i} is in two groups")
            seen.add(i)
        if members:
            groups.append(sorted(members))
    rest = [n.index for n in state.nodes if n.index not in seen]
    if rest:
        groups.append(rest)
    if len(groups) < 2:
        raise TestnetError("a partition needs at least two groups, e.g. `partition 0,1 2,3`")
    return groups


def partition(tn: Testnet, state: State, groups: list[list[int]], settle: bool = True) -> None:
    """Cut the links between groups; keep each group connected.

    Loopback: every node bans the IPs of the other groups through its admin API.
    Hosts: every namespace drops what comes from the other groups (the nodes are not
    asked anything); their connections across the cut stall until pings time out.
    ``settle``: return only once no connection crosses the cut.
    """
    state.partition = groups
    side = group_of(state)
    live = running(state)
    if state.hosts is not None:
        testnet_hosts.cut(state.nodes, side)
    for node in live if state.hosts is None else []:
        api = tn.client(node)
        for other in state.nodes:
            if side[other.index] != side[node.index]:
                api.post(
                    "bans", {"host": other.host, "seconds": BAN_SECONDS, "reason": PARTITION_REASON}
                )
    # The cut may split a group along the topology (a line cut as 0,2 | 1,3): bridge its pieces.
    live_ids = {n.index for n in live}
    extra = []
    for members in groups:
        pieces = connected_components([i for i in members if i in live_ids], state.edges)
        for left, right in itertools.pairwise(pieces):
            extra.append((state.nodes[left[0]], state.nodes[right[0]]))
    wait_links(tn, state, wanted_links(state) + extra)
    if not settle:
        return
    wait_for(
        lambda: not cross_links(tn, state),
        CUT_TIMEOUT if state.hosts is not None else 10,
        "connections across the partition to close",
    )


def cross_links(tn: Testnet, state: State) -> list[tuple[int, int]]:
    """Established connections between nodes of different groups."""
    side = group_of(state)
    by_host = {n.host: n.index for n in state.nodes}
    found = []
    for node in running(state):
        for host in peer_hosts(tn.client(node)) or ():
            other = by_host.get(host)
            if other is not None and side[other] != side[node.index]:
                found.append((node.index, other))
    return found


def heal(tn: Testnet, state: State) -> list[str]:
    """Lift the partition's bans and reconnect the topology's links.

    Hosts: empty the namespaces' partition rules and nothing more: the nodes find each
    other again by themselves (persistent peers redialled, address-book slots refilled).
    """
    notes = []
    state.partition = None
    if state.hosts is not None:
        testnet_hosts.mend(state.nodes)
        return ["hosts: partition rules removed; the nodes reconnect by themselves"]
    for node in running(state):
        api = tn.client(node)
        for ban in api.get("bans", admin=True):
            if ban.get("reason") == PARTITION_REASON:
                api.delete(f"bans/{ban['host']}")
            else:
                notes.append(f"node {node.index} still bans {ban['host']} ({ban.get('reason')})")
    wait_links(tn, state, wanted_links(state))
    return notes


# --- convergence ------------------------------------------------------------------------------


@dataclass
class Tip:
    index: int
    height: int | None
    tip: str | None
    utxo_hash: str | None


def tips(tn: Testnet, state: State, utxo: bool = True) -> list[Tip]:
    rows = []
    for node in running(state):
        api = tn.client(node)
        status = try_get(api, "status")
        utxos = try_get(api, "utxoset") if utxo and status else None
        rows.append(
            Tip(
                node.index,
                status and status["height"],
                status and status["tip"],
                utxos["hash"] if utxos and utxos["tip"] == status["tip"] else None,
            )
        )
    return rows


def agree(rows: list[Tip], utxo: bool = True) -> bool:
    if not rows or any(r.tip is None for r in rows):
        return False
    if len({r.tip for r in rows}) != 1:
        return False
    return not utxo or (
        None not in {r.utxo_hash for r in rows} and len({r.utxo_hash for r in rows}) == 1
    )


# --- regtest mining ---------------------------------------------------------------------------


def mine(tn: Testnet, node: NodeInfo, blocks: int) -> dict[str, Any]:
    """POST /mine on a regtest node, paying its wallet."""
    return tn.client(node).post(
        "mine", {"blocks": blocks, "address": node.address}, timeout=60 + blocks * 0.5
    )


def status_of(tn: Testnet, node: NodeInfo) -> dict | None:
    return try_get(tn.client(node, timeout=5), "status")


def wait_tip(tn: Testnet, node: NodeInfo, tip: str, timeout: float = SYNC_TIMEOUT) -> bool:
    """Wait until ``node`` has ``tip`` (True) or give up quietly (False)."""
    try:
        wait_for(lambda: (status_of(tn, node) or {}).get("tip") == tip, timeout, "sync")
        return True
    except TestnetError:
        return False


def bootstrap(tn: Testnet, state: State, say: Callable[[str], None]) -> None:
    """Regtest: mine so that every miner's wallet holds mature coins.

    Each miner mines BOOTSTRAP_BATCH blocks in turn, then the miners take turns
    until the first batch is COINBASE_MATURITY blocks deep.  Before a miner
    mines, it waits for the previous batch so that no fork appears.
    """
    miners = [n for n in running(state) if n.miner]
    if not miners:
        return
    maturity = state.maturity
    start = (status_of(tn, miners[0]) or {}).get("height", 0)
    target = start + BOOTSTRAP_BATCH * len(miners) + maturity
    say(f"mining {target - start} blocks so that every miner's wallet has mature coins...")
    tip = None
    turn = 0
    height = start
    while height < target:
        node = miners[turn % len(miners)]
        if tip is not None:
            wait_tip(tn, node, tip)
        answer = mine(tn, node, min(BOOTSTRAP_BATCH, target - height))
        tip, height = answer["hashes"][-1], answer["height"]
        turn += 1
    assert tip is not None  # target > start: the loop mined at least one batch
    for node in running(state):
        wait_tip(tn, node, tip)


# --- traffic ----------------------------------------------------------------------------------


class Traffic:
    """Random payments between the nodes' wallets (and, on regtest, blocks at a steady pace).

    ``step()`` does whatever is due and returns at once; call it in a loop.
    A payment goes from a random running node's wallet (through that node's
    API) to another node's wallet address.  A wallet that cannot pay is left
    alone for a while.  On regtest a block is mined every ``block_interval``
    seconds, the miners taking turns.
    """

    def __init__(
        self,
        tn: Testnet,
        rate: float,
        block_interval: float | None,
        say: Callable[[str], None],
        rng: random.Random | None = None,
    ) -> None:
        self.tn = tn
        self.rate = rate
        self.block_interval = block_interval
        self.say = say
        self.rng = rng or random.Random()
        now = time.monotonic()
        self.next_tx = now
        self.next_block = now + (block_interval or 0)
        self.broke_until: dict[int, float] = {}  # wallet index -> when to try it again
        self.turn = 0
        self.sent = 0
        self.failed = 0
        self.skipped = 0  # attempts from a wallet with no spendable coins
        self.blocks = 0
        self.last_error = ""
        self.acked: list[tuple[int, str]] = []  # (source node, txid) of every payment accepted
        self.resubmitted = 0  # payments a wallet's send put back at a node that had lost them

    def step(self) -> float:
        """Do what is due; the seconds until something is due next."""
        state = self.tn.load()
        now = time.monotonic()
        if self.rate > 0 and now >= self.next_tx:
            self.next_tx = max(self.next_tx + 1.0 / self.rate, now)
            self.send_one(state)
        now = time.monotonic()
        if state.mines_on_demand and self.block_interval and now >= self.next_block:
            self.next_block = max(self.next_block + self.block_interval, now)
            self.mine_one(state)
        due = [self.next_tx] if self.rate > 0 else []
        if state.mines_on_demand and self.block_interval:
            due.append(self.next_block)
        return max(0.0, min(due) - time.monotonic()) if due else 1.0

    def send_one(self, state: State) -> None:
        now = time.monotonic()
        live = running(state)
        sources = [n for n in live if self.broke_until.get(n.index, 0) <= now]
        if not sources or len(state.nodes) < 2:
            return
        source = self.rng.choice(sources)
        target = self.rng.choice([n for n in state.nodes if n.index != source.index])
        amount = format_coins(self.rng.randrange(COIN // 100, COIN * 2))
        wallet = self.tn.wallet(state, source)
        try:
            answer = wallet.send(target.address, amount)
        except WalletCliError as exc:
            self.resubmitted += wallet.resubmitted()
            if exc.code == "insufficient-funds":  # nothing spendable (yet): try it later
                self.skipped += 1
                self.broke_until[source.index] = now + 10.0
            else:
                self.failed += 1
                self.last_error = f"node {source.index}: {exc.code}: {exc.message}"[:160]
                self.broke_until[source.index] = now + 3.0
            return
        self.resubmitted += wallet.resubmitted()
        self.sent += 1
        self.acked.append((source.index, answer["txid"]))
        self.say(
            f"tx {answer['txid'][:16]} {amount} coins node {source.index} -> node {target.index}"
        )

    def mine_one(self, state: State) -> None:
        miners = [n for n in running(state) if n.miner]
        if not miners:
            return
        node = miners[self.turn % len(miners)]
        self.turn += 1
        try:
            answer = mine(self.tn, node, 1)
        except (OSError, ApiError) as exc:
            self.last_error = f"mining on node {node.index}: {exc}"
            return
        self.blocks += 1
        self.say(f"block {answer['height']} {answer['hashes'][-1][:16]} mined by node {node.index}")


def format_coins(units: int) -> str:
    whole, frac = divmod(units, COIN)
    return f"{whole}.{frac:08d}".rstrip("0").rstrip(".")


# --- status -----------------------------------------------------------------------------------


def collect_status(tn: Testnet, state: State) -> dict[str, Any]:
    rows = []
    now = time.time()
    for node in state.nodes:
        row: dict[str, Any] = {
            "index": node.index,
            "p2p": node.p2p,
            "api": node.api_url,
            "miner": node.miner,
            "pid": node.pid,
            "netns": node.netns,
            "ip": node.ip,
            "state": "stopped",
        }
        if node_running(node):
            api = tn.client(node, timeout=5)
            status = try_get(api, "status")
            row["state"] = "running" if status else "unreachable"
            if status:
                block = try_get(api, f"blocks/{status['tip']}") or {}
                stamp = block.get("timestamp")
                row.update(
                    height=status["height"],
                    tip=status["tip"],
                    peers=status["peers"],
                    mempool=status["mempool"]["count"],
                    hashrate=status["miner"]["hashrate"] if status["miner"]["enabled"] else None,
                    syncing=status["syncing"],
                    last_block_age=round(now - stamp, 1) if stamp and status["height"] else None,
                )
        rows.append(row)
    live = [r for r in rows if r["state"] == "running"]
    tip_set = {r["tip"] for r in live}
    return {
        "network": state.network,
        "dir": str(tn.dir),
        "topology": state.topology,
        "partition": state.partition,
        "nodes": rows,
        "agree": bool(live)
        and len(tip_set) == 1
        and len(live) == sum(r["state"] != "stopped" for r in rows),
        "height": max((r["height"] for r in live), default=None),
        "links": testnet_links.links_status(tn, state),
    }


def host_table(count: int) -> str:
    return ", ".join(host_of(i) for i in range(count))
