"""The ``attacks`` benchmark: a node under each attack of issue 14, beside the same node
without it.

A source node (``--whitelist none``: its loopback peers are strangers, as on the
internet) holds a chain of empty regtest blocks.  For each scenario an attacker
in this process runs one attack against it over real TCP, from addresses of
127.0.0.0/8 other than 127.0.0.1, reconnecting whenever the node drops it,
while a fresh honest node syncs the chain from the source.  Measured: the honest
sync rate (blocks/s, from ``POST /peers`` to its tip) and the source's API
latency while it serves the sync (``GET /status`` polled back to back: the
event loop's lag as a user sees it), each against the run without an attack.

Attacks (docs/protocol.md §14 says what bounds each):

getdata   one ``getdata`` of 50,000 copies of the tip block, then nothing read
headers   chains of headers from genesis with less work than the tip (presync)
blocks    valid side blocks 5 blocks above genesis, pushed unasked
decode    ``inv`` frames of nested empty arrays, as large as ``inv`` may be
addr      ``addr`` messages of 1,000 fresh routable addresses, back to back
orphans   transactions of 700 inputs that do not exist, each new
slots     connections that never finish the handshake, kept at 40
mempool   BIP35 ``mempool`` requests without the permission
magic     HTTP requests on the P2P port
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import random
import statistics
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

from network.frames import encode_frame
from network.protocol import MAX_ADDR, AddrEntry, encode_addr
from node.consensus.params import REGTEST
from node.consensus.pow import bits_to_target
from node.mining.miner import NONCE_START, header_prefix, search_nonce
from node.p2p.messages import MAX_HEADERS, MAX_INV
from node.primitives import encoding
from node.primitives.block import Block, BlockHeader, merkle_root
from node.primitives.tx import Transaction, TxIn, TxOut, make_coinbase
from node.runtime.node import PAYLOAD_LIMITS
from scripts.bench_harness import Bench
from scripts.bench_net import BenchError, NodeProc
from tests.framework.wire import WireClient

SCENARIOS = (
    "none",
    "getdata",
    "headers",
    "blocks",
    "decode",
    "addr",
    "orphans",
    "slots",
    "mempool",
    "magic",
)
ATTACKERS = 4  # concurrent attacking connections per scenario (slots: SLOT_SOCKETS)
SLOT_SOCKETS = 40  # sockets the slot attack keeps open
ORPHAN_INPUTS = 700  # inputs of each missing-input transaction
PREPARED_FRAMES = 100  # addr and tx frames an attacking connection cycles through
SIDE_BLOCKS = 30  # distinct side blocks the blocks attack pushes in turn
RECONNECT_PAUSE = 0.02  # seconds an attacker waits before reconnecting after a drop
SYNC_TIMEOUT = 120.0  # seconds an honest sync may take under attack before it counts as starved
PROBE_PAUSE = 0.01  # seconds between two latency probes of the source's API
# The honest sync's target under attack: every peer gets a turn of the loop in order, the
# honest one 1 ms of getdata, each attacker one message, whose handling cannot be cut
# (up to ~2 ms for 1,000 addresses or a 700-input orphan): 1 / (1 + 2 × ATTACKERS).
FAIR_SHARE = 1 / (1 + 2 * ATTACKERS)


@dataclass(frozen=True)
class Target:
    """What the attacks need to know of the source node."""

    p2p: str  # HOST:PORT of the node attacked
    tip: BlockHeader  # its tip header
    fork: tuple[BlockHeader, int]  # a header low on its chain and its height
    headers: list[BlockHeader]  # a low-work chain from genesis (full batch + a short one)
    side: list[Block]  # valid side blocks on ``fork``


def _solve(header: BlockHeader) -> BlockHeader:
    target = bits_to_target(header.bits)
    nonce = search_nonce(header_prefix(header), target, NONCE_START, 1 << 40)
    assert nonce is not None
    return header.with_nonce(nonce)


def _header_json(view: dict) -> BlockHeader:
    return BlockHeader.create(
        view["version"],
        bytes.fromhex(view["prev_hash"]),
        bytes.fromhex(view["merkle_root"]),
        view["timestamp"],
        view["bits"],
        view["nonce"],
    )


def low_work_headers(count: int) -> list[BlockHeader]:
    """``count`` regtest headers from genesis, one second apart."""
    prev = REGTEST.genesis.header
    out = []
    for _ in range(count):
        unsolved = BlockHeader.create(
            1, prev.hash, os.urandom(32), prev.timestamp + 1, REGTEST.genesis_bits, NONCE_START
        )
        prev = _solve(unsolved)
        out.append(prev)
    return out


def side_block(parent: BlockHeader, height: int) -> Block:
    coinbase = make_coinbase(
        height, [TxOut(REGTEST.subsidy(height), os.urandom(20))], os.urandom(8)
    )
    header = BlockHeader.create(
        1,
        parent.hash,
        merkle_root([coinbase.txid]),
        parent.timestamp + 1,
        REGTEST.genesis_bits,
        NONCE_START,
    )
    solved = _solve(header)
    return Block.create(solved, [coinbase])


def missing_input_tx() -> Transaction:
    inputs = [TxIn(os.urandom(32), 0, os.urandom(64), os.urandom(32)) for _ in range(ORPHAN_INPUTS)]
    return Transaction.create(1, inputs, [TxOut(1_000, os.urandom(20))])


def nested_inv_frame_payload() -> bytes:
    """The envelope ``["inv", [[], [], ...]]`` as large as ``inv`` may be: one byte per list."""
    count = PAYLOAD_LIMITS["inv"] - 16
    return b"\x92\xa3inv\xdd" + struct.pack(">I", count) + b"\x90" * count


class Attacker:
    """Runs one attack against ``target`` until cancelled; counts what it sent."""

    def __init__(self, target: Target, kind: str, number: int) -> None:
        self.target = target
        self.kind = kind
        self.source = f"127.0.0.{2 + number}"  # each attacker its own address
        self.sent = 0  # attack messages (or connections) sent
        self.prepared = _prepare(kind, number)  # frames made before the attack starts
        self.dropped = 0  # times the node closed the connection

    async def connect(self, handshake: bool = True) -> WireClient:
        host, port = self.target.p2p.rsplit(":", 1)
        client = await WireClient.connect(
            int(port),
            magic=REGTEST.magic,
            host=host,
            genesis_hash=REGTEST.genesis_hash,
            source=self.source,
        )
        if handshake:
            await client.handshake()
        return client

    async def run(self) -> None:
        attack = getattr(self, f"_{self.kind}")
        while True:
            with contextlib.suppress(ConnectionError, OSError, TimeoutError):
                await attack()
            self.dropped += 1
            await asyncio.sleep(RECONNECT_PAUSE)

    async def _flood(self, client: WireClient, make: Callable[[], bytes]) -> None:
        """Send frames from ``make`` as fast as the socket takes them (what comes back is
        read and dropped), until the node closes the connection."""
        reader = asyncio.create_task(_discard(client))
        try:
            while not reader.done():
                client.send_raw(make())
                self.sent += 1
                await client.drain()
                await asyncio.sleep(0)  # the other attackers' turn
        finally:
            reader.cancel()
            client.abort()

    async def _getdata(self) -> None:
        client = await self.connect()
        client.send("getdata", [[2, self.target.tip.hash]] * MAX_INV)
        self.sent += 1
        await client.drain()
        await asyncio.sleep(3600)  # reads nothing: the node must bound what it queues

    async def _headers(self) -> None:
        client = await self.connect()
        full = client.frame("headers", [h.to_list() for h in self.target.headers[:MAX_HEADERS]])
        rest = client.frame("headers", [h.to_list() for h in self.target.headers[MAX_HEADERS:]])
        parts = iter(range(1 << 62))
        await self._flood(client, lambda: full if next(parts) % 2 == 0 else rest)

    async def _blocks(self) -> None:
        client = await self.connect()
        frames = [client.frame("block", b.to_list()) for b in self.target.side]
        turn = iter(range(1 << 62))
        await self._flood(client, lambda: frames[next(turn) % len(frames)])

    async def _decode(self) -> None:
        client = await self.connect()
        frame = encode_frame(REGTEST.magic, nested_inv_frame_payload())
        await self._flood(client, lambda: frame)

    async def _addr(self) -> None:
        client = await self.connect()
        frames = self.prepared
        turn = iter(range(1 << 62))
        await self._flood(client, lambda: frames[next(turn) % len(frames)])

    async def _orphans(self) -> None:
        client = await self.connect()
        frames = self.prepared
        turn = iter(range(1 << 62))
        await self._flood(client, lambda: frames[next(turn) % len(frames)])

    async def _slots(self) -> None:
        held: list[tuple[WireClient, asyncio.Task]] = []
        try:
            while True:
                held = [(c, r) for c, r in held if not r.done()]
                while len(held) < SLOT_SOCKETS // ATTACKERS:
                    client = await self.connect(handshake=False)
                    held.append((client, asyncio.create_task(_discard(client))))
                    self.sent += 1
                await asyncio.sleep(0.05)
        finally:
            for client, reader in held:
                reader.cancel()
                client.abort()

    async def _mempool(self) -> None:
        client = await self.connect()
        client.send("mempool", [])
        self.sent += 1
        await client.closed_by_peer(timeout=30)

    async def _magic(self) -> None:
        client = await self.connect(handshake=False)
        client.send_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        self.sent += 1
        await client.closed_by_peer(timeout=30)


def _prepare(kind: str, number: int) -> list[bytes]:
    """The frames an attack cycles through, made before it starts (so that making them
    costs the attacking process nothing while the node is measured)."""

    def frame(msg_type: str, body: object) -> bytes:
        return encode_frame(REGTEST.magic, encoding.encode([msg_type, body]))

    if kind == "addr":
        rng = random.Random(number)
        now = int(time.time())
        return [
            frame(
                "addr",
                encode_addr(
                    [
                        AddrEntry(
                            f"{rng.randrange(1, 224)}.{rng.randrange(256)}."
                            f"{rng.randrange(256)}.{rng.randrange(1, 255)}",
                            8333,
                            now,
                        )
                        for _ in range(MAX_ADDR)
                    ]
                ),
            )
            for _ in range(PREPARED_FRAMES)
        ]
    if kind == "orphans":
        return [frame("tx", missing_input_tx().to_list()) for _ in range(PREPARED_FRAMES)]
    return []


def _attack_process(kind: str, target: Target, ready, stop, results) -> None:
    """Entry point of the attacking process: ATTACKERS connections until ``stop`` is set."""
    asyncio.run(_attack_main(kind, target, ready, stop, results))


async def _attack_main(kind: str, target: Target, ready, stop, results) -> None:
    attackers = [Attacker(target, kind, i) for i in range(ATTACKERS)]
    tasks = [asyncio.create_task(a.run()) for a in attackers]
    ready.set()
    while not stop.is_set():
        await asyncio.sleep(0.05)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    results.put((sum(a.sent for a in attackers), sum(a.dropped for a in attackers)))


async def _discard(client: WireClient) -> None:
    """Read and drop what the node sends until it closes the connection."""
    with contextlib.suppress(ConnectionError, OSError):
        while await client.reader.read(65536):
            pass


async def _probe(node: NodeProc, latencies: list[float]) -> None:
    while True:
        started = time.perf_counter()
        await node.status()
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(PROBE_PAUSE)


async def _scenario(b: Bench, source: NodeProc, target: Target, kind: str, height: int) -> dict:
    """One honest sync while ``kind`` runs (in a process of its own, so that the attack
    does not slow this one's measuring): its rate, the API latencies, the attack counts."""
    context = multiprocessing.get_context("spawn")
    ready, stop, results = context.Event(), context.Event(), context.Queue()
    attack = None
    if kind != "none":
        attack = context.Process(
            target=_attack_process, args=(kind, target, ready, stop, results), daemon=True
        )
        attack.start()
        await asyncio.to_thread(ready.wait, 120)
        await asyncio.sleep(0.5)  # the attack is under way first
    latencies: list[float] = []
    honest = b.node(f"attacks-honest-{kind}-{len(b.nodes)}")  # a fresh datadir each time
    try:
        await honest.start()
        probe = asyncio.create_task(_probe(source, latencies))
        started = time.perf_counter()
        await honest.post("peers", {"connect": source.p2p})
        try:
            finished = await honest.wait_height(height, SYNC_TIMEOUT, interval=0.02)
        except BenchError:  # starved: reported as the rate of a sync that took the timeout
            finished = started + SYNC_TIMEOUT
            b.log(f"  attacks {kind}: the honest sync did not finish in {SYNC_TIMEOUT:.0f} s")
        probe.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await probe
    finally:
        sent = dropped = 0
        if attack is not None:
            stop.set()
            sent, dropped = await asyncio.to_thread(results.get, True, 60)
            await asyncio.to_thread(attack.join, 30)
        await b.stop_nodes(honest)
    alive = (await source.status())["height"] == height
    return {
        "rate": height / (finished - started),
        "p50_ms": 1000 * statistics.median(latencies),
        "max_ms": 1000 * max(latencies),
        "sent": sent,
        "dropped": dropped,
        "alive": alive,
    }


async def _target(b: Bench, node: NodeProc, height: int) -> Target:
    await node.start()
    address = b.address(b.seed + b"/attacks")
    mined = 0
    while mined < height:
        mined += len((await node.mine(min(10_000, height - mined), address))["hashes"])
    tip = _header_json(await node.get(f"blocks/{height}"))
    fork_view = await node.get("blocks/5")
    fork = _header_json(fork_view)
    short = height - 144 - 1  # just below the anti-DoS work
    headers = await asyncio.to_thread(low_work_headers, short)
    side = [side_block(fork, 6) for _ in range(SIDE_BLOCKS)]
    return Target(node.p2p, tip, (fork, 5), headers, side)


async def bench_attacks(b: Bench) -> None:
    height = b.sizes.empty_blocks
    source = b.node("attacks-source", args=("--whitelist", "none"))
    target = await _target(b, source, height)
    runs = {}
    for kind in SCENARIOS:
        runs[kind] = await _scenario(b, source, target, kind, height)
        b.log(f"  attacks {kind}: {runs[kind]}")
    # the machine's speed moves: the baseline is the mean of a run before and one after
    last = await _scenario(b, source, target, "none", height)
    b.log(f"  attacks none, again: {last}")
    base = {k: (runs["none"][k] + last[k]) / 2 for k in ("rate", "p50_ms", "max_ms")}
    b.add("attack_none_sync", base["rate"], "blocks/s", note=f"{height:,} empty blocks, no attack")
    b.add("attack_none_api_p50", base["p50_ms"], "ms", note=f"max {base['max_ms']:.0f} ms")
    for kind in SCENARIOS[1:]:
        run = runs[kind]
        b.add(
            f"attack_{kind}_sync",
            run["rate"],
            "blocks/s",
            base["rate"],
            "attack_none_sync",
            target=FAIR_SHARE,
            note=f"{run['sent']:,} sent, {run['dropped']:,} drops",
        )
        b.add(
            f"attack_{kind}_api_p50",
            run["p50_ms"],
            "ms",
            base["p50_ms"],
            "attack_none_api_p50",
            note=f"max {run['max_ms']:.0f} ms",
        )
    await b.stop_nodes(source)
