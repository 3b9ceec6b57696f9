"""``obol-node``: configuration, wiring, signals.

Settings come from (lowest to highest priority) built-in defaults, a TOML
file (``--config``), ``OBOL_*`` environment variables, and flags.  The same
key names work everywhere: flag ``--miner-threads`` = TOML ``miner-threads``
(or ``miner_threads``) = env ``OBOL_MINER_THREADS``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import json
import logging
import os
import secrets
import signal
import socket
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lmdb

from network import NetConfig
from network.config import CONNECT_TIMEOUT, PING_INTERVAL, PING_TIMEOUT, RECONNECT_MAX
from network.permissions import LOCAL_PERMISSIONS, Permission
from node import __version__
from node.consensus.chainspec import ChainSpecError, load_spec
from node.consensus.params import NETWORKS, NetworkParams, get_params
from node.mempool.pool import MAX_MEMPOOL_USAGE
from node.primitives.crypto import decode_address
from node.primitives.errors import AddressError
from node.runtime.node import Node, NodeConfig
from node.storage.store import StoreError, hot_copy

log = logging.getLogger("obol.daemon")

VERSION = __version__  # the package's one version (node/__init__.py)
LOCK_FILE = "node.lock"  # holds the pid of the node using the datadir (flock'ed)
TOKEN_FILE = "api.token"  # bearer token of the admin API, mode 0600
EXIT_STARTUP_ERROR = 1  # exit status for any start-up failure
API_SHUTDOWN_TIMEOUT = 5.0  # seconds the API waits for requests in progress when stopping


class StartupError(Exception):
    """A clear reason the node cannot start; printed without a traceback."""


MIN_MAXMEMPOOL = 5  # MB: the least --maxmempool accepted (Bitcoin: 5 MB)


@dataclass(frozen=True)
class Settings:
    network: str  # the network's name: a built-in one or the --chain spec's
    params: NetworkParams  # its parameters (a --chain spec's, else the built-in network's)
    datadir: Path
    listen: tuple[str, int] | None
    api: tuple[str, int] | None
    peers: tuple[tuple[str, int], ...]
    # HOST:PORT seeds (the spec's, then --seed's): names resolved at start, each address a peer
    seeds: tuple[tuple[str, int], ...]
    discover: bool
    whitelist: tuple[Permission, ...]  # permissions by peer address (NetConfig.permissions)
    api_allow_hosts: tuple[str, ...]  # host names the API answers besides IPs and localhost
    # the admin token, read from --api-token-file (a Kubernetes Secret); None: a fresh one
    api_token: str | None
    mine: bool
    miner_address: str | None
    miner_threads: int
    maxmempool: int  # MB of memory the mempool may use
    log_level: str
    log_json: bool
    # seconds between pings, to answer one, to open a TCP connection, and the cap of the
    # doubling redial delay of a persistent peer (NetConfig; short ones suit a test network)
    ping_interval: float = PING_INTERVAL
    peer_timeout: float = PING_TIMEOUT
    connect_timeout: float = CONNECT_TIMEOUT
    reconnect_max: float = RECONNECT_MAX
    clock_offset: float = 0.0  # seconds added to the node's clock (a skewed test host; not main)


def _names(value: Any) -> list[str]:
    """A list of host names from a flag list, a TOML list or one string."""
    names = [value] if isinstance(value, str) else list(value)
    for name in names:
        if not isinstance(name, str) or not name or any(c.isspace() or c in "/@" for c in name):
            raise StartupError(f"bad --api-allow-host {name!r}: expected a host name")
    return [n.lower() for n in names]


def parse_hostport(text: str, what: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT') -> (host, port); StartupError if malformed."""
    host, sep, port = str(text).rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise StartupError(f"bad {what} address {text!r}: expected HOST:PORT")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="obol-node", description="Obol full node")
    p.add_argument("--network", choices=sorted(NETWORKS), help="main (default), testnet or regtest")
    p.add_argument(
        "--chain",
        metavar="FILE",
        help="a private network's chain spec (TOML, docs/protocol.md §12.1) instead of --network",
    )
    p.add_argument("--datadir", help="data directory (default ~/.obol/<network>)")
    p.add_argument(
        "--listen", help="P2P HOST:PORT (default 0.0.0.0:<network port>); 'none' to not listen"
    )
    p.add_argument(
        "--api", help="HTTP API HOST:PORT (default 127.0.0.1:<network api port>); 'none' for no API"
    )
    p.add_argument(
        "--api-allow-host",
        action="append",
        metavar="NAME",
        help="a host name the API answers to besides IP addresses and localhost, e.g. behind a "
        "proxy (repeatable); other names are refused against DNS rebinding",
    )
    p.add_argument(
        "--api-token-file",
        metavar="FILE",
        help="read the admin token from FILE (first line, at least 32 characters) instead of "
        "making a fresh one at each start; it is still written to <datadir>/api.token",
    )
    p.add_argument("--peer", action="append", help="persistent peer HOST:PORT (repeatable)")
    p.add_argument(
        "--seed",
        action="append",
        metavar="HOST:PORT",
        help="seed node, added to the chain spec's (repeatable): a DNS name is resolved at "
        "start and every address it has becomes a peer (a Kubernetes headless service)",
    )
    p.add_argument(
        "--no-discover",
        dest="discover",
        action="store_false",
        default=None,
        help="connect only to --peer addresses, never to addresses learned by gossip",
    )
    p.add_argument(
        "--whitelist",
        action="append",
        metavar="FLAGS@NET",
        help="grant peers from NET the comma-separated FLAGS noban, mempool, addr, notrickle "
        "(repeatable; replaces the default noban,mempool@127.0.0.0/8 and @::1; "
        "'none' grants nothing)",
    )
    p.add_argument("--mine", action="store_true", default=None, help="mine from the start")
    p.add_argument("--miner-address", help="address the miner pays to")
    p.add_argument("--miner-threads", type=int, help="miner processes (default: one per core)")
    p.add_argument(
        "--maxmempool",
        type=int,
        metavar="MB",
        help=f"memory the mempool may use, in MB (default {MAX_MEMPOOL_USAGE // 1_000_000})",
    )
    for flag, default, text in (
        ("--ping-interval", PING_INTERVAL, "seconds between pings of a peer"),
        ("--peer-timeout", PING_TIMEOUT, "seconds a peer has to answer a ping (else dropped)"),
        ("--connect-timeout", CONNECT_TIMEOUT, "seconds to open a TCP connection to a peer"),
        ("--reconnect-max", RECONNECT_MAX, "largest delay between redials of a --peer"),
    ):
        p.add_argument(flag, type=float, metavar="SECONDS", help=f"{text} (default {default:g})")
    p.add_argument(
        "--clock-offset",
        type=float,
        metavar="SECONDS",
        help="testing, not on main: run the node's clock SECONDS ahead (negative: behind)",
    )
    p.add_argument("--config", help="TOML file with the same keys as the flags")
    p.add_argument("--log-level", help="DEBUG, INFO (default), WARNING, ERROR")
    p.add_argument(
        "--log-json", action="store_true", default=None, help="log one JSON object per line"
    )
    return p


KEYS = (
    "network",
    "chain",
    "datadir",
    "listen",
    "api",
    "api_allow_host",
    "api_token_file",
    "peer",
    "seed",
    "discover",
    "whitelist",
    "mine",
    "miner_address",
    "miner_threads",
    "maxmempool",
    "log_level",
    "log_json",
    "ping_interval",
    "peer_timeout",
    "connect_timeout",
    "reconnect_max",
    "clock_offset",
)


def load_settings(argv: list[str] | None, env: dict[str, str] | None = None) -> Settings:
    args = build_parser().parse_args(argv)
    environ: Mapping[str, str] = os.environ if env is None else env
    merged: dict[str, Any] = {}
    if args.config:
        try:
            with open(args.config, "rb") as fh:
                data = tomllib.load(fh)
        except OSError as exc:
            raise StartupError(f"cannot read config file {args.config}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise StartupError(f"config file {args.config} is not valid TOML: {exc}") from None
        for key, value in data.items():
            norm = key.replace("-", "_")
            if norm == "peers":
                norm = "peer"
            if norm not in KEYS:
                raise StartupError(f"unknown key {key!r} in config file {args.config}")
            merged[norm] = value
    for key in KEYS:
        value = environ.get("OBOL_" + key.upper())
        if value is not None:
            merged[key] = value.split() if key in ("whitelist", "api_allow_host") else value
            if key in ("peer", "seed"):
                merged[key] = value.split(",")
    for key in KEYS:
        value = getattr(args, key)
        if value is not None:
            merged[key] = value

    params = _network(merged)
    network = params.name
    datadir = Path(os.path.expanduser(str(merged.get("datadir", f"~/.obol/{network}"))))

    def hostport(key: str, default: tuple[str, int]) -> tuple[str, int] | None:
        value = merged.get(key)
        if value is None:
            return default
        if str(value).lower() == "none":
            return None
        return parse_hostport(value, key)

    peers = merged.get("peer", [])
    if isinstance(peers, str):
        peers = [peers]
    seeds = merged.get("seed", [])
    if isinstance(seeds, str):
        seeds = [seeds]
    miner_address = merged.get("miner_address")
    if miner_address is not None:
        try:
            decode_address(params.hrp, str(miner_address))
        except AddressError as exc:
            raise StartupError(f"bad --miner-address {miner_address!r}: {exc.message}") from None
    mine = _boolean(merged.get("mine", False))
    if mine and miner_address is None:
        raise StartupError("--mine needs --miner-address")
    try:
        miner_threads = int(merged.get("miner_threads", 0))
    except ValueError:
        raise StartupError("--miner-threads must be an integer") from None
    if miner_threads < 0:
        raise StartupError("--miner-threads must not be negative")
    try:
        maxmempool = int(merged.get("maxmempool", MAX_MEMPOOL_USAGE // 1_000_000))
    except ValueError:
        raise StartupError("--maxmempool must be an integer (MB)") from None
    if maxmempool < MIN_MAXMEMPOOL:
        raise StartupError(f"--maxmempool must be at least {MIN_MAXMEMPOOL} MB")
    whitelist = _permissions(merged.get("whitelist"))
    level = str(merged.get("log_level", "INFO")).upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise StartupError(f"bad --log-level {level!r}")
    return Settings(
        network=network,
        params=params,
        datadir=datadir,
        listen=hostport("listen", ("0.0.0.0", params.default_port)),
        api=hostport("api", ("127.0.0.1", params.api_port)),
        peers=tuple(parse_hostport(p, "peer") for p in peers),
        seeds=tuple(parse_hostport(s, "seed") for s in [*params.seeds, *seeds]),
        discover=_boolean(merged.get("discover", True)),
        whitelist=whitelist,
        api_allow_hosts=tuple(_names(merged.get("api_allow_host", []))),
        api_token=_token(merged.get("api_token_file")),
        mine=mine,
        miner_address=miner_address,
        miner_threads=miner_threads,
        maxmempool=maxmempool,
        log_level=level,
        log_json=_boolean(merged.get("log_json", False)),
        ping_interval=_seconds(merged, "ping_interval", PING_INTERVAL),
        peer_timeout=_seconds(merged, "peer_timeout", PING_TIMEOUT),
        connect_timeout=_seconds(merged, "connect_timeout", CONNECT_TIMEOUT),
        reconnect_max=_seconds(merged, "reconnect_max", RECONNECT_MAX),
        clock_offset=_clock_offset(merged.get("clock_offset", 0.0), params),
    )


def _clock_offset(value: Any, params: NetworkParams) -> float:
    try:
        offset = float(value)
    except (TypeError, ValueError):
        raise StartupError("--clock-offset must be a number of seconds") from None
    if offset != offset or abs(offset) == float("inf"):
        raise StartupError("--clock-offset must be a finite number of seconds")
    if offset and params.name == "main":
        raise StartupError("--clock-offset is for test networks: not on main")
    return offset


MIN_TIMEOUT = 0.1  # seconds: the least --ping-interval, --peer-timeout, ... accepted


def _seconds(merged: dict[str, Any], key: str, default: float) -> float:
    """A positive duration in seconds from the flags, environment or config file."""
    flag = "--" + key.replace("_", "-")
    try:
        value = float(merged.get(key, default))
    except (TypeError, ValueError):
        raise StartupError(f"{flag} must be a number of seconds") from None
    if not value >= MIN_TIMEOUT:  # also refuses NaN
        raise StartupError(f"{flag} must be at least {MIN_TIMEOUT:g} seconds")
    return value


MIN_TOKEN_LENGTH = 32  # characters of an operator-given admin token (ours: 64 hex digits)


def _token(path: Any) -> str | None:
    """The admin token in the first line of ``path`` (None: no file given)."""
    if path is None:
        return None
    try:
        with open(os.path.expanduser(str(path)), encoding="utf-8") as fh:
            token = fh.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise StartupError(f"cannot read --api-token-file {path}: {reason}") from None
    if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
        raise StartupError(
            f"--api-token-file {path}: the token must be one word of at least "
            f"{MIN_TOKEN_LENGTH} characters"
        )
    return token


def _network(merged: dict[str, Any]) -> NetworkParams:
    """The built-in ``network`` or the ``chain`` spec's (not both unless they agree)."""
    network = merged.get("network")
    if merged.get("chain") is None:
        network = network or "main"
        if network not in NETWORKS:
            raise StartupError(f"unknown network {network!r} (choose from {', '.join(NETWORKS)})")
        return get_params(network)
    try:
        params = load_spec(os.path.expanduser(str(merged["chain"])))
    except ChainSpecError as exc:
        raise StartupError(f"bad chain spec: {exc.message} [{exc.code}]") from None
    if network is not None:
        raise StartupError(
            f"--network {network} and --chain {merged['chain']} (network {params.name}): give one"
        )
    return params


def _permissions(value: Any) -> tuple[Permission, ...]:
    """``--whitelist`` rules (Core's ``-whitelist=noban,mempool@NET``); unset: the loopback
    default; ``none``: no permission for anyone."""
    if value is None:
        return LOCAL_PERMISSIONS
    rules = [value] if isinstance(value, str) else list(value)
    if [str(r).lower() for r in rules] == ["none"]:
        return ()
    try:
        return tuple(Permission.parse(str(rule)) for rule in rules)
    except ValueError as exc:
        raise StartupError(f"bad --whitelist: {exc}") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes", "on")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "time": round(record.created, 3),
                "level": record.levelname,
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


def setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if as_json
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


class DatadirLock:
    """An exclusive flock on ``<datadir>/node.lock``: one node per datadir."""

    def __init__(self, datadir: Path) -> None:
        self.path = datadir / LOCK_FILE
        try:
            datadir.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StartupError(f"cannot use datadir {datadir}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self.fd, 32, 0).decode(errors="replace").strip()
            os.close(self.fd)
            raise StartupError(
                f"datadir {datadir} is in use by another obol-node (pid {other or '?'})"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)

    def release(self) -> None:
        os.close(self.fd)


def write_token(datadir: Path, given: str | None = None) -> str:
    """The admin token (``given``, else a fresh one) in ``<datadir>/api.token``, readable by
    the owner only."""
    token = given or secrets.token_hex(32)
    path = datadir / TOKEN_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    os.replace(tmp, path)
    return token


async def run(settings: Settings) -> int:
    params = settings.params
    stop = _install_signal_handlers()  # before the (possibly long) chain load
    lock = DatadirLock(settings.datadir)
    try:
        listen = settings.listen
        # A node bound to one address (say 127.0.0.3 in a local testnet) also dials
        # from it, so peers see, and may ban, that address rather than the OS's choice.
        bind = listen[0] if listen and listen[0] not in ("0.0.0.0", "::", "") else None
        net = NetConfig(
            listen_host=listen[0] if listen else "127.0.0.1",
            listen_port=listen[1] if listen else None,
            bind_host=bind,
            discover=settings.discover,
            permissions=settings.whitelist,
            ping_interval=settings.ping_interval,
            ping_timeout=settings.peer_timeout,
            connect_timeout=settings.connect_timeout,
            reconnect_max=settings.reconnect_max,
            user_agent=f"/obol:{VERSION}/",
        )
        miner_addr = (
            decode_address(params.hrp, settings.miner_address) if settings.miner_address else None
        )
        if settings.clock_offset:
            log.warning(
                "clock set %+g s off the system clock (--clock-offset)", settings.clock_offset
            )
        try:
            node = Node(
                NodeConfig(
                    params=params,
                    datadir=settings.datadir,
                    net=net,
                    peers=settings.peers + await resolve_seeds(settings.seeds),
                    mine=settings.mine,
                    miner_address=miner_addr,
                    miner_threads=settings.miner_threads,
                    max_mempool=settings.maxmempool * 1_000_000,
                    clock_offset=settings.clock_offset,
                )
            )
        except StoreError as exc:
            raise StartupError(str(exc)) from None
        try:
            return await _serve(node, settings, stop)
        finally:
            await node.stop()
            log.info("stopped cleanly")
    finally:
        lock.release()


async def resolve_seeds(seeds: tuple[tuple[str, int], ...]) -> tuple[tuple[str, int], ...]:
    """Every address of every seed, looked up once at start: a name with many addresses
    (a Kubernetes headless service, round-robin DNS) gives a peer for each.  A name that
    does not resolve is logged and skipped: the others, and the address book, still work."""
    loop = asyncio.get_running_loop()
    found: dict[tuple[str, int], None] = {}  # ordered, without duplicates
    for host, port in seeds:
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            log.warning("seed %s:%d not resolved: %s", host, port, exc.strerror or exc)
            continue
        addresses = sorted({str(info[4][0]) for info in infos})
        log.info("seed %s:%d resolved to %s", host, port, ", ".join(addresses))
        for address in addresses:
            found[(address, port)] = None
    return tuple(found)


def _install_signal_handlers() -> asyncio.Event:
    """SIGINT/SIGTERM set the returned event; a second signal exits at once."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = 0

    def on_signal(signum: int) -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            log.info("received %s: stopping", signal.Signals(signum).name)
            stop.set()
        else:
            # Second signal: exit now.  LMDB transactions are atomic, so an
            # abandoned block leaves the last committed state on disk.
            log.warning("second signal: exiting at once")
            os._exit(1)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    return stop


async def _serve(node: Node, settings: Settings, stop: asyncio.Event) -> int:
    from aiohttp import web

    from node.api.app import create_app
    from node.api.server import ApiRunner

    runner = None
    try:
        try:
            await node.start()
        except OSError as exc:
            raise StartupError(_port_message("P2P", settings.listen, exc)) from None
        if settings.api is not None:
            token = write_token(settings.datadir, settings.api_token)
            app = create_app(node, token, stop, allowed_hosts=settings.api_allow_hosts)
            runner = ApiRunner(app, access_log=None, shutdown_timeout=API_SHUTDOWN_TIMEOUT)
            await runner.setup()
            try:
                await web.TCPSite(runner, settings.api[0], settings.api[1]).start()
            except OSError as exc:
                raise StartupError(_port_message("API", settings.api, exc)) from None
            host, port = runner.addresses[0][:2] if runner.addresses else settings.api
            log.info("API on http://%s:%d/api/v1", host, port)
        log.info(
            "obol-node %s on %s: height=%d tip=%s, P2P port %s",
            VERSION,
            settings.network,
            node.chain.height,
            node.chain.tip.hash.hex()[:16],
            node.peers.listen_port,
        )
        await stop.wait()
        return 0
    finally:
        if runner is not None:
            await runner.cleanup()


def _port_message(what: str, address: tuple[str, int] | None, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE and address is not None:
        return f"{what} port {address[0]}:{address[1]} is already in use"
    return f"cannot listen for {what} on {address}: {exc.strerror or exc}"


def backup_main(argv: list[str]) -> int:
    """``obol-node backup DATADIR DEST``: copy the chain while the node runs (docs/deploy.md)."""
    p = argparse.ArgumentParser(
        prog="obol-node backup",
        description="copy a datadir's chain (LMDB, compacted) into DEST, a new datadir, "
        "while the node may be running",
    )
    p.add_argument("datadir")
    p.add_argument("dest")
    args = p.parse_args(argv)
    try:
        size = hot_copy(Path(args.datadir).expanduser(), Path(args.dest).expanduser())
    except (StoreError, lmdb.Error, OSError) as exc:
        print(f"obol-node backup: error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    print(f"copied the chain of {args.datadir} to {args.dest} ({size:,} bytes)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["chain"]:  # obol-node chain new|show: chain spec files
        from node.chaincmd import main as chain_main

        return chain_main(argv[1:])
    if argv[:1] == ["backup"]:  # obol-node backup DATADIR DEST: a hot copy of the chain
        return backup_main(argv[1:])
    try:
        settings = load_settings(argv)
        setup_logging(settings.log_level, settings.log_json)
        return asyncio.run(run(settings))
    except StartupError as exc:
        print(f"obol-node: error: {exc}", file=sys.stderr)
        return EXIT_STARTUP_ERROR
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
