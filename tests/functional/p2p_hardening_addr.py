"""An `addr` flood from one peer neither empties a real node's address book nor holds its
event loop.

Issue 14, item 5.  Before: ten `addr` messages of 1,000 fresh addresses from one peer
replaced 9,980 of a full book's 10,000 entries (a full book evicted its worst-scored
entries, and a forged fresh timestamp always scores best), each message costing a
sort of the whole book.  Now (as Bitcoin Core): a peer may make the node process one
address at first and 0.1 a second after (the rest are dropped unread), and the book is
bucketed by source, so even a peer exempt from the limit (the ``addr`` permission)
fills only its own buckets and evicts nothing others gave.

The node is a real ``obol-node``; its book is written beforehand as the file of an
older version (version 1), and read back after the node stopped.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import pytest

from network.addrman import BUCKET_SIZE, NEW_BUCKETS_PER_SOURCE_GROUP, PEERS_FILE
from node.consensus.params import REGTEST
from node.primitives import encoding
from tests.framework.daemon import Daemon
from tests.framework.hostile import global_host
from tests.framework.util import scenario_log
from tests.framework.wire import WireClient

log = scenario_log(__name__)

BOOK_SOURCES = 100  # sources (each its own address group) of the addresses already known
PER_SOURCE = 100  # addresses each of them gave
FLOOD_MESSAGES = 50  # `addr` messages of the attacker
FLOOD_SIZE = 1000  # addresses in each (the most one `addr` may carry)
FLOOD_TIMEOUT = 60.0  # seconds the node may take to get through the flood
STATUS_LATENCY = 1.0  # seconds: longest answer to GET /status while the flood is handled


def write_old_book(datadir, rng: random.Random) -> set[tuple[str, int]]:
    """A version-1 ``peers.json`` of BOOK_SOURCES × PER_SOURCE addresses seen an hour ago."""
    now = time.time()
    records = []
    for _ in range(BOOK_SOURCES):
        source = global_host(rng)
        for _ in range(PER_SOURCE):
            records.append(
                {
                    "host": global_host(rng),
                    "port": 8333,
                    "last_seen": now - 3600,
                    "last_success": 0.0,
                    "last_attempt": 0.0,
                    "failures": 0,
                    "source": source,
                }
            )
    datadir.mkdir(parents=True)
    (datadir / PEERS_FILE).write_text(json.dumps({"version": 1, "addresses": records}))
    return {(r["host"], r["port"]) for r in records}


def known_addresses(node: Daemon) -> int:
    for line in node.client.get("/metrics").text.splitlines():
        if line.startswith("obol_known_addresses "):
            return int(float(line.split()[1]))
    raise AssertionError("no obol_known_addresses in /metrics")


async def flood(node: Daemon, rng: random.Random) -> list[float]:
    """Send the flood and a ping behind it; return the latencies of GET /status measured
    until the pong came (messages of one connection are handled in order)."""
    client = await WireClient.connect(
        node.p2p_port, encoding, REGTEST.magic, genesis_hash=REGTEST.genesis_hash
    )
    await client.handshake()
    now = int(time.time())
    messages = [
        [[global_host(rng), 8333, now] for _ in range(FLOOD_SIZE)] for _ in range(FLOOD_MESSAGES)
    ]
    for body in messages:
        client.send("addr", body)
    client.send("ping", [7])
    sent = time.monotonic()
    pong = asyncio.create_task(client.expect("pong", timeout=FLOOD_TIMEOUT))
    latencies = []
    while True:
        started = time.monotonic()
        assert (await asyncio.to_thread(node.client.get, "status")).status == 200
        latencies.append(time.monotonic() - started)
        if pong.done():
            break
    assert await pong == [7]
    log.info("the node got through the flood %.3fs after it was sent", time.monotonic() - sent)
    client.close()
    return latencies


@pytest.mark.parametrize("permission", ["none", "addr"])
def test_an_addr_flood_keeps_what_other_sources_gave_and_the_loop_free(tmp_path, permission):
    """Without the ``addr`` permission (loopback's default) the flood is rate-limited to a
    single address; with it, it is processed and lands in its own buckets only."""
    rng = random.Random(14)
    datadir = tmp_path / "node"
    preloaded = write_old_book(datadir, rng)
    args = ["--no-discover"]  # dial none of the made-up addresses
    if permission == "addr":
        args += ["--whitelist", "noban,mempool,addr@127.0.0.0/8"]
    with Daemon(datadir, args=args) as node:
        loaded = known_addresses(node)
        log.info("the node loaded %d of %d addresses of the old book", loaded, len(preloaded))
        assert loaded > len(preloaded) // 2
        log.info("one peer sends %d addr of %d fresh addresses", FLOOD_MESSAGES, FLOOD_SIZE)
        latencies = asyncio.run(flood(node, rng))
        log.info("GET /status during the flood: at most %.3fs", max(latencies))
        assert max(latencies) < STATUS_LATENCY
        after = known_addresses(node)
    book = json.loads((datadir / PEERS_FILE).read_text())
    stored = {(a["host"], a["port"]) for a in book["addresses"]}
    kept = len(stored & preloaded)
    log.info("after the flood: %d addresses, %d of the %d loaded kept", after, kept, loaded)
    assert kept == loaded, "the flood pushed out addresses other sources gave"
    assert book["version"] == 2 and len(stored) == after
    from_flood = after - kept
    if permission == "none":
        assert from_flood <= 1
    else:
        assert 0 < from_flood <= NEW_BUCKETS_PER_SOURCE_GROUP * BUCKET_SIZE
