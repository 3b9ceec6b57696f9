"""Relay as a user sees it (issue 15): the black-box line and the single-transaction path.

``blackbox``: a line of 4 nodes; the clock starts just before ``POST /mine`` of one block
at node 0 and stops when all four ``GET /status`` report it (each node polled on its own
keep-alive connection).  Three cases: an empty block; a block of BIG_TXS transactions
every node already holds (relayed compact and rebuilt from the mempools); and one whose
transactions only node 0 holds (each hop fetches them with ``getblocktxn``).

``single``: transactions one at a time, each sent only once the previous was answered:
``POST /tx`` on one keep-alive connection to a node alone and to a node with two peers,
and ``tx`` frames from one raw P2P peer to the node with two peers (each timed until a
second raw peer, connecting from WATCHER with the ``notrickle`` permission, is told of it
by ``inv``, i.e. until it is in the mempool and announced).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import statistics
import time

from node.chain.chainstate import ChainState
from node.consensus.params import REGTEST
from node.p2p.messages import INV_TX, parse_inv
from node.p2p.ports import BLOCK_STAGES
from node.primitives.block import Block
from node.primitives.crypto import sha256d
from scripts import bench_chain as bc
from scripts.bench_harness import Bench
from scripts.bench_net import (
    BenchError,
    CpuMeter,
    KeepAlive,
    NodeProc,
    WirePeer,
    tx_frame,
    wait_for,
)
from scripts.bench_suite import FAN_OUT, fan_out_coins

LINE = 4  # nodes of the black-box line
BIG_TXS = 2_000  # transactions of the big blocks (the 2,000)
POLL_PAUSE = 0.001  # seconds between one poller's GET /status requests
PAUSE = 0.05  # seconds between two timed blocks or runs
TXS_BATCH = 500  # transactions per POST /txs while filling mempools (the route's limit is 1,000)
WAIT = 60.0  # seconds any set-up wait may take
WATCHER = "127.0.0.2"  # loopback address the P2P figure's listening peer connects from


def _p(xs: list[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` (nearest rank)."""
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _fund(b: Bench, node: NodeProc, seed: bytes, count: int) -> list[bytes]:
    """``count`` signed, independent 1-in/2-out transactions spending confirmed coins of
    ``node``'s chain (the chain is mined here, then the funding confirmed)."""
    address = b.address(seed)
    fans = -(-count // FAN_OUT)
    start = (await node.status())["height"]
    await node.mine(fans + REGTEST.coinbase_maturity, address)
    coins = await fan_out_coins(node, seed, range(start + 1, start + fans + 1), count)
    await node.mine(1, address)
    return await b.sign_spends(seed, coins)


async def _submit(node: NodeProc, raws: list[bytes]) -> None:
    for i in range(0, len(raws), TXS_BATCH):
        answer = await node.post("txs", {"txs": [r.hex() for r in raws[i : i + TXS_BATCH]]})
        refused = [r["error"]["code"] for r in answer["results"] if "error" in r]
        if refused:
            raise BenchError(f"{node.name} refused {len(refused)} transactions: {refused[0]}")


async def _mempools(nodes: list[NodeProc]) -> list[int]:
    return [(await n.status())["mempool"]["count"] for n in nodes]


async def _peers(nodes: list[NodeProc]) -> list[int]:
    return [(await n.status())["peers"] for n in nodes]


class Line:
    """Four nodes in a line, node 0 joined to node 1 through its API (not ``--peer``), so
    that it can leave and come back; node 0 grants no permission (``--whitelist none``),
    so a peer that connects does not ask for its mempool."""

    def __init__(self, b: Bench) -> None:
        self.b = b
        self.nodes = [
            b.node(f"blackbox-{i}", args=("--whitelist", "none") if i == 0 else ())
            for i in range(LINE)
        ]
        self.mine_conn: KeepAlive | None = None
        self.polls: list[KeepAlive] = []

    async def start(self) -> None:
        first, *rest = self.nodes
        await first.start()
        for i, n in enumerate(rest):
            await n.start(peers=(rest[i - 1],) if i else ())
        await self.join()
        self.mine_conn = await KeepAlive.open(first)
        self.polls = [await KeepAlive.open(n) for n in self.nodes]

    async def join(self) -> None:
        await self.nodes[0].post("peers", {"connect": self.nodes[1].p2p})
        await wait_for(self._lined_up, WAIT, "a line of 4 connected nodes", 0.05)

    async def leave(self) -> None:
        """Node 0 disconnects from node 1."""
        await self.nodes[0].request("DELETE", f"peers/{self.nodes[1].p2p}")
        await wait_for(
            lambda: self._peers_are([0, 1, 2, 1]), WAIT, "node 0 to leave the line", 0.02
        )

    async def _lined_up(self) -> bool:
        return await self._peers_are([1, 2, 2, 1])

    async def _peers_are(self, counts: list[int]) -> bool:
        return await _peers(self.nodes) == counts

    async def height(self) -> int:
        heights = {(await n.status())["height"] for n in self.nodes}
        if len(heights) != 1:
            raise BenchError(f"the line is not on one tip: heights {sorted(heights)}")
        return heights.pop()

    async def synced(self) -> None:
        async def same() -> bool:
            return len({(await n.status())["tip"] for n in self.nodes}) == 1

        await wait_for(same, WAIT, "the line on one tip", 0.02)

    async def blackbox(self, address: str, txs: int) -> float:
        """Seconds from just before ``POST /mine`` at node 0 until every node's
        ``GET /status`` reports the new block, which must hold ``txs`` transactions
        besides its coinbase."""
        assert self.mine_conn is not None
        height = await self.height() + 1
        body = json.dumps({"blocks": 1, "address": address}).encode()

        async def seen(conn: KeepAlive) -> float:
            deadline = time.monotonic() + WAIT
            while json.loads(await conn.ok("GET", "status"))["height"] < height:
                if time.monotonic() > deadline:
                    raise BenchError(f"{conn.node.name} did not reach height {height}")
                await asyncio.sleep(POLL_PAUSE)
            return time.perf_counter()

        started = time.perf_counter()
        mine = asyncio.ensure_future(self.mine_conn.ok("POST", "mine", body))
        ends = await asyncio.gather(*(seen(c) for c in self.polls))
        mined = await mine
        elapsed = max(ends) - started
        block = await self.nodes[0].get(f"blocks/{json.loads(mined)['hashes'][0]}")
        if len(block["txids"]) != txs + 1:
            raise BenchError(f"the timed block holds {len(block['txids']) - 1} txs, not {txs}")
        return elapsed

    def close(self) -> None:
        for conn in [self.mine_conn, *self.polls]:
            if conn is not None:
                conn.close()


async def bench_blackbox(b: Bench) -> None:
    s = b.sizes
    seed = b.seed + b"/blackbox"
    address = b.address(seed)
    line = Line(b)
    try:
        await line.start()
        raws = await _fund(b, line.nodes[0], seed, 2 * s.blackbox_big_runs * BIG_TXS)
        await line.synced()
        empty = []
        for _ in range(s.blackbox_runs):
            empty.append(await line.blackbox(address, 0))
            await asyncio.sleep(PAUSE)
        known = []
        before = [await n.metrics() for n in line.nodes[1:]]
        prof = b.profile("blackbox_known_relay", line.nodes[1].pid)
        for _ in range(s.blackbox_big_runs):
            batch, raws = raws[:BIG_TXS], raws[BIG_TXS:]
            await _submit(line.nodes[0], batch)
            await wait_for(
                lambda: _all_hold(line.nodes, BIG_TXS), WAIT, "the txs in every mempool", 0.05
            )
            known.append(await line.blackbox(address, BIG_TXS))
            await line.synced()
        b.profiler.detach(prof)
        known_stages = _stage_means(before, [await n.metrics() for n in line.nodes[1:]])
        unknown = []
        for _ in range(s.blackbox_big_runs):
            batch, raws = raws[:BIG_TXS], raws[BIG_TXS:]
            await line.leave()
            await _submit(line.nodes[0], batch)
            await line.join()
            if await _mempools(line.nodes) != [BIG_TXS, 0, 0, 0]:
                raise BenchError(
                    f"mempools before the unknown block: {await _mempools(line.nodes)}"
                )
            unknown.append(await line.blackbox(address, BIG_TXS))
            await line.synced()
    finally:
        line.close()
        await b.stop_nodes(*line.nodes)
    how = "from just before POST /mine at node 0 until all 4 GET /status report the block"
    for name, runs, target, what in (
        ("blackbox_line_empty", empty, 5.0, "an empty block"),
        (
            "blackbox_line_2000_known",
            known,
            15.0,
            f"a block of {BIG_TXS:,} transactions every node holds (compact, rebuilt; "
            f"mean ms per block at nodes 1-3 by stage: {known_stages})",
        ),
        (
            "blackbox_line_2000_unknown",
            unknown,
            None,
            f"a block of {BIG_TXS:,} transactions only node 0 holds (node 0 had just "
            "reconnected, so its first hop is not high-bandwidth)",
        ),
    ):
        b.add(
            name,
            statistics.median(runs) * 1000,
            "ms",
            target=target,
            target_of="value",
            op="<=",
            note=f"{what}; a line of {LINE} nodes, {how}; median of {len(runs)}, "
            f"min {min(runs) * 1000:.1f}, max {max(runs) * 1000:.1f} ms",
        )


def _stage_means(before: list[dict[str, float]], after: list[dict[str, float]]) -> str:
    """The mean of ``obol_block_stage_seconds`` per block and stage, in ms, over the nodes
    whose /metrics were read ``before`` and ``after`` a phase."""
    means = []
    for stage in BLOCK_STAGES:
        key = f'obol_block_stage_seconds_{{}}{{{{stage="{stage}"}}}}'
        pairs = list(zip(after, before, strict=True))
        seconds = sum(a[key.format("sum")] - o[key.format("sum")] for a, o in pairs)
        count = sum(a[key.format("count")] - o[key.format("count")] for a, o in pairs)
        means.append(f"{stage} {seconds / count * 1000:.1f}" if count else f"{stage} -")
    return ", ".join(means)


async def _all_hold(nodes: list[NodeProc], count: int) -> bool:
    return all(c == count for c in await _mempools(nodes))


# --- the single-transaction path -----------------------------------------------------------


async def _sequential_api(node: NodeProc, raws: list[bytes]) -> list[float]:
    conn = await KeepAlive.open(node)
    seconds = []
    try:
        for raw in raws:
            body = json.dumps({"hex": raw.hex()}).encode()
            started = time.perf_counter()
            await conn.ok("POST", "tx", body)
            seconds.append(time.perf_counter() - started)
    finally:
        conn.close()
    return seconds


async def _status_floor(node: NodeProc, count: int) -> list[float]:
    """Seconds of each of ``count`` ``GET /status`` on one keep-alive connection to an idle
    node, one at a time: the floor of a request (parse, route, middlewares, answer)."""
    conn = await KeepAlive.open(node)
    seconds = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            await conn.ok("GET", "status")
            seconds.append(time.perf_counter() - started)
    finally:
        conn.close()
    return seconds


async def _sequential_p2p(node: NodeProc, raws: list[bytes]) -> list[float]:
    """Each ``tx`` frame sent once the previous was announced to a second raw peer."""
    sender = await WirePeer.connect(REGTEST, node.p2p_port)
    listener = await WirePeer.connect(REGTEST, node.p2p_port, source=WATCHER)
    announced: asyncio.Queue[bytes] = asyncio.Queue()

    def watch(msg_type: str, body: object) -> None:
        if msg_type == "inv":
            for item in parse_inv(body):
                if item.kind == INV_TX:
                    announced.put_nowait(item.hash)

    listener.watch = watch
    seconds = []
    try:
        for raw in raws:
            txid = sha256d(raw)
            started = time.perf_counter()
            sender.writer.write(tx_frame(REGTEST, raw))
            while await asyncio.wait_for(announced.get(), WAIT) != txid:
                pass
            seconds.append(time.perf_counter() - started)
    finally:
        await sender.close()
        await listener.close()
    return seconds


async def bench_single(b: Bench) -> None:
    s = b.sizes
    n = s.single_txs
    lone = b.node("single-lone")
    # the watcher of the P2P figure learns of each transaction at once; the two peers get
    # them trickled, in batches, as any peer does (node/p2p/trickle.py)
    watched = ("--whitelist", "noban,mempool@127.0.0.0/8", "--whitelist", f"notrickle@{WATCHER}")
    line = [b.node(f"single-{i}", args=watched if i == 1 else ()) for i in range(3)]
    try:
        await lone.start()
        prof = b.profile("http_floor", lone.pid)
        floor = await _status_floor(lone, s.single_txs)
        b.profiler.detach(prof)
        alone = await _sequential_api(lone, await _fund(b, lone, b.seed + b"/single-lone", n))
        await b.stop_nodes(lone)
        middle = line[1]
        await middle.start()
        await asyncio.gather(*(n.start(peers=(middle,)) for n in (line[0], line[2])))
        raws = await _fund(b, middle, b.seed + b"/single", 2 * n)
        await wait_for(lambda: _same_height(line), WAIT, "the funded chain at both peers", 0.05)
        profs = [
            b.profile("single_api_submitter", middle.pid),
            b.profile("single_api_peer", line[0].pid),
        ]
        cpu = CpuMeter(submitter=middle.pid, peer_a=line[0].pid, peer_b=line[2].pid)
        peered = await _sequential_api(middle, raws[:n])
        await wait_for(lambda: _all_hold(line, n), WAIT, "the txs at both peers", 0.01)
        peered_cpu = cpu.stop()
        for prof in profs:
            b.profiler.detach(prof)
        p2p = await _sequential_p2p(middle, raws[n:])
        await wait_for(lambda: _all_hold(line, 2 * n), WAIT, "the txs at both peers", 0.05)
    finally:
        await b.stop_nodes(lone, *line)
    b.add(
        "http_floor_status",
        statistics.median(floor) * 1e6,
        "µs",
        note=f"median of {len(floor):,} GET /status one at a time on one keep-alive connection "
        f"to an idle node (p99 {_p(floor, 0.99) * 1e6:.0f} µs): the floor of any request",
    )
    for name, runs, target, what in (
        ("single_api_tx_rate_alone", alone, None, "POST /tx to a node without peers"),
        (
            "single_api_tx_rate_2_peers",
            peered,
            1200.0,
            f"POST /tx to a node with two peers (cores used until both peers held them: "
            f"{peered_cpu})",
        ),
        (
            "single_p2p_tx_rate_2_peers",
            p2p,
            None,
            "tx frames from one raw peer to a node with two peers, each timed until a second "
            "raw peer got its inv",
        ),
    ):
        b.add(
            name,
            len(runs) / sum(runs),
            "tx/s",
            target=target,
            target_of="value",
            op=">=",
            note=f"{what}: {len(runs):,} 1-in/2-out txs one at a time on one connection; "
            f"p50 {_p(runs, 0.5) * 1000:.2f} ms, p99 {_p(runs, 0.99) * 1000:.2f} ms",
        )


async def _same_height(nodes: list[NodeProc]) -> bool:
    return len({(await n.status())["height"] for n in nodes}) == 1


# --- connecting a big block ----------------------------------------------------------------


def _chain_block(chain: ChainState, seed: bytes, raws: list[bytes]) -> Block:
    """A block of ``raws`` on ``chain``'s tip, its coinbase to ``seed``'s key 0."""
    tip = chain.tip
    height = tip.height + 1
    coinbase = bc.coinbase_for(REGTEST, seed, height, 0)
    return bc.make_block(REGTEST, tip.hash, tip.header.timestamp + 1, coinbase, raws)


def _connect_seconds(chain: ChainState, block: Block) -> float:
    started = time.perf_counter()
    result = chain.accept_block(block)
    elapsed = time.perf_counter() - started
    if chain.tip.hash != block.hash:
        raise BenchError(f"the big block did not connect: {result.status}")
    return elapsed


async def bench_bigblock(b: Bench) -> None:
    """In this process: blocks of BIG_TXS independent 1-in/2-out spends connected by
    ``ChainState.accept_block`` (store, checks, UTXO update, undo, index, one commit),
    first with every signature verified, then a block whose txids the mempool would have
    verified (``chain.verified``, node/consensus/sigcache.py): the rest of the work."""
    seed = b.seed + b"/bigblock"
    repeats = b.sizes.bigblock_repeats
    datadir = b.workdir / "bigblock"
    chain = ChainState(datadir, REGTEST)
    try:
        fans = 2 * repeats
        for _ in range(fans + REGTEST.coinbase_maturity):
            chain.accept_block(_chain_block(chain, seed, []))
        coins: list[bc.Coin] = []
        fan_txs = []
        for height in range(1, fans + 1):
            stored = chain.reader.get_block(chain.chain[height].hash)
            if stored is None:
                raise BenchError(f"block {height} of the big-block chain is not stored")
            cb = stored.txs[0]
            tx = bc.fan_out(
                REGTEST.network_id, seed, (cb.txid, 0, cb.outputs[0].amount, 0), BIG_TXS, 10**6
            )
            fan_txs.append(tx.raw)
            coins.extend(
                (tx.txid, n, out.amount, n % bc.KEYS_PER_WORKER) for n, out in enumerate(tx.outputs)
            )
        chain.accept_block(_chain_block(chain, seed, fan_txs))
        raws = await b.sign_spends(seed, coins)
        cold, warm = [], []
        for r in range(repeats):
            part = raws[2 * r * BIG_TXS : (2 * r + 2) * BIG_TXS]
            block = _chain_block(chain, seed, part[:BIG_TXS])
            cold.append(_connect_seconds(chain, block))
            block = _chain_block(chain, seed, part[BIG_TXS:])
            chain.verified.add([tx.txid for tx in block.txs[1:]])
            warm.append(_connect_seconds(chain, block))
    finally:
        chain.close()
        shutil.rmtree(datadir, ignore_errors=True)
    how = f"in-process accept_block of {BIG_TXS:,} 1-in/2-out spends, median of {repeats}"
    b.add(
        "bigblock_connect_per_tx",
        statistics.median(cold) / BIG_TXS * 1e6,
        "µs",
        target=60.0,
        target_of="value",
        op="<=",
        note=f"{how}, every signature verified (on all cores); block "
        f"{statistics.median(cold) * 1000:.0f} ms",
    )
    b.add(
        "bigblock_connect_per_tx_known",
        statistics.median(warm) / BIG_TXS * 1e6,
        "µs",
        note=f"{how}, txids the mempool verified (signatures skipped): the rest of the "
        f"work; block {statistics.median(warm) * 1000:.0f} ms",
    )
