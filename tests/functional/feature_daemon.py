"""``obol-node`` as a process: start-up errors, configuration, clean stops under load.

Start-up errors: a bad flag, miner address, port, datadir or config file ends the
process at once with a clear message on stderr and no traceback.  Configuration: a
TOML file, OBOL_* variables and flags combine key by key.  Stops: SIGTERM while mining,
during a burst of mining requests, with an events stream open and in the middle of a
sync exits 0, and the datadir reopens consistent (its active chain replays to the same
UTXO set).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from node.chain.chainstate import ChainState
from node.consensus.params import REGTEST, TESTNET, NetworkParams
from node.daemon import StartupError, load_settings
from node.primitives.crypto import SigningKey, encode_address
from tests.framework.daemon import Daemon, run_node
from tests.framework.programs import free_port
from tests.framework.util import poll_until


def assert_clean_failure(result, *fragments: str, code: int = 1) -> None:
    """Non-zero exit with a clear message on stderr and no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def listening_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


def regtest_args(datadir: Path, *extra: str) -> list[str]:
    return [
        "--network",
        "regtest",
        "--datadir",
        str(datadir),
        "--listen",
        f"127.0.0.1:{free_port()}",
        "--api",
        f"127.0.0.1:{free_port()}",
        *extra,
    ]


# --- start-up errors -----------------------------------------------------------------------


def test_unknown_flag(tmp_path):
    result = run_node(["--datadir", str(tmp_path), "--no-such-flag"])
    assert_clean_failure(result, "unrecognized arguments: --no-such-flag", code=2)


def test_bad_miner_address(tmp_path):
    testnet_address = encode_address(TESTNET.hrp, bytes(20))
    result = run_node(regtest_args(tmp_path / "d", "--miner-address", testnet_address))
    assert_clean_failure(result, "bad --miner-address", "tobol")
    result = run_node(regtest_args(tmp_path / "d", "--miner-address", "robol1nonsense"))
    assert_clean_failure(result, "bad --miner-address")
    result = run_node(regtest_args(tmp_path / "d", "--mine"))
    assert_clean_failure(result, "--mine needs --miner-address")


@pytest.mark.parametrize("which", ["api", "listen"])
def test_port_in_use(tmp_path, which):
    with listening_socket() as blocker:
        port = blocker.getsockname()[1]
        args = regtest_args(tmp_path / "d")
        args[args.index("--" + which) + 1] = f"127.0.0.1:{port}"
        result = run_node(args)
    assert_clean_failure(
        result, f"port 127.0.0.1:{port} is already in use", "API" if which == "api" else "P2P"
    )


def test_datadir_of_another_network(tmp_path):
    chain = ChainState(tmp_path / "d", REGTEST)  # a regtest datadir
    chain.close()
    result = run_node(
        [
            "--network",
            "testnet",
            "--datadir",
            str(tmp_path / "d"),
            "--listen",
            "none",
            "--api",
            "none",
        ]
    )
    assert_clean_failure(result, "holds the 'regtest' network, not 'testnet'")


def test_unusable_datadir(tmp_path):
    (tmp_path / "file").write_text("not a directory")
    result = run_node(
        [
            "--network",
            "regtest",
            "--datadir",
            str(tmp_path / "file"),
            "--listen",
            "none",
            "--api",
            "none",
        ]
    )
    assert_clean_failure(result, "cannot use datadir")


def test_bad_config_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("network = \n")
    assert_clean_failure(run_node(["--config", str(bad)]), "not valid TOML")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('colour = "blue"\n')
    assert_clean_failure(run_node(["--config", str(unknown)]), "unknown key 'colour'")
    assert_clean_failure(
        run_node(["--config", str(tmp_path / "missing.toml")]), "cannot read config file"
    )


def test_two_nodes_on_one_datadir_refused(tmp_path):
    with Daemon(tmp_path / "d") as first:
        result = run_node(regtest_args(tmp_path / "d"))
        assert_clean_failure(result, "is in use by another obol-node", f"pid {first.proc.pid}")
        assert first.client.ok("GET", "status")["height"] == 0  # the first one is unharmed
    # once it has stopped, the datadir can be used again
    with Daemon(tmp_path / "d") as again:
        assert again.client.ok("GET", "status")["network"] == "regtest"


# --- configuration ---------------------------------------------------------------------------


def test_config_env_and_flags(tmp_path):
    """TOML file < OBOL_* environment < flags, key by key."""
    from_file, from_env = SigningKey.generate(), SigningKey.generate()
    p2p, api_file, api_env, api_flag = free_port(), free_port(), free_port(), free_port()
    datadir = tmp_path / "from-config"
    config = tmp_path / "obol.toml"
    config.write_text(
        f'network = "regtest"\ndatadir = "{datadir}"\nlisten = "127.0.0.1:{p2p}"\n'
        f'api = "127.0.0.1:{api_file}"\n'
        f'miner-address = "{encode_address(REGTEST.hrp, from_file.address_hash)}"\n'
        f'miner_threads = 1\nlog-level = "debug"\n'
    )
    env = {
        "OBOL_API": f"127.0.0.1:{api_env}",
        "OBOL_MINER_ADDRESS": encode_address(REGTEST.hrp, from_env.address_hash),
    }
    daemon = Daemon(
        datadir,
        args=["--config", str(config), "--api", f"127.0.0.1:{api_flag}"],
        env=env,
        auto_ports=False,
        api_port=api_flag,
    )
    with daemon:
        status = daemon.client.ok("GET", "status")
        assert status["network"] == "regtest"  # file
        assert status["p2p_port"] == p2p  # file
        assert status["miner"]["address"] == env["OBOL_MINER_ADDRESS"]  # env > file
        assert "DEBUG" in daemon.log()  # file
        # the API answers on the flag's port only (flag > env > file)
        for port in (api_file, api_env):
            with pytest.raises(OSError):
                socket.create_connection(("127.0.0.1", port), timeout=2).close()
        # the miner can be switched on (it has an address now) and off
        assert daemon.client.ok("POST", "miner", {"enabled": True}) == {"enabled": True}
        poll_until(
            lambda: daemon.client.ok("GET", "status")["height"] >= 1, 30, what="a mined block"
        )
        assert daemon.client.ok("GET", "status")["miner"]["enabled"] is True
        assert daemon.client.ok("POST", "miner", {"enabled": False}) == {"enabled": False}
        miner = daemon.client.ok("GET", "status")["miner"]
        assert miner["enabled"] is False and miner["hashrate"] == 0 and miner["blocks_found"] >= 1
        # POST /stop stops the daemon cleanly
        assert daemon.client.ok("POST", "stop") == {"stopping": True}
        assert daemon.proc.wait(30) == 0, daemon.log()
    assert "stopped cleanly" in daemon.log()


def test_load_settings_precedence(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(
        'network = "testnet"\nminer-threads = 3\nmine = false\npeers = ["1.2.3.4:5"]\n'
    )
    s = load_settings(["--config", str(config)], env={})
    assert (s.network, s.miner_threads, s.peers, s.mine) == ("testnet", 3, (("1.2.3.4", 5),), False)
    s = load_settings(
        ["--config", str(config)],
        env={"OBOL_MINER_THREADS": "2", "OBOL_PEER": "5.6.7.8:9,[::1]:10", "OBOL_LISTEN": "none"},
    )
    assert (s.miner_threads, s.peers, s.listen) == (2, (("5.6.7.8", 9), ("::1", 10)), None)
    s = load_settings(
        ["--config", str(config), "--miner-threads", "1", "--network", "regtest"],
        env={"OBOL_MINER_THREADS": "2"},
    )
    assert (s.miner_threads, s.network, s.api) == (1, "regtest", ("127.0.0.1", REGTEST.api_port))
    for env in (
        {"OBOL_MINER_THREADS": "many"},
        {"OBOL_NETWORK": "moon"},
        {"OBOL_API": "nowhere"},
        {"OBOL_LOG_LEVEL": "loud"},
        {"OBOL_MAXMEMPOOL": "big"},
        {"OBOL_MAXMEMPOOL": "4"},
    ):
        with pytest.raises(StartupError):
            load_settings([], env=env)
    assert load_settings([], env={}).maxmempool == 32
    assert load_settings(["--maxmempool", "50"], env={"OBOL_MAXMEMPOOL": "40"}).maxmempool == 50


def test_peer_timeout_flags(tmp_path):
    """--ping-interval, --peer-timeout, --connect-timeout, --reconnect-max: flags, environment
    and config file; positive seconds only; the defaults are the peer layer's."""
    s = load_settings([], env={})
    assert (s.ping_interval, s.peer_timeout, s.connect_timeout, s.reconnect_max) == (
        60.0,
        60.0,
        10.0,
        30.0,
    )
    config = tmp_path / "c.toml"
    config.write_text("ping-interval = 2\npeer-timeout = 3.5\n")
    s = load_settings(
        ["--config", str(config), "--connect-timeout", "1.5"], env={"OBOL_RECONNECT_MAX": "4"}
    )
    assert (s.ping_interval, s.peer_timeout, s.connect_timeout, s.reconnect_max) == (
        2.0,
        3.5,
        1.5,
        4.0,
    )
    for argv in (["--peer-timeout", "0"], ["--ping-interval", "-1"], ["--reconnect-max", "nan"]):
        with pytest.raises(StartupError, match=argv[0]):
            load_settings(argv, env={})
    with pytest.raises(StartupError, match="--connect-timeout must be a number"):
        load_settings([], env={"OBOL_CONNECT_TIMEOUT": "soon"})


def test_clock_offset(tmp_path):
    """--clock-offset runs the node's clock ahead: a block it mines carries the skewed time
    (and the flag is refused on main)."""
    with pytest.raises(StartupError, match="not on main"):
        load_settings(["--clock-offset", "60"], env={})
    with pytest.raises(StartupError, match="finite"):
        load_settings(["--network", "regtest", "--clock-offset", "inf"], env={})
    assert load_settings(["--network", "regtest"], env={}).clock_offset == 0.0
    offset = 3000
    address = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)
    with Daemon(tmp_path / "d", args=["--clock-offset", str(offset)]) as daemon:
        mined = daemon.client.ok("POST", "mine", {"blocks": 1, "address": address})
        block = daemon.client.ok("GET", f"blocks/{mined['hashes'][0]}")
        assert block["timestamp"] >= time.time() + offset - 60
        assert "clock set +3000 s off" in daemon.log()


# --- stopping under load ---------------------------------------------------------------------


def replayed_stats(datadir: Path, params: NetworkParams, scratch: Path):
    """Open the datadir after the node exited; replay its active chain into a fresh one.

    Returns (height, utxo stats) after checking that both agree on tip and UTXO set.
    """
    with (
        contextlib.closing(ChainState(datadir, params)) as chain,
        contextlib.closing(ChainState(scratch, params)) as fresh,
    ):
        for entry in chain.chain[1:]:
            assert entry.parent is chain.chain[entry.height - 1]  # an intact tip chain
            block = chain.reader.get_block(entry.hash)
            assert block is not None, f"block data of height {entry.height} missing"
            assert fresh.accept_block(block).status == "connected"
        assert fresh.tip.hash == chain.tip.hash
        assert fresh.utxo_stats == chain.utxo_stats
        # regtest/testnet here only mine coinbases: one output per block above genesis
        outputs = sum(
            len(tx.outputs) for e in chain.chain[1:] for tx in chain.reader.get_block(e.hash).txs
        )
        assert chain.utxo_stats.count == outputs
        return chain.height, chain.utxo_stats


def test_sigterm_while_mining_testnet(tmp_path):
    miner = encode_address(TESTNET.hrp, SigningKey.generate().address_hash)
    with Daemon(
        tmp_path / "d",
        network="testnet",
        args=["--mine", "--miner-address", miner, "--miner-threads", "1"],
    ) as daemon:
        poll_until(
            lambda: daemon.client.ok("GET", "status")["height"] >= 1,
            60,
            what="the first testnet block",
        )
        assert daemon.client.ok("GET", "status")["miner"]["enabled"] is True
        resp = daemon.client.post("mine", {"blocks": 1, "address": miner})
        assert resp.status == 409 and resp.json["error"]["code"] == "not-regtest"
        code = daemon.stop()
    assert code == 0, daemon.log()
    assert "Traceback" not in daemon.log(), daemon.log()
    height, _ = replayed_stats(tmp_path / "d", TESTNET, tmp_path / "replay")
    assert height >= 1


def test_sigterm_during_regtest_mining_burst(tmp_path):
    answer: dict = {}

    def burst(daemon: Daemon) -> None:
        to = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)
        try:
            resp = daemon.client.post("mine", {"blocks": 10_000, "address": to})
            answer["status"], answer["body"] = resp.status, resp.json
        except OSError as exc:
            answer["error"] = exc

    with Daemon(tmp_path / "d") as daemon:
        # a daemon thread: if the test fails, the node is stopped and the request ends
        thread = threading.Thread(target=burst, args=(daemon,), daemon=True)
        thread.start()
        poll_until(lambda: daemon.client.ok("GET", "status")["height"] >= 150, 60, what="mining")
        code = daemon.stop(timeout=30)
        thread.join(30)
    assert code == 0, daemon.log()
    assert "Traceback" not in daemon.log(), daemon.log()
    if "status" in answer:  # the burst was cut short and answered with what it had mined
        assert answer["status"] == 200 and 150 <= len(answer["body"]["hashes"]) < 10_000
    height, stats = replayed_stats(tmp_path / "d", REGTEST, tmp_path / "replay")
    assert 150 <= height < 10_000 and stats.count == height


async def test_stop_closes_event_streams(tmp_path):
    """An open events WebSocket does not hold up a SIGTERM: it is closed with 1001."""
    import aiohttp

    with Daemon(tmp_path / "d") as daemon:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{daemon.api_port}/api/v1/events") as ws,
        ):
            assert (await ws.receive_json(timeout=10))["type"] == "hello"
            daemon.proc.send_signal(signal.SIGTERM)
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 1001 or msg.data == 1001
        code = await asyncio.to_thread(daemon.proc.wait, 15)
    assert code == 0, daemon.log()


def test_sigterm_during_sync(tmp_path):
    """A node stopped with SIGTERM while syncing thousands of blocks exits 0
    and reopens consistent."""
    with Daemon(tmp_path / "src") as source:
        to = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)
        source.client.ok("POST", "mine", {"blocks": 3000, "address": to})
        with Daemon(tmp_path / "dst", args=["--peer", f"127.0.0.1:{source.p2p_port}"]) as syncing:
            poll_until(
                lambda: syncing.client.ok("GET", "status")["height"] >= 200,
                60,
                what="sync under way",
            )
            code = syncing.stop(timeout=30)
        assert code == 0, syncing.log()
        assert "Traceback" not in syncing.log(), syncing.log()
    height, _ = replayed_stats(tmp_path / "dst", REGTEST, tmp_path / "replay")
    assert 200 <= height <= 3000
