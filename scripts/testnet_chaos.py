"""``obol-testnet chaos``: a seeded schedule of faults while traffic flows, then invariants.

    obol-testnet chaos --duration S --seed N [--kill] [--partition] [--wan] [--restart]
                       [--clock-skew] [--rate R] [--json]

The schedule is drawn from the seed before anything runs (and printed), so one
seed is one schedule.  Faults, each at a random moment 2-5 s after the last:

* kill        SIGKILL a running node; it is started again 1-4 s later
* partition   cut the network in two random groups for 3-8 s, then heal
              (on hosts: by the kernel, and the nodes reconnect by themselves)
* restart     SIGTERM a node and start it again at once
* clock-skew  restart a node with its clock up to a quarter of the network's
              future-block limit off (``obol-node --clock-offset``)
* wan         random link profiles: every pair of hosts gets a link drawn from a WAN
              profile (scripts/wan.py) picked at random; needs ``--hosts`` and the link
              emulator (``obol-testnet link``); the links before the run come back at the end

Payments flow all along (``Traffic``: random wallets, and on regtest a block
every 2 s).  Every fault of the schedule runs, in order (late when the one
before took long: starting a node takes a second or two).  When the time is up
and the schedule is done, every fault is undone (heal, killed nodes started,
clocks set right) and the invariants are checked:

1. converged: every node has the same tip and the same UTXO-set hash;
2. restarts: every node killed with SIGKILL started again, and still serves
   every block it had reported as its tip;
3. transactions: no acknowledged payment is lost: each is in the chain (after a
   few more blocks on regtest) or in a mempool, or no longer valid (its inputs
   conflict with the chain: a double spend across a partition, or coins of a
   block that was reorganised away).  Before it is checked every wallet runs
   ``obol-wallet rebroadcast`` against its own node, as a user's wallet would
   (a node killed -9 forgets its mempool; the wallet keeps what it sent); the
   report says how many payments the wallets had to put back;
4. supply: the coins in the UTXO set are exactly the chain's subsidies;
5. fresh node: a node added now syncs from scratch to the same UTXO-set hash.

Exit status 0 only if all five hold; ``--json`` prints the report as one document.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import testnet_links, wan
from .linkrules import missing_tools
from .testnet_lib import (
    ApiError,
    NodeInfo,
    State,
    Testnet,
    TestnetError,
    kill_node,
    node_running,
    stop_nodes,
    try_get,
)
from .testnet_ops import (
    Traffic,
    after_start,
    agree,
    heal,
    launch,
    mine,
    partition,
    running,
    tips,
)

FAULTS = ("kill", "partition", "restart", "clock-skew", "wan")
DEFAULT_FAULTS = ("kill", "partition", "restart", "clock-skew")  # when no fault flag is given
EVENT_GAP = (2.0, 5.0)  # seconds between two faults (uniform)
KILL_DOWNTIME = (1.0, 4.0)  # seconds a killed node stays down
PARTITION_SPAN = (3.0, 8.0)  # seconds a partition lasts
SKEW_FRACTION = 0.25  # largest clock skew, as a fraction of max_future_block_time
SAMPLE_INTERVAL = 1.0  # seconds between samples of every node's tip
BLOCK_INTERVAL = 2.0  # regtest: seconds between the blocks traffic mines
SETTLE_TIMEOUT = 90.0  # seconds for the network to converge once the faults are undone
CONFIRM_ROUNDS = 3  # regtest: blocks mined at the end to confirm what mempools hold


@dataclass(frozen=True)
class Fault:
    """One entry of the schedule."""

    at: float  # seconds after the start
    kind: str  # one of FAULTS
    node: int | None = None  # the node killed, restarted or skewed
    groups: list[list[int]] | None = None  # partition: the two sides
    span: float = 0.0  # kill: seconds down; partition: seconds until the heal
    offset: float = 0.0  # clock-skew: seconds the node's clock is set off

    def describe(self) -> str:
        if self.kind == "kill":
            return f"kill -9 node {self.node}, start it {self.span:.1f}s later"
        if self.kind == "partition":
            sides = " | ".join(",".join(map(str, g)) for g in self.groups or [])
            return f"partition {sides} for {self.span:.1f}s"
        if self.kind == "restart":
            return f"restart node {self.node}"
        if self.kind == "clock-skew":
            return f"restart node {self.node} with its clock {self.offset:+.1f}s off"
        return "random WAN link profiles"


def schedule(
    rng: random.Random, duration: float, kinds: list[str], count: int, skew_limit: float
) -> list[Fault]:
    """The faults of one run, drawn from ``rng`` alone (one seed, one schedule).

    A node is never hit while it is down, at least one node stays up, and one partition
    ends before the next begins.
    """
    faults: list[Fault] = []
    down_until = [0.0] * count
    partition_until = 0.0
    t = rng.uniform(*EVENT_GAP) / 2
    while t < duration:
        kind = rng.choice(kinds)
        up = [i for i in range(count) if down_until[i] <= t]
        if kind == "partition" and count >= 2 and t < partition_until:
            t = partition_until  # one partition at a time: this one waits for the heal
            continue
        if kind != "wan" and (len(up) < 2 if kind != "partition" else count < 2):
            t += rng.uniform(*EVENT_GAP)
            continue
        if kind == "kill":
            node = rng.choice(up)
            span = rng.uniform(*KILL_DOWNTIME)
            down_until[node] = t + span + 2.0  # and the time it takes to start
            faults.append(Fault(round(t, 2), kind, node=node, span=round(span, 2)))
        elif kind == "partition":
            members = list(range(count))
            rng.shuffle(members)
            cut = rng.randrange(1, count)
            groups = [sorted(members[:cut]), sorted(members[cut:])]
            span = rng.uniform(*PARTITION_SPAN)
            partition_until = t + span + 1.0
            faults.append(Fault(round(t, 2), kind, groups=groups, span=round(span, 2)))
        elif kind in ("restart", "clock-skew"):
            node = rng.choice(up)
            down_until[node] = t + 2.0
            offset = rng.uniform(-skew_limit, skew_limit) if kind == "clock-skew" else 0.0
            faults.append(Fault(round(t, 2), kind, node=node, offset=round(offset, 1)))
        else:
            faults.append(Fault(round(t, 2), kind))
        t += rng.uniform(*EVENT_GAP)
    return faults


@dataclass
class Invariant:
    name: str
    holds: bool
    detail: str


@dataclass
class Run:
    """What happened during one chaos run, for the report."""

    seed: int
    duration: float
    faults: list[str]
    schedule: list[Fault]
    events: list[str] = field(default_factory=list)  # "t=3.1s kill -9 node 2 (pid ...)"
    reported: dict[int, set[str]] = field(default_factory=dict)  # node -> tips it reported
    killed: set[int] = field(default_factory=set)  # nodes killed with SIGKILL
    start_failures: list[str] = field(default_factory=list)
    skewed: set[int] = field(default_factory=set)
    # obol-wallet rebroadcast at the end: action -> how many (resubmitted, conflicted, ...)
    rebroadcast: dict[str, int] = field(default_factory=dict)
    rebroadcast_failures: list[str] = field(default_factory=list)  # wallets that could not

    def to_json(self, traffic: Traffic, invariants: list[Invariant]) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "duration": self.duration,
            "faults": self.faults,
            "schedule": [asdict(f) for f in self.schedule],
            "events": self.events,
            "traffic": {
                "sent": traffic.sent,
                "refused": traffic.failed,
                "skipped": traffic.skipped,
                "blocks": traffic.blocks,
                "resubmitted": traffic.resubmitted,
            },
            "rebroadcast": {"actions": self.rebroadcast, "failures": self.rebroadcast_failures},
            "invariants": [asdict(i) for i in invariants],
            "ok": all(i.holds for i in invariants),
        }


class Chaos:
    """Runs one schedule against the network in ``tn`` and checks the invariants."""

    def __init__(
        self,
        tn: Testnet,
        run: Run,
        traffic: Traffic,
        add_node: Callable[[], NodeInfo],
        say: Callable[[str], None],
    ) -> None:
        self.tn = tn  # the network's directory and state
        self.run = run  # the schedule and what happened
        self.traffic = traffic  # payments (and regtest blocks) while the faults run
        self.add_node = add_node  # `obol-testnet add`: the fresh node of invariant 5
        self.say = say  # progress lines
        self.started = time.monotonic()
        self.partition_ends: float | None = None  # when the current partition heals
        self.restarts: dict[int, float] = {}  # killed node -> when to start it again
        self.raw: dict[str, str] = {}  # txid -> hex of each acknowledged payment, kept at once
        # the links, profile and seed before the first `wan` fault (restored by undo_all)
        self.links_before: tuple[dict[str, dict[str, float]], str | None, int] | None = None

    # --- the run ------------------------------------------------------------------------

    def note(self, text: str) -> None:
        line = f"t={time.monotonic() - self.started:5.1f}s {text}"
        self.run.events.append(line)
        self.say(line)

    def execute(self) -> None:
        pending = list(self.run.schedule)
        next_sample = 0.0
        end = self.started + self.run.duration
        while True:
            now = time.monotonic()
            if now >= end and not pending:  # a fault that ran late still runs
                break
            while pending and self.started + pending[0].at <= now:
                self.inject(pending.pop(0))
            self.undo_due(now)
            if now >= next_sample:
                next_sample = now + SAMPLE_INTERVAL
                self.sample()
            wait = self.traffic.step()
            self.keep_raw()
            due = [max(end, now), next_sample, *self.restarts.values()]
            if pending:
                due.append(self.started + pending[0].at)
            if self.partition_ends is not None:
                due.append(self.partition_ends)
            time.sleep(max(0.0, min([time.monotonic() + wait, *due]) - time.monotonic()))
        self.note("time is up: undoing every fault")
        self.undo_all()

    def keep_raw(self) -> None:
        """Fetch the payments just acknowledged from their node, while it holds them: a
        lost one is found nowhere at the end, yet must be judged (still valid or not)."""
        state = self.tn.load()
        for source, txid in self.traffic.acked[len(self.raw) :]:
            tx = try_get(self.tn.client(state.node(source)), f"tx/{txid}")
            self.raw[txid] = tx.get("hex", "") if tx else ""

    def sample(self) -> None:
        for row in tips(self.tn, self.tn.load(), utxo=False):
            if row.tip is not None:
                self.run.reported.setdefault(row.index, set()).add(row.tip)

    def inject(self, fault: Fault) -> None:
        with self.tn.update() as state:
            if fault.kind == "partition":
                if state.partition:
                    self.note(f"skipped ({fault.describe()}): a partition is in force")
                    return
                assert fault.groups is not None
                partition(self.tn, state, fault.groups, settle=False)
                self.partition_ends = self.started + fault.at + fault.span
                self.note(fault.describe())
                return
            if fault.kind == "wan":
                self.wan_links(state, fault)
                return
            assert fault.node is not None
            node = state.node(fault.node)
            if not node_running(node):
                self.note(f"skipped ({fault.describe()}): node {node.index} is down")
                return
            if fault.kind == "kill":
                status = try_get(self.tn.client(node, timeout=5), "status")
                if status:
                    self.run.reported.setdefault(node.index, set()).add(status["tip"])
                pid = node.pid
                kill_node(node)
                self.run.killed.add(node.index)
                self.restarts[node.index] = self.started + fault.at + fault.span
                self.note(f"kill -9 node {node.index} (pid {pid})")
                return
            stop_nodes([node])
            if fault.kind == "clock-skew":
                node.clock_offset = fault.offset
                self.run.skewed.add(node.index)
            self.start(state, node, fault.describe())

    def wan_links(self, state: State, fault: Fault) -> None:
        """Every pair of hosts gets a link from a profile drawn from the fault's time."""
        if state.hosts is None:
            self.note(f"skipped ({fault.describe()}): emulated links need `up --hosts`")
            return
        rng = random.Random(f"wan:{fault.at}")
        profile, seed = rng.choice(wan.PROFILES), rng.randrange(2**32)
        if self.links_before is None:
            self.links_before = (dict(state.links), state.wan, state.wan_seed)
        testnet_links.draw_profile(state, profile, seed)
        testnet_links.apply(self.tn, state)
        self.note(f"WAN links: profile {profile} (seed {seed}) on {len(state.links)} pair(s)")

    def start(self, state: State, node: NodeInfo, why: str) -> None:
        try:
            launch(self.tn, state, [node])
            after_start(self.tn, state, node)
        except (TestnetError, ApiError, OSError) as exc:
            self.run.start_failures.append(f"node {node.index}: {exc}")
            self.note(f"node {node.index} FAILED to start: {str(exc).splitlines()[0]}")
            return
        self.tn.save(state)
        self.note(f"{why}: node {node.index} up (pid {node.pid})")

    def undo_due(self, now: float) -> None:
        for index, when in sorted(self.restarts.items()):
            if when <= now:
                del self.restarts[index]
                with self.tn.update() as state:
                    self.start(state, state.node(index), "restart after kill -9")
        if self.partition_ends is not None and self.partition_ends <= now:
            self.partition_ends = None
            with self.tn.update() as state:
                heal(self.tn, state)
            self.note("heal")

    def undo_all(self) -> None:
        far = time.monotonic() + 1e9
        if self.partition_ends is not None:
            self.partition_ends = time.monotonic()
        self.restarts = dict.fromkeys(self.restarts, 0.0)
        self.undo_due(far)
        if self.links_before is not None:
            with self.tn.update() as state:
                state.links, state.wan, state.wan_seed = self.links_before
                testnet_links.apply(self.tn, state)
            self.note(f"WAN links as before the run: {len(state.links)} pair(s)")
        with self.tn.update() as state:
            for index in sorted(self.run.skewed):
                node = state.node(index)
                node.clock_offset = 0.0
                if node_running(node):
                    stop_nodes([node])
                self.start(state, node, "clock set right")

    # --- the invariants -----------------------------------------------------------------

    def check(self) -> list[Invariant]:
        converged = self.converge()
        if converged.holds:
            self.rebroadcast()
        txs = self.transactions() if converged.holds else skipped("transactions")
        checks = [converged, self.restarted(), txs]
        checks.append(self.supply() if converged.holds else skipped("supply"))
        checks.append(self.fresh_node() if converged.holds else skipped("fresh node"))
        return checks

    def converge(self) -> Invariant:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            rows = tips(self.tn, self.tn.load())
            if agree(rows):
                r = rows[0]
                return Invariant(
                    "converged",
                    True,
                    f"{len(rows)} nodes at height {r.height}, tip {r.tip}, UTXO set {r.utxo_hash}",
                )
            time.sleep(0.25)
        rows = tips(self.tn, self.tn.load())
        seen = ", ".join(f"{r.index}:{(r.tip or '-')[:12]}@{r.height}" for r in rows)
        return Invariant("converged", False, f"no agreement after {SETTLE_TIMEOUT:g}s: {seen}")

    def restarted(self) -> Invariant:
        state = self.tn.load()
        problems = list(self.run.start_failures)
        for index in sorted(self.run.killed):
            node = state.node(index)
            if not node_running(node):
                problems.append(f"node {index} is not running")
                continue
            api = self.tn.client(node)
            for tip in sorted(self.run.reported.get(index, ())):
                if try_get(api, f"blocks/{tip}") is None:
                    problems.append(f"node {index} no longer serves its reported tip {tip}")
        killed = ", ".join(map(str, sorted(self.run.killed))) or "none"
        detail = "; ".join(problems) or f"killed and restarted: {killed}; every reported tip served"
        return Invariant("restarts", not problems, detail)

    def rebroadcast(self) -> None:
        """Each wallet's ``obol-wallet rebroadcast`` against its own node, as a user's running
        wallet would do: what a killed node lost is offered again (wallet/resend.py)."""
        state = self.tn.load()
        for node in running(state):
            wallet = self.tn.wallet(state, node)
            try:
                answer = wallet.rebroadcast()
            except TestnetError as exc:  # WalletCliError: reported, and invariant 3 judges
                self.run.rebroadcast_failures.append(f"node {node.index}: {exc}")
                self.note(f"wallet {node.index}: rebroadcast FAILED: {exc}")
                continue
            counts: dict[str, int] = {}
            for row in answer["transactions"]:
                counts[row["action"]] = counts.get(row["action"], 0) + 1
                self.run.rebroadcast[row["action"]] = self.run.rebroadcast.get(row["action"], 0) + 1
            done = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
            self.note(f"wallet {node.index}: rebroadcast: {done or 'nothing recorded'}")

    def put_back(self) -> str:
        """How many payments the wallets had to offer again, for invariant 3's detail."""
        at_end = self.run.rebroadcast.get("resubmitted", 0)
        during = self.traffic.resubmitted
        text = f"; {at_end + during} put back by their wallets ({during} by a send, {at_end} by "
        text += "rebroadcast at the end)"
        if self.run.rebroadcast_failures:
            text += f"; rebroadcast failed: {'; '.join(self.run.rebroadcast_failures)}"
        return text

    def transactions(self) -> Invariant:
        state = self.tn.load()
        live = running(state)
        acked = self.traffic.acked
        raw = self.raw
        for _ in range(CONFIRM_ROUNDS if state.mines_on_demand else 0):
            pending = [t for _, t in acked if self.where(live, t) == "mempool"]
            if not pending:
                break
            miners = [n for n in live if n.miner] or live
            mine(self.tn, miners[0], 1)
            self.converge()
        confirmed = mempool = 0
        conflicting: list[str] = []
        lost: list[str] = []
        for _source, txid in acked:
            where = self.where(live, txid)
            if where == "chain":
                confirmed += 1
            elif where == "mempool":
                mempool += 1
            elif not raw.get(txid):
                lost.append(f"{txid} (not even in its own node's mempool)")
            else:
                verdict = self.still_valid(live[0], raw[txid])
                if verdict is None:
                    lost.append(txid)
                else:
                    conflicting.append(f"{txid[:16]} ({verdict})")
        detail = (
            f"{len(acked)} acknowledged: {confirmed} confirmed, {mempool} in a mempool, "
            f"{len(conflicting)} conflicting"
            + (f" [{', '.join(conflicting)}]" if conflicting else "")
            + self.put_back()
            + (f"; LOST: {', '.join(lost)}" if lost else "")
        )
        return Invariant("transactions", not lost, detail)

    def where(self, live: list[NodeInfo], txid: str) -> str | None:
        """'chain' (on the first node's active chain), 'mempool' (any node's), or None."""
        for i, node in enumerate(live):
            tx = try_get(self.tn.client(node), f"tx/{txid}")
            if tx is None:
                continue
            if i == 0 and tx.get("height") is not None:
                return "chain"
            if tx.get("in_mempool"):
                return "mempool"
        return None

    def still_valid(self, node: NodeInfo, hex_tx: str) -> str | None:
        """None if the transaction would be accepted now (so it was lost), else why not."""
        try:
            answer = self.tn.client(node).post("tx/test", {"hex": hex_tx})
        except ApiError as exc:
            return exc.code
        if isinstance(answer, dict) and answer.get("allowed") is False:
            return str(answer.get("reject_reason") or answer.get("code") or "refused")
        return None

    def supply(self) -> Invariant:
        state = self.tn.load()
        node = running(state)[0]
        utxos = self.tn.client(node).get("utxoset")
        params = state.params
        issued = sum(params.subsidy(h) for h in range(1, utxos["height"] + 1))
        holds = utxos["amount"] == issued
        return Invariant(
            "supply",
            holds,
            f"UTXO set holds {utxos['amount']} base units; subsidies of heights "
            f"1..{utxos['height']}: {issued}",
        )

    def fresh_node(self) -> Invariant:
        node = self.add_node()
        self.note(f"fresh node {node.index} added: syncing from scratch")
        converged = self.converge()
        if not converged.holds:
            return Invariant("fresh node", False, f"node {node.index}: {converged.detail}")
        return Invariant(
            "fresh node", True, f"node {node.index} synced from scratch: {converged.detail}"
        )


def skipped(name: str) -> Invariant:
    return Invariant(name, False, "not checked: the network did not converge")


def command(
    tn: Testnet,
    args: argparse.Namespace,
    add_node: Callable[[int], NodeInfo],
    say: Callable[[str], None],
) -> int:
    """``obol-testnet chaos``: draw the schedule, run it, check and print the invariants.
    ``add_node(seed)`` starts the fresh node of invariant 5 (``obol-testnet add``)."""
    state = tn.load()
    kinds = [k for k in FAULTS if getattr(args, k.replace("-", "_"))]
    kinds = kinds or list(DEFAULT_FAULTS)
    if "wan" in kinds:
        if state.hosts is None:
            raise TestnetError("chaos --wan needs a host per node: make the network with --hosts")
        why = missing_tools()
        if why is not None:
            raise TestnetError(f"chaos --wan: {why}")
    if len(running(state)) < 2:
        raise TestnetError("chaos needs a running network of at least 2 nodes (`up` first)")
    if args.duration <= 0:
        raise TestnetError("--duration must be positive")
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    out = say if not args.json else (lambda text: print(text, file=sys.stderr, flush=True))
    limit = state.params.max_future_block_time * SKEW_FRACTION
    faults = schedule(random.Random(seed), args.duration, kinds, len(state.nodes), limit)
    out(f"chaos: seed {seed}, {args.duration:g}s, faults {', '.join(kinds)}; the schedule:")
    for fault in faults:
        out(f"  t={fault.at:5.1f}s {fault.describe()}")
    traffic = Traffic(
        tn,
        args.rate,
        BLOCK_INTERVAL if state.mines_on_demand else None,
        lambda _text: None,
        random.Random(seed + 1),
    )
    run = Run(seed=seed, duration=args.duration, faults=kinds, schedule=faults)
    engine = Chaos(tn, run, traffic, lambda: add_node(seed), out)
    engine.execute()
    out(
        f"traffic: {traffic.sent} payments acknowledged, {traffic.failed} refused, "
        f"{traffic.blocks} blocks mined, {traffic.resubmitted} put back by a wallet's send; "
        "the wallets rebroadcast, then the invariants are checked..."
    )
    invariants = engine.check()
    report = run.to_json(traffic, invariants)
    if args.json:
        print(json.dumps(report, indent=2), flush=True)
    else:
        for inv in invariants:
            say(f"{'holds' if inv.holds else 'BROKEN':<6}  {inv.name}: {inv.detail}")
        say("chaos: all invariants hold" if report["ok"] else "chaos: INVARIANTS BROKEN")
    return 0 if report["ok"] else 1
