"""The machinery behind ``obol-testnet``: state file, processes, HTTP API client, wallets.

A local test network lives in one directory::

    DIR/testnet.json        the state: network, topology, nodes (pid, ports, wallet address)
    DIR/passphrase          the wallets' passphrase (mode 0600)
    DIR/node<i>/data/       node i's datadir (chain, peers, bans, api.token)
    DIR/node<i>/node.log    node i's stdout and stderr
    DIR/node<i>/wallet.json node i's wallet (its miner pays to it)

Node i listens for P2P on its own loopback address 127.0.0.(10+i) and dials
from it, so every node is seen by its peers under its own IP: a partition is
made by banning, through the admin API, the IPs across the cut (see
docs/testnet.md).  The API of every node is on 127.0.0.1 (a free port).

With ``up --hosts`` every node is a host of its own instead: a network namespace
on a bridge, with P2P and API on its own address (scripts/testnet_hosts.py), and
a partition is cut by the kernel.

This module talks to running programs only (``obol-node`` processes through
their HTTP API, ``obol-wallet`` as a subprocess); it imports nothing of node/.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from node.consensus.chainspec import load_spec
from node.consensus.params import NetworkParams, get_params

STATE_FILE = "testnet.json"
LOCK_FILE = ".lock"
PASSPHRASE_FILE = "passphrase"
HOST_BASE = 10  # node i listens on 127.0.0.(HOST_BASE + i)
MAX_NODES = 200  # 127.0.0.10 .. 127.0.0.209
API_HOST = "127.0.0.1"
WALLET_KDF_N = 2**12  # scrypt cost of the testnet wallets (throwaway keys, fast CLI)
BAN_SECONDS = 30 * 24 * 3600  # a partition's bans last until `heal` lifts them
STARTUP_TIMEOUT = 60.0  # seconds for a node's API to answer after start
STOP_TIMEOUT = 30.0  # seconds for a node to exit after SIGTERM before SIGKILL
COIN = 100_000_000
# --hosts: the nodes' peer timeouts (seconds), short so that a cut link is noticed and a
# healed one redialled within seconds (the node's defaults suit the internet: 60, 60, 10, 30)
HOSTS_PING_INTERVAL = (
    5.0  # --ping-interval (2 s doubled the idle CPU of a node: docs/benchmarks.md)
)
HOSTS_PEER_TIMEOUT = 3.0  # --peer-timeout: no pong for this long and the peer is dropped
HOSTS_CONNECT_TIMEOUT = 2.0  # --connect-timeout
HOSTS_RECONNECT_MAX = 2.0  # --reconnect-max: a --peer is redialled at least this often
COINBASE_MATURITY = {"testnet": 20, "regtest": 100, "main": 100}
TOPOLOGIES = ("line", "ring", "mesh", "random")


class TestnetError(Exception):
    """A failure reported to the user as one line (exit status 1)."""


def host_of(index: int) -> str:
    return f"127.0.0.{HOST_BASE + index}"


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); TestnetError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TestnetError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# --- state -----------------------------------------------------------------------------------


@dataclass
class NodeInfo:
    index: int
    host: str  # P2P listen (and dial) address
    p2p_port: int
    api_port: int
    datadir: str
    log: str
    wallet: str
    address: str  # the wallet's receive address (the miner pays to it)
    miner: bool
    pid: int | None = None
    # --hosts (scripts/testnet_hosts.py): the node's network namespace and its address on the
    # network's bridge (P2P and API listen there); None, None on loopback
    netns: str | None = None
    ip: str | None = None
    clock_offset: float = 0.0  # seconds the node's clock runs off the machine's (chaos skew)

    @property
    def p2p(self) -> str:
        return f"{self.host}:{self.p2p_port}"

    @property
    def api_host(self) -> str:
        """Where the API listens: the node's own address on a host, else loopback."""
        return self.ip or API_HOST

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"


@dataclass(frozen=True)
class HostNet:
    """``up --hosts``: the virtual switch of one network (scripts/testnet_hosts.py)."""

    tag: str  # 6 hex digits derived from DIR: names the bridge, namespaces and veths
    bridge: str  # the bridge's interface name in the machine's namespace, e.g. obr-1a2b3c
    subnet: str  # the network's IPv4 /24, e.g. 10.123.45.0/24
    gateway: str  # the bridge's own address (.1): the machine reaches the nodes from it


@dataclass
class State:
    network: str
    topology: str
    edges: list[list[int]]
    nodes: list[NodeInfo]
    base_port: int | None = None
    partition: list[list[int]] | None = None
    created: float = field(default_factory=time.time)
    chain: str | None = None  # a chain spec file (`up --chain FILE`): nodes and wallets get it
    hosts: HostNet | None = None  # `up --hosts`: a namespace per node on this bridge
    # emulated WAN links (scripts/testnet_links.py): "A-B" (A < B) -> the LinkSpec fields
    # of both directions; `up --wan` fills it from a profile, `link` edits it
    links: dict[str, dict[str, float]] = field(default_factory=dict)
    wan: str | None = None  # the profile of `up --wan` (new nodes' links are drawn from it)
    wan_seed: int = 0  # the seed of its draws (`up --seed`)
    link_emulator: int | None = None  # the pid of the link emulator (scripts/linkemu.py)

    @property
    def mines_on_demand(self) -> bool:
        """Blocks come from POST /mine (regtest, or a spec with mine-on-demand), not miners."""
        if self.chain is not None:
            return load_spec(self.chain).mine_on_demand
        return self.network == "regtest"

    @property
    def params(self) -> NetworkParams:
        """The network's consensus parameters (the chain spec's, else the built-in ones)."""
        return load_spec(self.chain) if self.chain is not None else get_params(self.network)

    @property
    def maturity(self) -> int:
        """Blocks a coinbase waits before it can be spent."""
        if self.chain is not None:
            return load_spec(self.chain).coinbase_maturity
        return COINBASE_MATURITY[self.network]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        data = dict(data)
        data["nodes"] = [NodeInfo(**n) for n in data["nodes"]]
        if data.get("hosts") is not None:
            data["hosts"] = HostNet(**data["hosts"])
        return cls(**data)

    def node(self, index: int) -> NodeInfo:
        if not 0 <= index < len(self.nodes):
            raise TestnetError(f"no node {index}: the network has nodes 0..{len(self.nodes) - 1}")
        return self.nodes[index]

    def neighbours(self, index: int) -> list[int]:
        return sorted({b if a == index else a for a, b in self.edges if index in (a, b)})


class Testnet:
    """One network's directory: its state file (read and written under a lock) and helpers."""

    def __init__(self, directory: str | os.PathLike) -> None:
        self.dir = Path(directory).absolute()
        self.state_path = self.dir / STATE_FILE

    def exists(self) -> bool:
        return self.state_path.exists()

    def load(self) -> State:
        try:
            return State.from_json(json.loads(self.state_path.read_text()))
        except FileNotFoundError:
            raise TestnetError(
                f"no test network in {self.dir} (start one with `obol-testnet up`)"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise TestnetError(f"{self.state_path} is damaged: {exc}") from None

    def save(self, state: State) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_json(), indent=2) + "\n")
        os.replace(tmp, self.state_path)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Serialise read-modify-write of the state between concurrent obol-testnet commands."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def update(self) -> Iterator[State]:
        with self.locked():
            state = self.load()
            yield state
            self.save(state)

    def passphrase(self) -> str:
        path = self.dir / PASSPHRASE_FILE
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(16) + "\n")
        return path.read_text().strip()

    def client(self, node: NodeInfo, timeout: float = 10.0) -> Api:
        return Api(node.api_port, Path(node.datadir), timeout, host=node.api_host)

    def wallet(self, state: State, node: NodeInfo) -> WalletCli:
        return WalletCli(
            Path(node.wallet), state.network, node.api_url, self.passphrase(), state.chain
        )


# --- topologies ------------------------------------------------------------------------------


def topology_edges(kind: str, n: int, rng: random.Random | None = None) -> list[list[int]]:
    """Edges [a, b] (a < b) of ``kind`` over nodes 0..n-1; every topology is connected."""
    if kind == "line":
        return [[i, i + 1] for i in range(n - 1)]
    if kind == "ring":
        edges = [[i, i + 1] for i in range(n - 1)]
        if n > 2:
            edges.append([0, n - 1])
        return edges
    if kind == "mesh":
        return [[a, b] for a in range(n) for b in range(a + 1, n)]
    if kind == "random":
        rng = rng or random.Random()
        links = {(rng.randrange(i), i) for i in range(1, n)}  # a random spanning tree
        extra = max(0, n // 2)  # and a few more links
        for _ in range(extra * 4):
            if len(links) >= n - 1 + extra:
                break
            a, b = sorted(rng.sample(range(n), 2)) if n >= 2 else (0, 0)
            if a != b:
                links.add((a, b))
        return sorted([a, b] for a, b in links)
    raise TestnetError(f"unknown topology {kind!r} (choose from {', '.join(TOPOLOGIES)})")


def edges_for_new_node(kind: str, index: int, rng: random.Random | None = None) -> list[list[int]]:
    """Links of a node added to a network of ``index`` nodes, in the spirit of its topology."""
    if index == 0:
        return []
    if kind == "mesh":
        return [[a, index] for a in range(index)]
    if kind == "ring" and index > 1:
        return [[index - 1, index], [0, index]]
    if kind == "random":
        rng = rng or random.Random()
        return [[a, index] for a in sorted(rng.sample(range(index), min(2, index)))]
    return [[index - 1, index]]


def connected_components(members: list[int], edges: list[list[int]]) -> list[list[int]]:
    parent = {m: m for m in members}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        if a in parent and b in parent:
            parent[find(a)] = find(b)
    groups: dict[int, list[int]] = {}
    for m in members:
        groups.setdefault(find(m), []).append(m)
    return sorted(groups.values())


# --- ports -----------------------------------------------------------------------------------


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- the HTTP API ----------------------------------------------------------------------------


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Api:
    """A small synchronous client of one node's API; admin calls read <datadir>/api.token."""

    def __init__(
        self, port: int, datadir: Path, timeout: float = 10.0, host: str = API_HOST
    ) -> None:
        self.host = host
        self.port = port
        self.datadir = datadir
        self.timeout = timeout

    def token(self) -> str:
        try:
            return (self.datadir / "api.token").read_text().strip()
        except OSError:
            raise ApiError(0, "no-token", f"no API token in {self.datadir}") from None

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        admin: bool = False,
        timeout: float | None = None,
    ) -> Any:
        """The JSON answer of ``METHOD /api/v1/path``.

        Raises ApiError for a 4xx/5xx answer, OSError if the node is unreachable.
        """
        headers = {}
        data = None
        if admin:
            headers["Authorization"] = f"Bearer {self.token()}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout or self.timeout)
        try:
            conn.request(method, "/api/v1/" + path.lstrip("/"), body=data, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
        except (http.client.HTTPException, ConnectionError) as exc:
            raise OSError(f"API {self.host}:{self.port}: {exc}") from None
        finally:
            conn.close()
        try:
            answer = json.loads(raw) if raw else None
        except ValueError:
            answer = None
        if resp.status >= 400:
            err = (answer or {}).get("error", {}) if isinstance(answer, dict) else {}
            raise ApiError(
                resp.status,
                err.get("code", f"http-{resp.status}"),
                err.get("message", raw[:200].decode(errors="replace")),
            )
        return answer

    def get(self, path: str, **kw) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Any:
        return self.request("POST", path, body if body is not None else {}, admin=True, **kw)

    def delete(self, path: str, **kw) -> Any:
        return self.request("DELETE", path, admin=True, **kw)


def try_get(api: Api, path: str) -> Any:
    """GET that answers None when the node is unreachable or refuses."""
    try:
        return api.get(path)
    except (OSError, ApiError):
        return None


# --- processes -------------------------------------------------------------------------------


def program(name: str, module: str) -> list[str]:
    """The console script ``name`` beside this interpreter, else ``python -m module``."""
    script = Path(sys.executable).with_name(name)
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", module]


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without OBOL_* settings (the testnet passes its own), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBOL_")}
    env.update(extra or {})
    return env


def process_alive(pid: int | None, marker: str) -> bool:
    """True if ``pid`` runs and is the process whose command line holds ``marker`` (our node)."""
    if not pid:
        return False
    running = _reap(pid)
    if running is not None:
        return running
    proc = Path(f"/proc/{pid}")
    if Path("/proc/self").exists():
        try:
            stat = (proc / "stat").read_text()
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] in ("Z", "X"):
            return False
        return marker.encode() in cmdline
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    return True


def _reap(pid: int) -> bool | None:
    """For a child of this process: whether it still runs (an ended one is reaped, so it
    leaves no zombie); None if ``pid`` is not our child (then ask /proc)."""
    try:
        ended, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return None
    return ended == 0


def node_running(node: NodeInfo) -> bool:
    return process_alive(node.pid, node.datadir)


def node_args(state: State, node: NodeInfo) -> list[str]:
    args = [
        *(["--chain", state.chain] if state.chain else ["--network", state.network]),
        "--datadir",
        node.datadir,
        "--listen",
        node.p2p,
        "--api",
        f"{node.api_host}:{node.api_port}",
        "--log-level",
        "INFO",
    ]
    for other in state.neighbours(node.index):
        if other < node.index:  # the later node of a link dials the earlier one
            args += ["--peer", state.nodes[other].p2p]
    if node.clock_offset:
        args += ["--clock-offset", f"{node.clock_offset:g}"]
    if state.hosts is not None:
        args += [
            *("--whitelist", f"noban,mempool@{state.hosts.subnet}"),  # as loopback is by default
            *("--ping-interval", f"{HOSTS_PING_INTERVAL:g}"),
            *("--peer-timeout", f"{HOSTS_PEER_TIMEOUT:g}"),
            *("--connect-timeout", f"{HOSTS_CONNECT_TIMEOUT:g}"),
            *("--reconnect-max", f"{HOSTS_RECONNECT_MAX:g}"),
        ]
    if node.miner and not state.mines_on_demand:
        args += ["--mine", "--miner-address", node.address, "--miner-threads", "1"]
    elif node.address:
        args += ["--miner-address", node.address]
    return args


def spawn_node(state: State, node: NodeInfo) -> subprocess.Popen:
    """Start ``obol-node`` detached (own session), output appended to its log."""
    Path(node.datadir).mkdir(parents=True, exist_ok=True)
    (Path(node.datadir) / "api.token").unlink(missing_ok=True)  # wait for this run's token
    with open(node.log, "ab") as log:
        log.write(
            f"--- obol-testnet: starting node {node.index} at "
            f"{time.strftime('%Y-%m-%d %H:%M:%S')} ---\n".encode()
        )
        log.flush()
        # on a host: `ip netns exec` enters the namespace and execs the node in place, so
        # proc.pid is the node's own pid (its session leader, as on loopback)
        inside = ["ip", "netns", "exec", node.netns] if node.netns else []
        proc = subprocess.Popen(
            inside + program("obol-node", "node.daemon") + node_args(state, node),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=clean_env(),
        )
    node.pid = proc.pid
    return proc


def log_tail(node: NodeInfo, lines: int = 15) -> str:
    try:
        text = Path(node.log).read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class PortInUse(TestnetError):
    pass


def wait_ready(tn: Testnet, node: NodeInfo, timeout: float = STARTUP_TIMEOUT) -> None:
    """Wait for the node's API to answer with this run's token; TestnetError if it died."""
    token = Path(node.datadir) / "api.token"
    api = tn.client(node, timeout=5)
    deadline = time.monotonic() + timeout
    while True:
        if not node_running(node):
            tail = log_tail(node)
            last = tail.splitlines()[-1] if tail else ""
            if "already in use" in last:
                raise PortInUse(f"node {node.index}: {last}")
            raise TestnetError(f"node {node.index} exited during start-up; its log ends:\n{tail}")
        if token.exists():
            try:
                api.get("status")
                return
            except (OSError, ApiError):
                pass
        if time.monotonic() > deadline:
            raise TestnetError(
                f"node {node.index} did not answer within {timeout:g}s; its log ends:\n"
                f"{log_tail(node)}"
            )
        time.sleep(0.1)


def signal_node(node: NodeInfo, sig: int) -> bool:
    """Send ``sig`` to the node (SIGKILL: to its whole process group, miner workers included)."""
    pid = node.pid
    if pid is None or not node_running(node):
        return False
    try:
        if sig == signal.SIGKILL:
            os.killpg(pid, sig)  # the node leads its own session (start_new_session)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def wait_exit(node: NodeInfo, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while node_running(node):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def stop_nodes(nodes: list[NodeInfo], timeout: float = STOP_TIMEOUT) -> list[int]:
    """SIGTERM every node, wait for all, SIGKILL the ones still running; the indexes killed."""
    running = [n for n in nodes if node_running(n)]
    for node in running:
        signal_node(node, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    killed = []
    for node in running:
        if not wait_exit(node, max(0.0, deadline - time.monotonic())):
            signal_node(node, signal.SIGKILL)
            wait_exit(node, 10)
            killed.append(node.index)
    for node in running:
        node.pid = None
    return killed


def kill_node(node: NodeInfo) -> bool:
    if not signal_node(node, signal.SIGKILL):
        return False
    wait_exit(node, 10)
    node.pid = None
    return True


# --- wallets ---------------------------------------------------------------------------------


class WalletCliError(TestnetError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"obol-wallet: {code}: {message}")
        self.code = code
        self.message = message


class WalletCli:
    """``obol-wallet --json`` on one wallet file, as a user would run it."""

    def __init__(
        self, path: Path, network: str, node_url: str, passphrase: str, chain: str | None = None
    ) -> None:
        self.path = path
        self.network = network
        self.chain = chain  # a chain spec file: --chain instead of --network
        self.node_url = node_url
        self.passphrase = passphrase
        self.notes: list[str] = []  # what the last run said on stderr about sent transactions

    def run(self, *args: str, timeout: float = 120.0) -> Any:
        cmd = program("obol-wallet", "wallet.cli") + [
            "--wallet",
            str(self.path),
            "--node",
            self.node_url,
            *(["--chain", self.chain] if self.chain else ["--network", self.network]),
            "--json",
            *args,
        ]
        env = clean_env(
            {"OBOL_WALLET_PASSPHRASE": self.passphrase, "OBOL_WALLET_KDF_N": str(WALLET_KDF_N)}
        )
        try:
            proc = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise WalletCliError("no-wallet-cli", "obol-wallet is not installed") from None
        except subprocess.TimeoutExpired:
            raise WalletCliError("timeout", f"{' '.join(args)} took over {timeout:g}s") from None
        self.notes = [line for line in proc.stderr.splitlines() if line.startswith("sent tx ")]
        if proc.returncode != 0:
            raise WalletCliError(*_wallet_error(proc))
        try:
            return json.loads(proc.stdout) if proc.stdout.strip() else None
        except ValueError:
            raise WalletCliError("bad-output", proc.stdout[:300]) from None

    def create(self) -> Any:
        return self.run("create")

    def address(self, offline: bool = False) -> str:
        answer = self.run("address", *(["--offline"] if offline else []))
        return answer["address"] if isinstance(answer, dict) else str(answer)

    def balance(self) -> dict[str, int]:
        return self.run("balance")

    def send(self, address: str, amount: str, fee_rate: int | None = None) -> dict[str, Any]:
        args = ["send", address, amount, "--yes"]
        if fee_rate is not None:
            args += ["--fee-rate", str(fee_rate)]
        return self.run(*args)

    def rebroadcast(self) -> dict[str, Any]:
        """``obol-wallet rebroadcast``: {"transactions": [{"txid", "action", "detail"}], ...}."""
        answer: dict[str, Any] = self.run("rebroadcast")
        return answer

    def resubmitted(self) -> int:
        """How many recorded transactions the last run put back at its node."""
        return sum(": RESUBMITTED (" in line for line in self.notes)


def _wallet_error(proc: subprocess.CompletedProcess) -> tuple[str, str]:
    """(code, message) of a failed obol-wallet run (its JSON error, else its stderr)."""
    for text in (proc.stdout, proc.stderr):
        try:
            data = json.loads(text)
        except ValueError:
            continue
        if isinstance(data, dict):
            err = data.get("error", data)
            if isinstance(err, dict) and "code" in err:
                return str(err["code"]), str(err.get("message", ""))
    text = proc.stderr.strip() or proc.stdout.strip() or f"exit status {proc.returncode}"
    code = "insufficient-funds" if "insufficient" in text.lower() else "wallet-failed"
    return code, text.splitlines()[-1][:300]
