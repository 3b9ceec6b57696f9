"""The HTTP API against a real ``obol-node`` process (one regtest daemon for the module);
its in-process parts are tested in tests/unit/api/.

Tests run in file order and share the daemon: read-only route tests first,
then the ones that mine.  None depends on an exact height.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time

import aiohttp
import pytest

from node.consensus.params import MAIN, REGTEST, TX_VERSION
from node.primitives.crypto import SigningKey, encode_address
from node.primitives.tx import COIN, OutPoint, Transaction, TxOut, sign_transaction
from tests.framework.daemon import Client, Daemon
from tests.framework.programs import free_port
from tests.framework.util import poll_until

HRP = REGTEST.hrp
ZERO_HASH = "00" * 32


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = Daemon(tmp_path_factory.mktemp("api") / "node", args=["--maxmempool", "40"]).start()
    yield d
    code = d.stop()
    assert code == 0, d.log()
    assert "Traceback" not in d.log(), d.log()


@pytest.fixture(scope="module")
def api(daemon) -> Client:
    return daemon.client


@pytest.fixture(scope="module")
def key():
    return SigningKey.generate()


def address(key_or_hash) -> str:
    h = key_or_hash.address_hash if isinstance(key_or_hash, SigningKey) else key_or_hash
    return encode_address(HRP, h)


def error(resp, status: int, code: str | None = None) -> dict:
    """Check an error answer: status, JSON body {"error": {"code", "message"}}, code."""
    assert resp.status == status, resp
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    body = resp.json
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


def mine(api: Client, n: int, to: str) -> list[str]:
    return api.ok("POST", "mine", {"blocks": n, "address": to})["hashes"]


# --- general ---------------------------------------------------------------------------------


def test_status(api):
    s = api.ok("GET", "status")
    for k in (
        "network",
        "version",
        "height",
        "tip",
        "work",
        "difficulty",
        "peers",
        "mempool",
        "syncing",
        "best_header_height",
        "uptime",
        "miner",
        "genesis",
    ):
        assert k in s, k
    assert s["network"] == "regtest"
    assert s["genesis"] == REGTEST.genesis_hash.hex()
    assert re.fullmatch(r"[0-9a-f]{64}", s["work"]) and int(s["work"], 16) > 0
    assert s["difficulty"] == 1.0
    assert s["mempool"] == {"count": 0, "bytes": 0, "usage": 0} and s["syncing"] is False
    assert s["miner"]["enabled"] is False and s["miner"]["hashrate"] == 0
    assert s["best_header_height"] == s["height"]


def test_unknown_route_wrong_method_are_json(api):
    error(api.get("nope"), 404, "not-found")
    error(api.get("/nothing-here"), 404, "not-found")  # "/" is the explorer
    error(api.get("/api/v2/status"), 404, "not-found")
    resp = api.delete("status")
    error(resp, 405, "method-not-allowed")
    assert "GET" in resp.headers["allow"]
    error(api.request("PUT", "tx", {"hex": ""}), 405, "method-not-allowed")


def test_openapi_describes_every_route(api):
    from node.api.app import api_routes, route_template

    spec = api.ok("GET", "openapi.json")
    assert spec["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == {(m, route_template(p)) for m, p, _ in api_routes()}
    refs = set(re.findall(r'"#/components/schemas/(\w+)"', json.dumps(spec)))
    assert refs <= set(spec["components"]["schemas"])
    ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids)) == len(documented)
    # the node has no --miner-address: POST /mine must name the address
    mine = spec["paths"]["/mine"]["post"]["requestBody"]["content"]["application/json"]
    assert mine["schema"]["required"] == ["address", "blocks"]


def test_head_is_get_without_a_body(api):
    """HEAD answers every GET route as GET would, headers and status, with no body."""
    for path in ("status", "blocks?count=1", "/metrics", "openapi.json"):
        got, head = api.get(path), api.request("HEAD", path)
        assert head.status == got.status == 200, (path, head)
        assert head.body == b"" and head.headers["content-type"] == got.headers["content-type"]
    head = api.request("HEAD", "blocks/xyz")
    assert head.status == 400 and head.body == b""
    assert api.request("HEAD", "bans", token=None).status == 401
    resp = api.request("HEAD", "events")  # a WebSocket upgrade is a GET only
    assert resp.status == 405 and resp.headers["allow"] == "GET"


def test_allow_lists_the_route_s_own_methods(api):
    """/tx/test is not /tx/{txid}: its 405 allows POST alone."""
    for method in ("OPTIONS", "GET", "PUT"):
        resp = api.request(method, "tx/test")
        error(resp, 405, "method-not-allowed")
        assert resp.headers["allow"] == "POST", (method, resp.headers)
    resp = api.request("OPTIONS", "tx/" + ZERO_HASH)
    error(resp, 405, "method-not-allowed")
    assert {m.strip() for m in resp.headers["allow"].split(",")} == {"GET", "HEAD"}
    error(api.get("tx/testing"), 400, "bad-txid")  # only /tx/test itself is special


def test_metrics_at_both_paths(api):
    height = api.ok("GET", "status")["height"]
    for path in ("/metrics", "/api/v1/metrics"):
        resp = api.get(path)
        assert resp.status == 200 and resp.headers["content-type"].startswith("text/plain")
        assert f"obol_height {float(height)}" in resp.text
        for name in (
            "obol_peers",
            "obol_mempool_transactions",
            "obol_mempool_bytes",
            "obol_blocks_validated_total",
            "obol_txs_validated_total",
            "obol_block_validation_seconds_bucket",
            *(
                f'obol_block_stage_seconds_bucket{{le="0.001",stage="{stage}"}}'
                for stage in ("decode", "early_relay", "queue", "validate", "commit", "tip")
            ),
            "obol_reorgs_total",
            "obol_bans",
            "obol_network_received_bytes_total",
            "obol_network_sent_bytes_total",
        ):
            assert name in resp.text, name


def test_utxoset(api):
    u = api.ok("GET", "utxoset")
    assert set(u) == {"height", "tip", "count", "amount", "hash"}
    assert re.fullmatch(r"[0-9a-f]{64}", u["hash"]) and u["tip"] == api.ok("GET", "status")["tip"]


def test_oversized_body_is_413_json(api):
    big = b'{"hex": "' + b"00" * (1024 * 1024 + 10) + b'"}'
    error(api.post("tx", raw=big), 413, "too-large")
    error(api.post("tx/test", raw=big), 413, "too-large")
    error(api.post("mine", raw=big), 413, "too-large")


# --- blocks ----------------------------------------------------------------------------------


def test_block_routes_bad_input(api):
    error(api.get("blocks/xyz"), 400, "bad-hash")
    error(api.get("blocks/-1"), 400, "bad-hash")
    error(api.get("blocks/" + "g" * 64), 400, "bad-hash")
    error(api.get("blocks/" + ZERO_HASH), 404, "block-not-found")
    error(api.get("blocks/99999999"), 404, "block-not-found")
    error(api.get("blocks/0?tx=everything"), 400, "bad-param")
    for query in (
        "count=0",
        "count=501",
        "count=abc",
        "start=-1",
        "start=1.5",
        "count=1e3",
        "start=",  # empty names no height
        "count=",
        f"start={2**31}",  # over the largest height (int32, as Bitcoin's)
        "start=1&start=2",  # given twice
    ):
        error(api.get("blocks?" + query), 400, "bad-param")
    for query in ("tx=", "tx=ids&tx=full", "tx=FULL"):
        error(api.get("blocks/0?" + query), 400, "bad-param")
    assert api.ok("GET", f"blocks?start={2**31 - 1}")["headers"] == []


def test_genesis_block(api):
    g = api.ok("GET", "blocks/0?tx=full")
    assert g["hash"] == REGTEST.genesis_hash.hex() and g["height"] == 0
    assert (
        g["prev_hash"] == ZERO_HASH and g["confirmations"] == api.ok("GET", "status")["height"] + 1
    )
    for k in ("version", "merkle_root", "timestamp", "bits", "nonce", "size", "txids"):
        assert k in g
    assert g["txs"][0]["coinbase"] is True and g["txs"][0]["fee"] is None
    assert api.ok("GET", "blocks/" + g["hash"])["txids"] == g["txids"]
    assert "txs" not in api.ok("GET", "blocks/" + g["hash"])


def test_list_blocks(api, key):
    mine(api, 3, address(key))
    tip = api.ok("GET", "status")["height"]
    page = api.ok("GET", "blocks?start=0&count=2")
    assert [h["height"] for h in page["headers"]] == [0, 1]
    assert page["headers"][1]["prev_hash"] == page["headers"][0]["hash"]
    latest = api.ok("GET", "blocks?count=2")["headers"]
    assert [h["height"] for h in latest] == [tip - 1, tip]
    assert api.ok("GET", f"blocks?start={tip + 10}")["headers"] == []
    assert len(api.ok("GET", "blocks?start=0&count=500")["headers"]) == min(500, tip + 1)


def test_invalidate_and_reconsider(api, key):
    mine(api, 2, address(key))
    status = api.ok("GET", "status")
    tip, height = status["tip"], status["height"]
    r = api.ok("POST", f"blocks/{tip}/invalidate")
    assert r["height"] == height - 1 and r["disconnected"] == [tip]
    assert api.ok("GET", f"blocks/{tip}")["confirmations"] == -1
    tips = api.ok("GET", "chaintips")
    assert {"hash": tip, "status": "invalid"}.items() <= next(
        t for t in tips if t["hash"] == tip
    ).items()
    assert re.fullmatch(r"[0-9a-f]{64}", tips[0]["work"]) and tips[0]["status"] == "active"
    r = api.ok("POST", f"blocks/{tip}/reconsider")
    assert r["tip"] == tip and r["connected"] == [tip]
    assert api.ok("GET", f"blocks/{tip}")["confirmations"] == 1
    error(api.post(f"blocks/{ZERO_HASH}/invalidate"), 404, "block-not-found")
    error(api.post("blocks/nothex/reconsider"), 400, "bad-hash")
    error(
        api.post(f"blocks/{REGTEST.genesis_hash.hex()}/invalidate"),
        400,
        "cannot-invalidate-genesis",
    )


# --- transactions ----------------------------------------------------------------------------


def test_tx_routes_bad_input(api):
    error(api.get("tx/zz"), 400, "bad-txid")
    error(api.get("tx/" + ZERO_HASH), 404, "tx-not-found")
    for path in ("tx", "tx/test"):
        error(api.post(path, raw=b"{not json"), 400, "bad-json")
        error(api.post(path, raw=b"\xff\xfe"), 400, "bad-json")
        error(api.post(path, raw=b""), 400, "bad-json")
        error(api.post(path, ["hex"]), 400, "bad-json")
        error(api.post(path, raw=b"[" * 100_000), 400, "bad-json")
        error(api.post(path, {}), 400, "bad-param")
        error(api.post(path, {"hex": 5}), 400, "bad-param")
        error(api.post(path, {"hex": "zz"}), 400, "bad-hex")
        error(api.post(path, {"hex": "abc"}), 400, "bad-hex")
        error(api.post(path, {"hex": " 00"}), 400, "bad-hex")
        error(api.post(path, {"hex": ""}), 400, "bad-encoding")
        error(api.post(path, {"hex": "c0"}), 400, "bad-encoding")
        error(api.post(path, {"hex": "00" * 200_001}), 400)


def test_tx_non_canonical_and_missing_inputs(api, key):
    tx = sign_transaction(
        TX_VERSION,
        [(OutPoint(b"\x11" * 32, 0), TxOut(COIN, key.address_hash), key)],
        [TxOut(COIN - 1000, key.address_hash)],
        REGTEST.network_id,
    )
    assert tx.raw.endswith(b"\x00")  # locktime 0 as a positive fixint
    non_canonical = tx.raw[:-1] + b"\xcc\x00"  # ... as a uint8: same value, other bytes
    error(api.post("tx", {"hex": non_canonical.hex()}), 400, "bad-encoding")
    error(api.post("tx", {"hex": tx.raw.hex() + "00"}), 400, "bad-encoding")  # trailing byte
    error(api.post("tx", {"hex": tx.raw.hex()}), 400, "bad-txns-inputs-missingorspent")
    error(api.post("tx/test", {"hex": tx.raw.hex()}), 400, "bad-txns-inputs-missingorspent")


def test_address_bad_input(api, key):
    error(api.get("address/notanaddress"), 400, "bad-address")
    good = address(key)
    broken = good[:-1] + ("p" if good[-1] == "q" else "q")  # another last character: checksum
    error(api.get("address/" + broken), 400, "bad-address")
    error(api.get("address/" + encode_address(MAIN.hrp, key.address_hash)), 400, "wrong-network")
    error(
        api.get("address/" + encode_address(MAIN.hrp, key.address_hash) + "/history"),
        400,
        "wrong-network",
    )
    for query in ("limit=0", "limit=1001", "limit=x", "before=-5", "before=", f"before={2**31}"):
        error(api.get(f"address/{address(key)}/history?{query}"), 400, "bad-param")


def test_unused_address_is_empty(api):
    a = address(SigningKey.generate())
    assert api.ok("GET", f"address/{a}")["balance"] == {
        "confirmed": 0,
        "unconfirmed": 0,
        "total": 0,
        "immature": 0,
    }
    assert api.ok("GET", f"address/{a}/history") == {"address": a, "txs": [], "next_before": None}


def test_mempool_and_fees_empty(api):
    m = api.ok("GET", "mempool")
    assert m["count"] == 0 and m["bytes"] == 0 and m["txids"] == [] and m["fee_histogram"]
    assert api.ok("GET", "fees") == {"1": 1, "3": 1, "6": 1, "unit": "base units per byte"}


# --- admin routes: authentication --------------------------------------------------------------

ADMIN_ROUTES = [
    ("POST", "mine"),
    ("POST", "miner"),
    ("POST", "peers"),
    ("DELETE", "peers/127.0.0.1:1"),
    ("GET", "bans"),
    ("POST", "bans"),
    ("DELETE", "bans"),
    ("DELETE", "bans/10.0.0.1"),
    ("POST", f"blocks/{ZERO_HASH}/invalidate"),
    ("POST", f"blocks/{ZERO_HASH}/reconsider"),
    ("POST", "stop"),
]


@pytest.mark.parametrize("method,path", ADMIN_ROUTES)
def test_admin_needs_token(api, method, path):
    resp = api.request(method, path, {}, token=None)
    error(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    error(
        api.request(method, path, {}, token=None, headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        401,
        "unauthorized",
    )
    error(
        api.request(method, path, {}, token=None, headers={"Authorization": "Bearer"}),
        401,
        "unauthorized",
    )
    error(api.request(method, path, {}, token="0" * 64), 403, "forbidden")
    error(api.request(method, path, {}, token=api.token + "x"), 403, "forbidden")


def test_mine_bad_input(api, key):
    a = address(key)
    for body in (
        {"blocks": 0, "address": a},
        {"blocks": 10_001, "address": a},
        {"blocks": "5", "address": a},
        {"blocks": True, "address": a},
        {"blocks": 1.5, "address": a},
        {"address": a},
        {"blocks": 1},
        {"blocks": 1, "address": 7},
    ):
        error(api.post("mine", body), 400, "bad-param")
    error(api.post("mine", {"blocks": 1, "address": "robol1garbage"}), 400, "bad-address")
    error(
        api.post("mine", {"blocks": 1, "address": encode_address(MAIN.hrp, key.address_hash)}),
        400,
        "wrong-network",
    )
    error(api.post("mine", raw=b"[1]"), 400, "bad-json")


def test_miner_toggle(api):
    error(api.post("miner", {"enabled": True}), 409, "no-miner-address")
    error(api.post("miner", {"enabled": "yes"}), 400, "bad-param")
    error(api.post("miner", {}), 400, "bad-param")
    assert api.ok("POST", "miner", {"enabled": False}) == {"enabled": False}


def test_peer_routes_bad_input(api):
    assert api.ok("GET", "peers") == []
    for body in (
        {},
        {"connect": None},
        {"connect": 5},
        {"connect": "nohost"},
        {"connect": "127.0.0.1:0"},
        {"connect": "127.0.0.1:070"},
        {"connect": "127.0.0.1:70000"},
        {"connect": ":80"},
        {"connect": "[]:80"},
        {"connect": "a b:80"},
        {"connect": "a:80\n"},
    ):
        error(api.post("peers", body), 400, "bad-param")
    error(api.post("peers", {"connect": f"127.0.0.1:{free_port()}"}), 409, "connect-failed")
    error(api.delete("peers/garbage"), 400, "bad-param")
    error(api.delete("peers/127.0.0.1:1"), 404, "peer-not-found")
    error(api.delete("peers/[::1]:1"), 404, "peer-not-found")


def test_connect_answers_the_handshake_s_outcome(daemon, api):
    """POST /peers answers once the handshake succeeded or failed: a connection that
    closes at once is a 409 with the reason, not a new peer."""
    own = f"127.0.0.1:{daemon.p2p_port}"
    error(api.post("peers", {"connect": own}), 409, "self-connection")
    error(api.post("peers", {"connect": own}), 409, "self-connection")  # now known at once
    not_p2p = error(
        api.post("peers", {"connect": f"127.0.0.1:{daemon.api_port}"}), 409, "handshake-failed"
    )
    assert "before the handshake" in not_p2p["message"], not_p2p
    assert api.ok("GET", "peers") == []


def test_connect_to_a_node_that_bans_us(tmp_path, api):
    with Daemon(tmp_path / "banning") as other:
        other.client.ok("POST", "bans", {"host": "127.0.0.1", "reason": "test"})
        error(
            api.post("peers", {"connect": f"127.0.0.1:{other.p2p_port}"}), 409, "handshake-failed"
        )
        assert api.ok("GET", "peers") == []


def test_bans(api):
    assert api.ok("GET", "bans") == []
    ban = api.ok("POST", "bans", {"host": "10.1.2.3", "seconds": 60, "reason": "test"})
    assert ban["host"] == "10.1.2.3" and ban["reason"] == "test" and ban["until"] > time.time()
    assert [b["host"] for b in api.ok("GET", "bans")] == ["10.1.2.3"]
    assert api.ok("DELETE", "bans/10.1.2.3") == {"unbanned": "10.1.2.3"}
    error(api.delete("bans/10.1.2.3"), 404, "ban-not-found")
    for body in (
        {},
        {"seconds": 60},
        {"host": None},
        {"host": 5},
        {"host": "not an ip"},
        {"host": " 10.0.0.1"},
        {"host": "fe80::1%eth0"},
        {"host": "10.0.0.1", "seconds": -1},
        {"host": "10.0.0.1", "seconds": 0},
        {"host": "10.0.0.1", "seconds": 1e-300},  # a ban over before it starts
        {"host": "10.0.0.1", "seconds": 0.5},
        {"host": "10.0.0.1", "seconds": "60"},
        {"host": "10.0.0.1", "seconds": 10**12},
        {"host": "10.0.0.1", "reason": 5},
        {"host": "10.0.0.1", "reason": "x" * 101},
    ):
        error(api.post("bans", body), 400, "bad-param")
    error(api.post("bans", raw=b'{"host": "10.0.0.1", "seconds": NaN}'), 400, "bad-json")
    error(api.post("bans", raw=b'{"host": "10.0.0.1", "seconds": Infinity}'), 400, "bad-json")
    error(api.delete("bans/not-an-ip"), 400, "bad-param")
    api.ok("POST", "bans", {"host": "10.0.0.1", "seconds": None, "reason": None})
    api.ok("POST", "bans", {"host": "::ffff:10.0.0.2", "seconds": 5.5, "reason": "x" * 100})
    assert sorted(b["host"] for b in api.ok("GET", "bans")) == ["10.0.0.1", "10.0.0.2"]
    assert "obol_bans 2.0" in api.get("/metrics").text
    assert api.ok("DELETE", "bans") == {"cleared": 2}
    assert api.ok("GET", "bans") == []


def test_a_ban_reason_cannot_forge_log_lines(daemon, api):
    """A reason with a line break (or any control character) is refused: written to the
    log, it would start a line of the attacker's choosing."""
    forged = "spam\n2026-01-01 00:00:00,000 WARNING obol.net: forged"
    for reason in (forged, "a\rb", "tab\there", "nul\x00", "del\x7f", "nel\x85", "ls\u2028"):
        error(api.post("bans", {"host": "10.9.9.9", "reason": reason}), 400, "bad-param")
    assert "forged" not in daemon.log()
    assert api.ok("GET", "bans") == []
    ban = api.ok("POST", "bans", {"host": "10.9.9.9", "reason": "spam, é ✓"})
    assert ban["reason"] == "spam, é ✓"
    assert api.ok("DELETE", "bans/10.9.9.9") == {"unbanned": "10.9.9.9"}


def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` as it is and read the answer up to the closed connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "data,status,code",
    [
        (
            b"GET /api/v1/" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            414,
            "uri-too-long",
        ),
        (
            b"GET /api/v1/status HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "headers-too-large",
        ),
        (
            b"GET /api/v1/status HTTP/1.1\r\n"
            + b"".join(b"X-%d: 1\r\n" % n for n in range(200))
            + b"\r\n",
            431,
            "headers-too-large",
        ),
        (b"GARBAGE\r\n\r\n", 400, "bad-request"),
        (b"GET /api/v1/status HTTP/1.1\r\nBad Header\r\n\r\n", 400, "bad-request"),
    ],
    ids=["long-url", "long-header", "many-headers", "garbage", "bad-header"],
)
def test_requests_aiohttp_refuses_are_json(daemon, data, status, code):
    """What aiohttp's parser refuses never reaches the application; it is answered as
    every other error, with HTTP's status for it, and logged without a traceback (the
    module's daemon fixture checks the log)."""
    got, headers, body = raw_request(daemon.api_port, data)
    assert got == status, (got, body)
    assert headers["content-type"].startswith("application/json"), headers
    assert json.loads(body)["error"]["code"] == code, body


def test_events_needs_websocket(api):
    error(api.get("events"), 400, "websocket-required")


# --- the full flow: mine, spend, relay, confirm ----------------------------------------------


async def next_event(ws, predicate, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "timed out waiting for an event"
        msg = await asyncio.wait_for(ws.receive(), remaining)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        event = json.loads(msg.data)
        if predicate(event):
            return event


def spend(coin: dict, key: SigningKey, outputs: list[TxOut]) -> Transaction:
    return sign_transaction(
        TX_VERSION,
        [
            (
                OutPoint(bytes.fromhex(coin["txid"]), coin["index"]),
                TxOut(coin["amount"], key.address_hash),
                key,
            )
        ],
        outputs,
        REGTEST.network_id,
    )


async def test_full_flow(daemon, api, key):
    me, other = address(key), SigningKey.generate()
    them = address(other)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"http://127.0.0.1:{daemon.api_port}/api/v1/events") as ws,
    ):
        hello = await next_event(ws, lambda e: True)
        assert hello["type"] == "hello" and hello["network"] == "regtest"

        hashes = mine(api, 101, me)
        assert len(hashes) == 101
        tip_event = await next_event(ws, lambda e: e["type"] == "tip" and e["hash"] == hashes[-1])
        assert tip_event["height"] == api.ok("GET", "status")["height"]

        info = api.ok("GET", f"address/{me}")
        utxos = info["utxos"]
        assert all(u["coinbase"] and u["height"] is not None for u in utxos)
        mature = [u for u in utxos if u["mature"]]
        immature = [u for u in utxos if not u["mature"]]
        assert len(mature) >= 2 and immature
        assert all(u["confirmations"] >= REGTEST.coinbase_maturity - 1 for u in mature)
        assert info["balance"]["confirmed"] == sum(u["amount"] for u in utxos)
        assert info["balance"]["immature"] == sum(u["amount"] for u in immature)
        coin = min(mature, key=lambda u: u["height"])
        fee = 10_000
        tx = spend(
            coin,
            key,
            [
                TxOut(COIN, other.address_hash),
                TxOut(coin["amount"] - COIN - fee, key.address_hash),
            ],
        )

        tested = api.ok("POST", "tx/test", {"hex": tx.raw.hex()})
        assert (
            tested["allowed"] is True and tested["fee"] == fee and tested["txid"] == tx.txid.hex()
        )
        assert api.ok("GET", "mempool")["count"] == 0

        assert api.ok("POST", "tx", {"hex": tx.raw.hex()})["txid"] == tx.txid.hex()
        tx_event = await next_event(ws, lambda e: e["type"] == "tx")
        assert tx_event["txid"] == tx.txid.hex() and tx_event["fee"] == fee

        # in the mempool
        mp = api.ok("GET", "mempool")
        assert mp["txids"] == [tx.txid.hex()] and mp["count"] == 1 and mp["bytes"] == tx.size
        assert api.ok("GET", "status")["mempool"] == {
            "count": 1,
            "bytes": tx.size,
            "usage": mp["usage"],
        }
        # --maxmempool
        assert 2 * tx.size < mp["usage"] < 10 * tx.size and mp["max_usage"] == 40_000_000
        assert api.ok("GET", "fees")["1"] == 1
        view = api.ok("GET", f"tx/{tx.txid.hex()}")
        assert (
            view["in_mempool"] is True and view["confirmations"] == 0 and view["block_hash"] is None
        )
        assert view["fee"] == fee and view["hex"] == tx.raw.hex()
        assert view["inputs"][0] == {
            **view["inputs"][0],
            "txid": coin["txid"],
            "index": coin["index"],
            "amount": coin["amount"],
            "address": me,
        }
        assert [(o["amount"], o["address"]) for o in view["outputs"]] == [
            (COIN, them),
            (coin["amount"] - COIN - fee, me),
        ]
        theirs = api.ok("GET", f"address/{them}")
        assert theirs["balance"] == {
            "confirmed": 0,
            "unconfirmed": COIN,
            "total": COIN,
            "immature": 0,
        }
        assert (
            theirs["utxos"][0]["confirmations"] == 0 and theirs["utxos"][0]["txid"] == tx.txid.hex()
        )
        mine_now = api.ok("GET", f"address/{me}")
        assert mine_now["balance"]["unconfirmed"] == -(COIN + fee)
        spent = next(u for u in mine_now["utxos"] if u["txid"] == coin["txid"])
        assert spent["spent_by"] == tx.txid.hex()
        assert api.ok("GET", f"address/{them}/history")["txs"][0]["confirmations"] == 0

        # rejections
        error(api.post("tx", {"hex": tx.raw.hex()}), 409, "txn-already-in-mempool")
        double = spend(coin, key, [TxOut(coin["amount"] - fee, other.address_hash)])
        error(api.post("tx", {"hex": double.raw.hex()}), 409, "txn-mempool-conflict")
        cheap = spend(mature[-1], key, [TxOut(mature[-1]["amount"], other.address_hash)])
        error(api.post("tx", {"hex": cheap.raw.hex()}), 400, "min-fee-not-met")
        young = spend(immature[0], key, [TxOut(immature[0]["amount"] - fee, other.address_hash)])
        assert error(api.post("tx/test", {"hex": young.raw.hex()}), 400)["code"].startswith(
            "bad-txns"
        )

        # confirmed
        [block_hash] = mine(api, 1, me)
        await next_event(ws, lambda e: e["type"] == "tip" and e["hash"] == block_hash)
        view = api.ok("GET", f"tx/{tx.txid.hex()}")
        assert view["block_hash"] == block_hash and view["confirmations"] == 1
        assert view["in_mempool"] is False and view["fee"] == fee and view["position"] == 1
        assert view["inputs"][0]["amount"] == coin["amount"] and view["inputs"][0]["address"] == me
        block = api.ok("GET", f"blocks/{block_hash}?tx=full")
        assert block["txids"] == [block["txs"][0]["txid"], tx.txid.hex()]
        assert block["txs"][1] == view
        assert block["txs"][0]["outputs"][0]["amount"] == REGTEST.subsidy(block["height"]) + fee
        assert api.ok("GET", "mempool")["count"] == 0
        theirs = api.ok("GET", f"address/{them}")
        assert theirs["balance"] == {
            "confirmed": COIN,
            "unconfirmed": 0,
            "total": COIN,
            "immature": 0,
        }
        assert theirs["utxos"][0]["confirmations"] == 1 and theirs["utxos"][0]["coinbase"] is False
        hist = api.ok("GET", f"address/{them}/history")
        assert hist["txs"] == [
            {
                "txid": tx.txid.hex(),
                "height": block["height"],
                "position": 1,
                "confirmations": 1,
                "block_hash": block_hash,
            }
        ]
        error(api.post("tx", {"hex": tx.raw.hex()}), 409, "txn-already-known")
        height = api.ok("GET", "status")["height"]
        assert f"obol_height {float(height)}" in api.get("metrics").text
        assert "obol_block_validation_seconds_count" in api.get("metrics").text


def metric(text: str, name: str) -> float:
    """One sample of a /metrics text (labels included in ``name``); 0 if it is absent."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def test_mined_blocks_are_timed(api):
    """Blocks of POST /mine count in obol_block_validation_seconds and in the stages of
    their path (one chain-thread hand-off per request; no decode or early relay)."""
    stage = 'obol_block_stage_seconds_count{{stage="{}"}}'
    names = ["obol_block_validation_seconds_count"] + [
        stage.format(s) for s in ("decode", "early_relay", "queue", "validate", "commit", "tip")
    ]
    before = api.get("metrics").text
    mine(api, 3, address(SigningKey.generate()))
    mine(api, 1, address(SigningKey.generate()))
    after = api.get("metrics").text
    counts = [metric(after, n) - metric(before, n) for n in names]
    assert counts == [4, 0, 0, 2, 4, 4, 4], dict(zip(names, counts, strict=True))
    assert metric(after, "obol_block_validation_seconds_sum") > metric(
        before, "obol_block_validation_seconds_sum"
    )


def test_mine_takes_what_arrived_since_the_last_block(api):
    """The node keeps its template warm between requests: a transaction accepted after the
    last block was mined is in the next one, which connects; the one after is empty."""
    key = SigningKey.generate()
    mine(api, 1, address(key))
    mine(api, REGTEST.coinbase_maturity, address(SigningKey.generate()))  # the template is warm
    coin = next(u for u in api.ok("GET", f"address/{address(key)}")["utxos"] if u["mature"])
    tx = spend(coin, key, [TxOut(coin["amount"] - 3_000, key.address_hash)])
    api.ok("POST", "tx", {"hex": tx.raw.hex()})
    [with_tx] = mine(api, 1, address(key))
    block = api.ok("GET", f"blocks/{with_tx}")
    assert block["txids"][1:] == [tx.txid.hex()] and block["confirmations"] == 1
    assert api.ok("GET", "status")["tip"] == with_tx
    [empty] = mine(api, 1, address(key))
    assert api.ok("GET", f"blocks/{empty}")["tx_count"] == 1


def test_batch_txs(api):
    """POST /txs checks a batch together: a parent and its child in one request both enter;
    each bad item gets its own error code, in order, without failing the others."""
    key = SigningKey.generate()
    mine(api, 1, address(key))
    mine(api, REGTEST.coinbase_maturity, address(SigningKey.generate()))
    coin = [u for u in api.ok("GET", f"address/{address(key)}")["utxos"] if u["mature"]][0]
    parent = spend(
        coin,
        key,
        [TxOut(COIN, key.address_hash), TxOut(coin["amount"] - COIN - 5_000, key.address_hash)],
    )
    child = sign_transaction(
        TX_VERSION,
        [(OutPoint(parent.txid, 0), parent.outputs[0], key)],
        [TxOut(COIN - 2_000, key.address_hash)],
        REGTEST.network_id,
    )
    # pays less than it replaces
    double = spend(coin, key, [TxOut(coin["amount"] - 5_000, key.address_hash)])
    answer = api.ok(
        "POST", "txs", {"txs": [parent.raw.hex(), child.raw.hex(), "zz", "c0", double.raw.hex()]}
    )
    assert answer["accepted"] == 2
    results = answer["results"]
    assert results[0] == {"txid": parent.txid.hex(), "fee": 5_000}
    assert results[1] == {"txid": child.txid.hex(), "fee": 2_000}
    assert [r["error"]["code"] for r in results[2:]] == [
        "bad-hex",
        "bad-encoding",
        "txn-mempool-conflict",
    ]
    assert {parent.txid.hex(), child.txid.hex()} <= set(api.ok("GET", "mempool")["txids"])
    for bad in ({}, {"txs": "00"}, {"txs": []}, {"txs": ["00"] * 1001}):
        error(api.post("txs", bad), 400, "bad-param")
    error(api.post("txs", raw=b"{not json"), 400, "bad-json")
    mine(api, 1, address(key))
    assert api.ok("GET", "mempool")["count"] == 0


def test_history_pages(api, key):
    me = address(key)
    pages, before = [], None
    while True:
        query = f"limit=7&before={before}" if before is not None else "limit=7"
        page = api.ok("GET", f"address/{me}/history?{query}")
        pages.append(page["txs"])
        before = page["next_before"]
        if before is None:
            break
        assert len(page["txs"]) >= 7
    txs = [t for p in pages for t in p]
    assert len({t["txid"] for t in txs}) == len(txs)  # no duplicates
    heights = [t["height"] for t in txs]
    assert heights == sorted(heights, reverse=True)  # newest first
    coinbases = [u for u in api.ok("GET", f"address/{me}")["utxos"] if u["coinbase"]]
    assert len(txs) >= len(coinbases) + 1  # + the spend


def test_two_daemons_connect_and_sync(tmp_path, api, key):
    with Daemon(tmp_path / "second") as other:
        port = other.p2p_port
        peer = api.ok("POST", "peers", {"connect": f"127.0.0.1:{port}"})
        assert peer["address"] == f"127.0.0.1:{port}" and peer["direction"] == "outbound"
        error(api.post("peers", {"connect": f"127.0.0.1:{port}"}), 409, "already-connected")
        tip = api.ok("GET", "status")["tip"]
        poll_until(
            lambda: other.client.ok("GET", "status")["tip"] == tip, 30, what="second node synced"
        )
        [ours] = api.ok("GET", "peers")
        assert ours["established"] is True and "best_known_height" in ours
        height = api.ok("GET", "status")["height"]
        [theirs] = other.client.ok("GET", "peers")  # the second node learnt our headers
        assert theirs["direction"] == "inbound" and theirs["best_known_height"] == height
        assert api.ok("DELETE", f"peers/127.0.0.1:{port}") == {"disconnected": 1}
        metrics = other.client.get("metrics").text  # blocks it got by relay were timed
        count = re.search(r"^obol_block_validation_seconds_count (\S+)$", metrics, re.M)
        assert count and float(count.group(1)) >= 1, metrics
        for stage in ("decode", "queue", "validate", "commit", "tip"):  # and each stage
            assert metric(metrics, f'obol_block_stage_seconds_count{{stage="{stage}"}}') >= 1
        # (the address book may dial it again: what matters is that this connection closed)
        poll_until(
            lambda: ours["id"] not in [p["id"] for p in api.ok("GET", "peers")],
            10,
            what="connection closed",
        )


def test_a_page_in_a_browser_gets_nothing(daemon, api):
    """DNS rebinding, cross-site POSTs and cross-site WebSockets are refused: a Host that
    is a name other than localhost, a POST body that is not JSON (what a form or a simple
    fetch sends), an events WebSocket from another origin."""
    error(api.get("status", headers={"Host": "attacker.example:80"}), 403, "forbidden-host")
    error(api.get("status", headers={"Host": "rebind.attacker.example"}), 403, "forbidden-host")
    for host in (f"127.0.0.1:{daemon.api_port}", f"localhost:{daemon.api_port}", "[::1]:1"):
        assert api.get("status", headers={"Host": host}).status == 200, host
    body = json.dumps({"hex": "00"}).encode()
    for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        resp = api.post("tx", raw=body, headers={"Content-Type": kind})
        error(resp, 415, "unsupported-media-type")
    assert api.post("tx", {"hex": "00"}).status == 400  # the same body as JSON reaches the route

    async def websocket(origin: str | None) -> int:
        headers = {"Origin": origin} if origin else {}
        url = f"http://127.0.0.1:{daemon.api_port}/api/v1/events"
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, headers=headers) as ws:
                    await ws.receive_json(timeout=10)  # hello
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    assert asyncio.run(websocket("https://attacker.example")) == 403
    assert asyncio.run(websocket(f"http://127.0.0.1:{daemon.api_port}")) == 101  # its own
    assert asyncio.run(websocket(None)) == 101  # not a browser


def test_an_allowed_host_name_is_answered(tmp_path):
    """--api-allow-host NAME serves a name (a proxy's, a service's) and nothing else."""
    with Daemon(tmp_path / "d", args=["--api-allow-host", "obol-0.obol.svc"]) as node:
        assert node.client.get("status", headers={"Host": "obol-0.obol.svc:18443"}).status == 200
        error(node.client.get("status", headers={"Host": "other.svc"}), 403, "forbidden-host")
