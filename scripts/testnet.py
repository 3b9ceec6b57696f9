"""``obol-testnet``: run a local Obol network on this machine.

    obol-testnet [--dir DIR] COMMAND ...

The network's state (ports, pids, wallets, logs) is kept in DIR (default
``./testnet``); nodes run in the background, so every command is a separate
run of this program.  See docs/testnet.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from node.consensus.chainspec import ChainSpecError, load_spec

from . import dashboard, testnet_hosts, testnet_links
from . import testnet_chaos as chaos
from .linkrules import LinkError, LinkSpec, parse_duration, parse_loss, parse_rate
from .testnet_args import DEFAULTS, STATUS_INTERVAL, build_parser
from .testnet_lib import (
    HOST_BASE,
    MAX_NODES,
    STOP_TIMEOUT,
    ApiError,
    NodeInfo,
    State,
    Testnet,
    TestnetError,
    WalletCliError,
    edges_for_new_node,
    free_port,
    host_of,
    kill_node,
    log_tail,
    node_running,
    stop_nodes,
    topology_edges,
)
from .testnet_ops import (
    Traffic,
    after_start,
    agree,
    bootstrap,
    collect_status,
    group_of,
    heal,
    launch,
    mine,
    parse_groups,
    partition,
    running,
    tips,
    wait_links,
    wanted_links,
)

HOSTS_P2P_PORT = 9333  # --hosts: every node listens on its own address, on these ports
HOSTS_API_PORT = 9334
REGTEST_BLOCK_INTERVAL = 2.0  # seconds between the blocks `traffic`/`run` mine on regtest


def say(text: str) -> None:
    print(text, flush=True)


# --- up / add / start ------------------------------------------------------------------------


def new_node(tn: Testnet, state: State, index: int, miner: bool) -> NodeInfo:
    if index >= MAX_NODES:
        raise TestnetError(f"at most {MAX_NODES} nodes (127.0.0.{HOST_BASE}..)")
    home = tn.dir / f"node{index}"
    home.mkdir(parents=True, exist_ok=True)
    host = host_of(index)
    if state.hosts is not None:  # a host of its own: the same ports on every node
        p2p, api = (
            (state.base_port, state.base_port + 1)
            if state.base_port is not None
            else (HOSTS_P2P_PORT, HOSTS_API_PORT)
        )
    elif state.base_port is not None:
        p2p, api = state.base_port + 2 * index, state.base_port + 2 * index + 1
    else:
        p2p, api = free_port(host), free_port("127.0.0.1")
    node = NodeInfo(
        index=index,
        host=host,
        p2p_port=p2p,
        api_port=api,
        datadir=str(home / "data"),
        log=str(home / "node.log"),
        wallet=str(home / "wallet.json"),
        address="",
        miner=miner,
    )
    if state.hosts is not None:
        testnet_hosts.assign(state.hosts, node)
    return node


def make_wallets(tn: Testnet, state: State, nodes: list[NodeInfo]) -> None:
    """Create each node's wallet (if missing) and note its receive address."""

    def one(node: NodeInfo) -> None:
        wallet = tn.wallet(state, node)
        if not Path(node.wallet).exists():
            node.address = wallet.create()["address"]
        elif not node.address:
            node.address = wallet.address(offline=True)

    with ThreadPoolExecutor(min(4, len(nodes)) or 1) as pool:
        for future in [pool.submit(one, n) for n in nodes]:
            future.result()


def cmd_up(tn: Testnet, args: argparse.Namespace) -> int:
    with tn.locked():
        if tn.exists():
            state = tn.load()
            live = running(state)
            if live:
                say(
                    f"the test network in {tn.dir} is already running "
                    f"({len(live)} of {len(state.nodes)} nodes up): see `obol-testnet status`, "
                    f"or `obol-testnet down` first"
                )
                return 1
            conflicts = [
                f"--{k}"
                for k, v in (
                    ("nodes", len(state.nodes)),
                    ("network", state.network),
                    ("topology", state.topology),
                    ("miners", sum(n.miner for n in state.nodes)),
                    ("hosts", state.hosts is not None),
                    ("wan", state.wan),
                )
                if getattr(args, k) is not None and getattr(args, k) != v
            ]
            if conflicts:
                raise TestnetError(
                    f"{tn.dir} holds a stopped {len(state.nodes)}-node {state.network} "
                    f"network; {', '.join(conflicts)} differ: `obol-testnet down --clean` "
                    f"first for a new one"
                )
            say(f"restarting the {state.network} network in {tn.dir} ({len(state.nodes)} nodes)")
            fresh = False
        else:
            state = create_state(tn, args)
            fresh = True
            say(
                f"creating a {len(state.nodes)}-node {state.network} network in {tn.dir} "
                f"({state.topology} topology)"
            )
            make_wallets(tn, state, state.nodes)
            tn.save(state)
        if state.hosts is not None:
            say(
                f"hosts: bridge {state.hosts.bridge} {state.hosts.gateway}, "
                f"namespaces {state.nodes[0].netns}..{state.nodes[-1].netns}"
            )
            testnet_hosts.setup(state.hosts, state.nodes)
            if state.partition:
                testnet_hosts.cut(state.nodes, group_of(state))
            if state.links:
                testnet_links.apply(tn, state)
                tn.save(state)
                say(f"links: {len(state.links)} pair(s) emulated ({state.wan or 'set by `link`'})")
        try:
            launch(tn, state, state.nodes)
        except TestnetError as exc:
            raise TestnetError(
                f"{exc}\n(nodes that started are still running: "
                f"`obol-testnet --dir {tn.dir} down` stops them)"
            ) from None
        finally:
            tn.save(state)
        for node in state.nodes:
            for note in after_start(tn, state, node):
                say(note)
        tn.save(state)
        wait_links(tn, state, wanted_links(state))
    if state.mines_on_demand and fresh:
        bootstrap(tn, state, say)
    print_nodes(state)
    say(
        f"all {len(state.nodes)} nodes up and linked.  Next: obol-testnet --dir {tn.dir} "
        f"status | traffic | partition 0,1 2,3 | heal | down"
    )
    return 0


def print_nodes(state: State) -> None:
    say(f"{'node':<5} {'p2p':<20} {'api':<24} {'pid':>7}  {'miner':<5}  wallet address")
    for n in state.nodes:
        say(
            f"{n.index:<5} {n.p2p:<20} {n.api_url:<24} {n.pid or '-':>7}  "
            f"{'yes' if n.miner else 'no':<5}  {n.address}"
        )


def create_state(tn: Testnet, args: argparse.Namespace) -> State:
    n = args.nodes if args.nodes is not None else DEFAULTS["nodes"]
    miners = args.miners if args.miners is not None else DEFAULTS["miners"]
    topology = args.topology or DEFAULTS["topology"]
    network = args.network or DEFAULTS["network"]
    chain = None
    if getattr(args, "chain", None):
        if args.network:
            raise TestnetError("--network and --chain: give one")
        try:
            network = load_spec(args.chain).name
        except ChainSpecError as exc:
            raise TestnetError(exc.message) from None
        chain = str(Path(args.chain).resolve())
    if not 1 <= n <= MAX_NODES:
        raise TestnetError(f"--nodes must be in 1..{MAX_NODES}")
    if not 0 <= miners <= n:
        raise TestnetError("--miners must be between 0 and --nodes")
    if getattr(args, "hosts", None):
        testnet_hosts.require()
        if n > testnet_hosts.MAX_HOST_NODES:
            raise TestnetError(f"--hosts: at most {testnet_hosts.MAX_HOST_NODES} nodes")
    if getattr(args, "wan", None) and not getattr(args, "hosts", None):
        raise TestnetError("--wan needs --hosts (emulated links join the nodes' namespaces)")
    if args.base_port is not None and not 1024 <= args.base_port <= 65535 - 2 * n:
        raise TestnetError(f"--base-port must leave room for {2 * n} ports below 65536")
    tn.dir.mkdir(parents=True, exist_ok=True)
    tn.passphrase()
    edges = topology_edges(topology, n, random.Random(args.seed))
    state = State(
        network=network,
        topology=topology,
        edges=edges,
        nodes=[],
        base_port=args.base_port,
        chain=chain,
        hosts=testnet_hosts.plan(tn.dir) if getattr(args, "hosts", None) else None,
    )
    state.nodes = [new_node(tn, state, i, i < miners) for i in range(n)]
    if getattr(args, "wan", None):
        testnet_links.draw_profile(state, args.wan, args.seed or 0)
    return state


def cmd_add(tn: Testnet, args: argparse.Namespace) -> int:
    node, state = add_node(tn, args.miner, args.seed)
    say(
        f"node {node.index} started on {node.p2p} (API {node.api_url}), linked to "
        f"{', '.join(map(str, state.neighbours(node.index))) or 'nobody'}"
    )
    return 0


def add_node(tn: Testnet, miner: bool, seed: int | None) -> tuple[NodeInfo, State]:
    """Start one more node, linked in the spirit of the topology."""
    with tn.update() as state:
        node = new_node(tn, state, len(state.nodes), miner)
        make_wallets(tn, state, [node])
        edges = edges_for_new_node(state.topology, node.index, random.Random(seed))
        live = [n.index for n in running(state)]
        if live and not any(a in live for a, _b in edges):
            edges.append([live[-1], node.index])  # its topology neighbours are down: link it anyway
        state.edges += edges
        state.nodes.append(node)
        tn.save(state)
        if state.hosts is not None:
            testnet_hosts.ensure_host(state.hosts, node)
            if state.partition:
                testnet_hosts.cut(state.nodes, group_of(state))
            testnet_links.extend_profile(state, node.index)
            if state.links:
                testnet_links.apply(tn, state)
            tn.save(state)
        launch(tn, state, [node])
        tn.save(state)
        after_start(tn, state, node)
        wait_links(tn, state, [link for link in wanted_links(state) if node in link])
    return node, state


def cmd_start(tn: Testnet, args: argparse.Namespace) -> int:
    with tn.update() as state:
        node = state.node(args.index)
        if node_running(node):
            say(f"node {node.index} is already running (pid {node.pid})")
            return 1
        if state.hosts is not None:
            testnet_hosts.ensure_host(state.hosts, node)
            if state.links:  # the namespace may be new: its rules and queue with it
                testnet_links.apply(tn, state)
        launch(tn, state, [node])
        tn.save(state)
        for note in after_start(tn, state, node):
            say(note)
        wait_links(tn, state, [link for link in wanted_links(state) if node in link])
    say(f"node {node.index} started (pid {node.pid})")
    return 0


def cmd_stop(tn: Testnet, args: argparse.Namespace) -> int:
    with tn.update() as state:
        node = state.node(args.index)
        if not node_running(node):
            say(f"node {node.index} is not running")
            node.pid = None
            return 1
        pid = node.pid
        killed = stop_nodes([node])
    say(
        f"node {node.index} (pid {pid}) "
        + ("did not stop in time: killed" if killed else "stopped")
    )
    return 0


def cmd_kill(tn: Testnet, args: argparse.Namespace) -> int:
    with tn.update() as state:
        node = state.node(args.index)
        pid = node.pid
        if not kill_node(node):
            say(f"node {node.index} is not running")
            node.pid = None
            return 1
    say(f"node {node.index} (pid {pid}) killed with SIGKILL")
    return 0


def cmd_down(tn: Testnet, args: argparse.Namespace) -> int:
    if not tn.exists():
        say(f"no test network in {tn.dir}")
        testnet_links.remove(tn, None)  # leftovers of a crash, if any
        remove_hosts(testnet_hosts.tag_of(tn.dir))
        return 0
    with tn.update() as state:
        live = running(state)
        killed = stop_nodes(state.nodes)
        if state.links or testnet_links.link_set(tn).pid() is not None:
            testnet_links.remove(tn, state)  # the links' rules go before their namespaces
    if state.hosts is not None:
        remove_hosts(state.hosts.tag)
    say(
        f"stopped {len(live)} node(s)"
        + (
            f" (killed {', '.join(map(str, killed))}: "
            f"still running {STOP_TIMEOUT:g}s after SIGTERM)"
            if killed
            else ""
        )
    )
    if args.clean:
        if (tn.dir / "testnet.json").exists():
            shutil.rmtree(tn.dir)
            say(f"removed {tn.dir}")
    else:
        say(
            f"kept {tn.dir} (chains, wallets, logs): "
            "`obol-testnet up` restarts it, `down --clean` removes it"
        )
    return 0


def remove_hosts(tag: str) -> None:
    """Tear down the namespaces, veths, bridge and firewall rules of network ``tag``."""
    if not testnet_hosts.leftovers(tag):
        return
    testnet_hosts.require()
    removed = testnet_hosts.teardown(tag)
    say(f"hosts: removed {len(removed)} namespace(s), link(s) and firewall rule(s)")
    still = testnet_hosts.leftovers(tag)
    if still:
        raise TestnetError(f"hosts: could not remove {', '.join(still)}")


# --- link ------------------------------------------------------------------------------------


def cmd_link(tn: Testnet, args: argparse.Namespace) -> int:
    with tn.update() as state:
        testnet_links.require_hosts(state)
        if args.pair and args.all:
            raise TestnetError("link: either I J or --all, not both")
        if not args.pair and not args.all:
            if args.clear or link_spec(args) is not None:
                raise TestnetError("link: which link?  give I J, or --all")
            lines = testnet_links.render_links(testnet_links.links_status(tn, state))
            say("\n".join(lines) if lines else "no emulated links")
            return 0
        if args.pair and len(args.pair) != 2:
            raise TestnetError("link: give two nodes, I J")
        pairs = testnet_links.all_pairs(state) if args.all else [tuple(args.pair)]
        spec = None if args.clear else link_spec(args)
        if spec is None and not args.clear:
            raise TestnetError("link: say what the link does (--delay, --jitter, --loss, --rate)")
        testnet_links.set_links(state, pairs, spec)
        testnet_links.apply(tn, state)
    what = "cleared" if spec is None or spec.plain else spec.describe()
    say(f"links: {len(pairs)} pair(s) {what}; {len(state.links)} pair(s) emulated in all")
    return 0


def link_spec(args: argparse.Namespace) -> LinkSpec | None:
    """The link the flags describe (None: no flag given)."""
    if all(v is None for v in (args.delay, args.jitter, args.loss, args.rate)):
        return None
    try:
        return LinkSpec(
            delay=parse_duration(args.delay) if args.delay else 0.0,
            jitter=parse_duration(args.jitter) if args.jitter else 0.0,
            loss=parse_loss(args.loss) if args.loss else 0.0,
            rate=parse_rate(args.rate) if args.rate else 0.0,
        )
    except LinkError as exc:
        raise TestnetError(f"link: {exc}") from None


# --- partition / heal / wait-converged --------------------------------------------------------


def cmd_partition(tn: Testnet, args: argparse.Namespace) -> int:
    with tn.update() as state:
        groups = parse_groups(state, args.groups)
        partition(tn, state, groups)
    say("partitioned: " + " | ".join("{" + ",".join(map(str, g)) + "}" for g in groups))
    return 0


def cmd_heal(tn: Testnet, args: argparse.Namespace) -> int:
    with tn.update() as state:
        was = state.partition
        for note in heal(tn, state):
            say(note)
    say("healed: all links restored" if was else "no partition was in force; links restored")
    return 0


def cmd_wait_converged(tn: Testnet, args: argparse.Namespace) -> int:
    state = tn.load()
    deadline = time.monotonic() + args.timeout
    rows = []
    while time.monotonic() < deadline:
        state = tn.load()
        rows = tips(tn, state)
        if agree(rows):
            first = rows[0]
            # agree() holds only when every node answered a tip and one UTXO set hash
            assert first.tip is not None and first.utxo_hash is not None
            if args.json:
                print(
                    json.dumps(
                        {
                            "converged": True,
                            "height": first.height,
                            "tip": first.tip,
                            "utxo_hash": first.utxo_hash,
                            "nodes": [r.index for r in rows],
                        }
                    )
                )
            else:
                say(
                    f"converged: {len(rows)} running node(s) at height {first.height}, "
                    f"tip {first.tip[:16]}, UTXO set {first.utxo_hash[:16]}"
                )
            return 0
        time.sleep(0.25)
    if args.json:
        print(json.dumps({"converged": False, "nodes": [r.__dict__ for r in rows]}))
    else:
        say(f"not converged after {args.timeout:g}s:")
        say(f"{'node':<5} {'height':>7}  {'tip':<16}  {'utxo set':<16}")
        for r in rows:
            say(
                f"{r.index:<5} {r.height if r.height is not None else '-':>7}  "
                f"{(r.tip or 'unreachable')[:16]:<16}  {(r.utxo_hash or '-')[:16]:<16}"
            )
        if not rows:
            say("(no node is running)")
    return 1


# --- chaos ------------------------------------------------------------------------------------


def cmd_chaos(tn: Testnet, args: argparse.Namespace) -> int:
    return chaos.command(tn, args, lambda seed: add_node(tn, False, seed)[0], say)


# --- coins ------------------------------------------------------------------------------------


def cmd_send(tn: Testnet, args: argparse.Namespace) -> int:
    state = tn.load()
    source, target = state.node(args.source), state.node(args.target)
    if not node_running(source):
        raise TestnetError(f"node {source.index} is not running: its wallet works through its API")
    answer = tn.wallet(state, source).send(target.address, args.amount, fee_rate=args.fee_rate)
    if args.json:
        print(json.dumps(answer))
    else:
        say(
            f"node {source.index} -> node {target.index}: {args.amount} coins, "
            f"txid {answer['txid']}, fee {answer.get('fee')}"
        )
    return 0


def cmd_mine(tn: Testnet, args: argparse.Namespace) -> int:
    state = tn.load()
    if not state.mines_on_demand:
        raise TestnetError(f"`mine` is for regtest; this {state.network} network mines by itself")
    if args.node is None:
        live = running(state)
        candidates = [n for n in live if n.miner] or live
        if not candidates:
            raise TestnetError("no node is running")
        node = candidates[0]
    else:
        node = state.node(args.node)
    answer = mine(tn, node, args.blocks)
    if args.json:
        print(json.dumps(answer))
    else:
        say(
            f"node {node.index} mined {len(answer['hashes'])} block(s): height {answer['height']}, "
            f"tip {answer['hashes'][-1][:16] if answer['hashes'] else '-'}"
        )
    return 0


def cmd_traffic(tn: Testnet, args: argparse.Namespace) -> int:
    state = tn.load()
    interval = block_interval(state, args.block_interval)
    traffic = Traffic(
        tn,
        args.rate,
        interval,
        say if not args.quiet else (lambda _t: None),
        random.Random(args.seed),
    )
    end = time.monotonic() + args.duration if args.duration else None
    try:
        while (end is None or time.monotonic() < end) and (
            args.count is None or traffic.sent < args.count
        ):
            wait = traffic.step()
            if end is not None:
                wait = min(wait, max(0.0, end - time.monotonic()))
            time.sleep(wait)
    except KeyboardInterrupt:
        pass
    say(
        f"traffic: {traffic.sent} transaction(s) sent, {traffic.failed} refused, "
        f"{traffic.skipped} skipped (no spendable coins), {traffic.blocks} block(s) mined, "
        f"{traffic.resubmitted} lost by a node and put back by its wallet"
        + (f"; last error: {traffic.last_error}" if traffic.last_error else "")
    )
    return 0


def block_interval(state: State, requested: float | None) -> float | None:
    if not state.mines_on_demand:
        return None
    return REGTEST_BLOCK_INTERVAL if requested is None else (requested or None)


# --- status / logs ----------------------------------------------------------------------------


def fmt_rate(h: float | None) -> str:
    if h is None:
        return "-"
    for unit, scale in (("MH/s", 1e6), ("kH/s", 1e3)):
        if h >= scale:
            return f"{h / scale:.2f} {unit}"
    return f"{h:.0f} H/s"


def fmt_age(age: float | None) -> str:
    if age is None:
        return "-"
    age = max(0, age)
    if age < 120:
        return f"{age:.0f}s ago"
    return f"{age / 60:.0f}m ago"


def render_status(info: dict) -> str:
    parts = " | ".join("{" + ",".join(map(str, g)) + "}" for g in info["partition"] or [])
    lines = [
        f"obol {info['network']} network in {info['dir']} ({info['topology']}, "
        f"{len(info['nodes'])} nodes)" + (f"  PARTITIONED {parts}" if parts else ""),
        f"{'node':<5} {'p2p':<18} {'state':<11} {'height':>6}  {'tip':<12} {'peers':>5} "
        f"{'mempool':>7}  {'hashrate':>10}  {'last block':<10}",
    ]
    for r in info["nodes"]:
        name = f"{r['index']}{'*' if r['miner'] else ''}"
        if r["state"] == "running":
            lines.append(
                f"{name:<5} {r['p2p']:<18} {'running':<11} {r['height']:>6}  {r['tip'][:12]:<12} "
                f"{r['peers']:>5} {r['mempool']:>7}  {fmt_rate(r['hashrate']):>10}  "
                f"{fmt_age(r['last_block_age']):<10}" + ("  syncing" if r.get("syncing") else "")
            )
        else:
            lines.append(f"{name:<5} {r['p2p']:<18} {r['state']:<11}")
    live = [r for r in info["nodes"] if r["state"] == "running"]
    if not live:
        lines.append("no node is running")
    elif info["agree"]:
        lines.append(
            f"all {len(live)} running node(s) agree: "
            f"height {live[0]['height']}, tip {live[0]['tip'][:16]}"
        )
    else:
        lines.append(
            f"nodes DISAGREE: {len({r['tip'] for r in live})} different tips "
            f"among {len(live)} running node(s)"
        )
    lines.append("(* = miner)")
    lines += testnet_links.render_links(info["links"])
    return "\n".join(lines)


def cmd_status(tn: Testnet, args: argparse.Namespace) -> int:
    if not args.watch:
        info = collect_status(tn, tn.load())
        print(json.dumps(info, indent=2) if args.json else render_status(info), flush=True)
        return 0
    try:
        while True:
            info = collect_status(tn, tn.load())
            text = json.dumps(info) if args.json else render_status(info)
            if sys.stdout.isatty() and not args.json:
                sys.stdout.write("\x1b[H\x1b[J" + text + "\n")
            else:
                sys.stdout.write(text + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0


def cmd_logs(tn: Testnet, args: argparse.Namespace) -> int:
    node = tn.load().node(args.index)
    path = Path(node.log)
    if not path.exists():
        raise TestnetError(f"node {node.index} has no log yet ({path})")
    with open(path, "rb") as fh:
        if args.lines:
            say(log_tail(node, args.lines))
            fh.seek(0, os.SEEK_END)
        else:
            shutil.copyfileobj(fh, sys.stdout.buffer)
            sys.stdout.flush()
        if not args.follow:
            return 0
        try:
            while True:
                chunk = fh.read()
                if chunk:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                else:
                    time.sleep(0.2)
        except KeyboardInterrupt:
            return 0


# --- run --------------------------------------------------------------------------------------


def cmd_run(tn: Testnet, args: argparse.Namespace) -> int:
    """up, then live status and traffic until Ctrl-C (or SIGTERM), then down."""
    try:
        if cmd_up(tn, args) != 0:
            return 1
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        say("\ninterrupted: stopping the network...")
        return cmd_down(tn, argparse.Namespace(clean=False)) or 130
    state = tn.load()
    maturity = state.maturity
    messages: deque[str] = deque(maxlen=8)
    tty = sys.stdout.isatty()
    stop_dashboard = None
    watch = f"explorer of node 0: {state.nodes[0].api_url}/"
    if args.dashboard_port:
        try:
            url, stop_dashboard = dashboard.serve_in_background(tn, args.dashboard_port)
            watch = f"dashboard: {url}  ({watch})"
        except OSError as exc:
            watch = f"no dashboard (port {args.dashboard_port}: {exc.strerror}); {watch}"
    say(watch)

    def note(text: str) -> None:
        messages.append(time.strftime("%H:%M:%S ") + text)
        if not tty:
            say(text)

    def on_term(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    traffic = Traffic(
        tn, args.rate, block_interval(state, args.block_interval), note, random.Random(args.seed)
    )
    next_status = 0.0
    try:
        while True:
            now = time.monotonic()
            if now >= next_status:
                next_status = now + STATUS_INTERVAL
                info = collect_status(tn, tn.load())
                text = render_status(info)
                footer = (
                    f"traffic: {traffic.sent} tx sent, {traffic.failed} refused"
                    + (f" (last: {traffic.last_error})" if traffic.last_error else "")
                    + (f", {traffic.blocks} blocks mined" if traffic.blocks else "")
                )
                if not traffic.sent and (info["height"] or 0) <= maturity:
                    footer += (
                        f"\npayments start once the first coinbase has {maturity} "
                        f"confirmations (height {maturity + 1})"
                    )
                if tty:
                    sys.stdout.write(
                        "\x1b[H\x1b[J"
                        + text
                        + "\n"
                        + footer
                        + "\n\n"
                        + "\n".join(messages)
                        + f"\n\n{watch}\nCtrl-C stops the network.\n"
                    )
                    sys.stdout.flush()
                else:
                    say(text + "\n" + footer)
            wait = traffic.step()
            time.sleep(max(0.0, min(wait, next_status - time.monotonic())))
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # let `down` finish
        say("\nstopping the network...")
    if stop_dashboard is not None:
        stop_dashboard()
    return cmd_down(tn, argparse.Namespace(clean=False))


# --- the command line -------------------------------------------------------------------------


def cmd_dashboard(tn: Testnet, args: argparse.Namespace) -> int:
    return dashboard.serve(tn, args.port)


COMMANDS = {  # what each command of scripts/testnet_args.py runs
    "up": cmd_up,
    "run": cmd_run,
    "status": cmd_status,
    "send": cmd_send,
    "traffic": cmd_traffic,
    "mine": cmd_mine,
    "kill": cmd_kill,
    "stop": cmd_stop,
    "start": cmd_start,
    "add": cmd_add,
    "link": cmd_link,
    "partition": cmd_partition,
    "heal": cmd_heal,
    "wait-converged": cmd_wait_converged,
    "chaos": cmd_chaos,
    "logs": cmd_logs,
    "dashboard": cmd_dashboard,
    "down": cmd_down,
}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tn = Testnet(args.dir)
    try:
        return COMMANDS[args.command](tn, args)
    except (TestnetError, WalletCliError) as exc:
        print(f"obol-testnet: {exc}", file=sys.stderr)
        return 1
    except ApiError as exc:
        print(f"obol-testnet: node API: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"obol-testnet: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
