"""``obol-testnet``'s command line: every command, its flags and their help (the
surface docs/testnet.md documents and other tools are written against).  The chosen
command's name is ``args.command``; scripts/testnet.py runs it."""

from __future__ import annotations

import argparse
from typing import TypedDict

from . import dashboard, wan
from .testnet_lib import TOPOLOGIES


class Defaults(TypedDict):
    """What `up` creates when its flags are not given."""

    nodes: int
    miners: int
    topology: str
    network: str


DEFAULTS: Defaults = {"nodes": 4, "miners": 2, "topology": "line", "network": "testnet"}
STATUS_INTERVAL = 2.0  # seconds between refreshes of `status --watch` and `run`


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="obol-testnet", description="Run a local Obol test network.")
    p.add_argument("--dir", default="testnet", help="the network's directory (default ./testnet)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def up_options(q: argparse.ArgumentParser) -> None:
        q.add_argument("--nodes", type=int, help=f"number of nodes (default {DEFAULTS['nodes']})")
        q.add_argument(
            "--miners",
            type=int,
            help=f"how many of the first nodes mine (default {DEFAULTS['miners']})",
        )
        q.add_argument("--topology", choices=TOPOLOGIES, help="how nodes are linked (default line)")
        q.add_argument(
            "--network", choices=("testnet", "regtest"), help="default testnet (real proof of work)"
        )
        q.add_argument(
            "--chain",
            metavar="FILE",
            help="a private network's chain spec (docs/protocol.md §12.1) instead of --network",
        )
        q.add_argument(
            "--base-port",
            type=int,
            help="node i uses P2P port P+2i and API port P+2i+1 (default: free ports)",
        )
        q.add_argument("--seed", type=int, help="seed of the random topology and traffic")
        q.add_argument(
            "--hosts",
            action="store_true",
            default=None,
            help="a host per node: each in its own network namespace on a bridge (root)",
        )
        q.add_argument(
            "--wan",
            choices=wan.PROFILES,
            help="--hosts: emulated WAN links between every pair of nodes, drawn by --seed",
        )

    q = sub.add_parser("up", help="create (or restart) and start the network")
    up_options(q)

    q = sub.add_parser("run", help="up, live status and traffic until Ctrl-C, then down")
    up_options(q)
    q.add_argument("--rate", type=float, default=0.5, help="transactions per second (default 0.5)")
    q.add_argument(
        "--block-interval", type=float, help="regtest: seconds between blocks (default 2)"
    )
    q.add_argument(
        "--dashboard-port",
        type=int,
        default=dashboard.DEFAULT_PORT,
        help=f"serve the dashboard on 127.0.0.1:P while running (default {dashboard.DEFAULT_PORT}"
        ", 0 = none)",
    )

    q = sub.add_parser("status", help="one row per node, and whether they agree")
    q.add_argument("--json", action="store_true")
    q.add_argument("--watch", action="store_true", help="refresh in place until Ctrl-C")
    q.add_argument(
        "--interval", type=float, default=STATUS_INTERVAL, help="seconds between refreshes"
    )

    q = sub.add_parser("send", help="pay AMOUNT coins from node FROM's wallet to node TO's")
    q.add_argument("source", type=int, metavar="FROM")
    q.add_argument("target", type=int, metavar="TO")
    q.add_argument("amount", metavar="AMOUNT", help="in coins, e.g. 1.5")
    q.add_argument("--fee-rate", type=int, help="base units per byte")
    q.add_argument("--json", action="store_true")

    q = sub.add_parser("traffic", help="random payments between the wallets (regtest: and blocks)")
    q.add_argument("--rate", type=float, default=1.0, help="transactions per second (default 1)")
    q.add_argument("--duration", type=float, help="seconds (default: until Ctrl-C)")
    q.add_argument(
        "--count",
        type=int,
        help="stop once COUNT transactions were sent (--duration: or when it ends, if sooner)",
    )
    q.add_argument(
        "--block-interval", type=float, help="regtest: seconds between blocks (default 2, 0: none)"
    )
    q.add_argument("--seed", type=int)
    q.add_argument("--quiet", action="store_true", help="only the summary")

    q = sub.add_parser("mine", help="regtest: mine BLOCKS blocks on a node, paying its wallet")
    q.add_argument("blocks", type=int, nargs="?", default=1)
    q.add_argument("--node", type=int, help="default: the first running miner")
    q.add_argument("--json", action="store_true")

    for name, text in (
        ("kill", "SIGKILL node I"),
        ("stop", "SIGTERM node I"),
        ("start", "start node I again"),
    ):
        q = sub.add_parser(name, help=text)
        q.add_argument("index", type=int, metavar="I")

    q = sub.add_parser("add", help="start one more node, linked by the topology")
    q.add_argument("--miner", action="store_true")
    q.add_argument("--seed", type=int)

    q = sub.add_parser(
        "link",
        help="--hosts: emulate a WAN link between nodes I and J (or --all pairs); no args: list",
    )
    q.add_argument("pair", type=int, nargs="*", metavar="I J")
    q.add_argument("--all", action="store_true", help="every pair of nodes")
    q.add_argument("--delay", help="one-way delay, each direction, e.g. 80ms")
    q.add_argument("--jitter", help="the delay varies by +- this much, e.g. 10ms (no reordering)")
    q.add_argument("--loss", help="random loss, each direction, e.g. 1%%")
    q.add_argument("--rate", help="bandwidth, each direction, e.g. 10mbit")
    q.add_argument("--clear", action="store_true", help="make the link(s) plain again")

    q = sub.add_parser("partition", help="cut the network into groups, e.g. `partition 0,1 2,3`")
    q.add_argument("groups", nargs="+", metavar="GROUP", help="comma-separated node indexes")

    q = sub.add_parser("heal", help="undo the partition")

    q = sub.add_parser(
        "wait-converged", help="wait for one tip and one UTXO set on every running node"
    )
    q.add_argument("--timeout", type=float, default=60.0, help="seconds (default 60)")
    q.add_argument("--json", action="store_true")

    q = sub.add_parser("chaos", help="random faults while traffic flows, then check invariants")
    q.add_argument("--duration", type=float, default=30.0, help="seconds of faults (default 30)")
    q.add_argument("--seed", type=int, help="seed of the schedule and traffic (default: random)")
    q.add_argument("--kill", action="store_true", help="SIGKILL nodes, start them again")
    q.add_argument("--partition", action="store_true", help="cut the network in two, heal")
    q.add_argument("--wan", action="store_true", help="random WAN link profiles (link emulator)")
    q.add_argument("--restart", action="store_true", help="SIGTERM nodes, start them again")
    q.add_argument(
        "--clock-skew", action="store_true", help="restart nodes with their clock set off"
    )
    q.add_argument("--rate", type=float, default=1.0, help="payments per second (default 1)")
    q.add_argument("--json", action="store_true", help="print the report as JSON")

    q = sub.add_parser("logs", help="print node I's log")
    q.add_argument("index", type=int, metavar="I")
    q.add_argument("--follow", "-f", action="store_true")
    q.add_argument("--lines", "-n", type=int, help="only the last N lines")

    q = sub.add_parser("dashboard", help="serve a live graph of the network (a browser page)")
    q.add_argument(
        "--port",
        type=int,
        default=dashboard.DEFAULT_PORT,
        help=f"on 127.0.0.1 (default {dashboard.DEFAULT_PORT})",
    )

    q = sub.add_parser("down", help="stop every node (keeps DIR unless --clean)")
    q.add_argument("--clean", action="store_true", help="also remove DIR")
    return p
