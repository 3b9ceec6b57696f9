"""The benchmarks of ``scripts/bench.py``: one coroutine ``bench_<name>(b)`` each.

``b`` is the run's ``Bench`` (sizes, work directory, figures, signing pool,
node processes).  Everything that is timed runs after its set-up is done:
transactions are signed and frames encoded before the clock starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import functools
import gc
import hashlib
import io
import json
import math
import pstats
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp

from node.chain.chainstate import ChainState
from node.consensus.params import REGTEST
from node.mining.miner import NONCE_START, Miner
from node.p2p.ports import BLOCK_STAGES
from node.primitives.block import Block, BlockHeader
from scripts import bench_chain as bc
from scripts.bench_harness import Bench, ChainInfo
from scripts.bench_net import BenchError, CpuMeter, NodeProc, WirePeer, tx_frame, wait_for

SIG_1 = "signature_verify_1core"
SIG_ALL = "signature_verify_all_cores"
FAN_OUT = 2_000  # outputs of one funding transaction (~64 KB)
FAN_FEE = 1_000_000  # its fee (~15 base units per byte)
ACCEPT_BATCH = 128  # blocks per accept_blocks call when building (the node's MAX_BLOCK_BATCH)
# Seconds between /status polls while P2P txs go in: FAR until 90 % are in, then NEAR.
# Each poll costs the node's event loop ~0.5 ms; the figure may be one near poll (10 ms) late.
P2P_POLL_FAR = 0.1
P2P_POLL_NEAR = 0.01
API_BATCH = 500  # transactions per POST /txs in the batch-route figure
API_BATCH_CLIENTS = 2  # POST /txs requests in flight at once
FILL_WINDOW = 5_000  # mempool fill: transactions sent but not yet in the mempool
FILL_TX_USAGE = 600  # bytes: mempool usage per fill tx, on the low side (~690 measured)
FILL_TO = 0.99  # the mempool counts as full at this share of its cap

# One timed run of a rate figure: (tx/s, cores used as CpuMeter.stop() lists them,
# single-core signature limit measured next to it in verify/s).
RateRun = tuple[float, str, float]


def _p90(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, math.ceil(0.9 * len(xs)) - 1)]


# --- 1. the signature limit -------------------------------------------------------------------


def _verify_for(checks: list, seconds: float, start: threading.Barrier | None = None) -> float:
    from coincurve import PublicKeyXOnly

    if start is not None:
        start.wait(10)
    n = 0
    began = time.perf_counter()
    deadline = began + seconds
    while True:
        for pubkey, sig, msg in checks:
            if not PublicKeyXOnly(pubkey).verify(sig, msg):
                raise BenchError("a valid signature did not verify")
        n += len(checks)
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - began)


def _verify_threads(checks: list, seconds: float, threads: int) -> float:
    barrier = threading.Barrier(threads)
    rates = [0.0] * threads

    def run(i: int) -> None:
        rates[i] = _verify_for(checks, seconds, barrier)

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(seconds + 60)
    return sum(rates)


async def bench_signatures(b: Bench) -> None:
    from node.primitives.crypto import SigningKey

    keys = [SigningKey.generate() for _ in range(64)]
    checks = []
    for i in range(512):
        key, msg = keys[i % len(keys)], hashlib.sha256(i.to_bytes(4, "big")).digest()
        checks.append((key.pubkey, key.sign(msg), msg))
    b.sig_checks = checks
    one, every = [], []
    await asyncio.to_thread(_verify_threads, checks, 0.2, b.cores)  # warm up: clocks, caches
    for _ in range(b.sizes.sig_repeats):
        one.append(await asyncio.to_thread(_verify_for, checks, b.sizes.sig_seconds))
        every.append(await asyncio.to_thread(_verify_threads, checks, b.sizes.sig_seconds, b.cores))
    b.add(
        SIG_1,
        statistics.median(one),
        "verify/s",
        note="coincurve PublicKeyXOnly(key).verify, key parsing included; median of runs",
    )
    b.add(
        SIG_ALL,
        statistics.median(every),
        "verify/s",
        *b.limit(SIG_1),
        note=f"{b.cores} threads (coincurve releases the GIL); ratio = scaling",
    )


async def sig_rate_near(b: Bench) -> float:
    """The single-core verification rate measured now, next to a rate run (the mean of one
    just before and one just after it is its limit): the machine's speed drifts within a
    run (docs/benchmarks.md), so a ratio to a limit measured minutes earlier can be off
    either way."""
    return await asyncio.to_thread(_verify_for, b.sig_checks, b.sizes.sig_near_seconds)


NEAR = SIG_1 + " next to the run"  # the limit_name of ratios to ``sig_rate_near``


def add_rate_figure(
    b: Bench, name: str, runs: list[RateRun], target: float | None, note: str
) -> float:
    """A tx/s figure from (rate, cores used, limit measured next to it) per run: the run
    with the median ratio is reported (its rate returned), every run listed in the note."""
    ordered = sorted(runs, key=lambda run: run[0] / run[2])
    rate, cores, limit = ordered[len(ordered) // 2]
    listed = ", ".join(f"{r:.0f}/{lim:.0f} = {r / lim:.3f}" for r, _, lim in runs)  # in run order
    b.add(
        name,
        rate,
        "tx/s",
        limit,
        NEAR,
        target=target,
        note=f"{note}; runs (tx/s / mean limit just before and after = ratio): {listed}; the "
        f"median one reported, "
        f"cores used in it: {cores}",
    )
    return rate


# --- 2. mempool acceptance --------------------------------------------------------------------


async def fan_out_coins(node: NodeProc, seed: bytes, heights: range, count: int) -> list[bc.Coin]:
    """``count`` coins: the coinbases of ``heights`` (paying ``seed``'s key 0, mature) each
    split by a transaction of up to FAN_OUT outputs, sent to ``node`` (not yet mined)."""
    coins: list[bc.Coin] = []
    for height in heights:
        txid = bytes.fromhex((await node.get(f"blocks/{height}"))["txids"][0])
        parts = min(FAN_OUT, count - len(coins))
        tx = bc.fan_out(
            REGTEST.network_id, seed, (txid, 0, REGTEST.subsidy(height), 0), parts, FAN_FEE
        )
        await node.post("tx", {"hex": tx.raw.hex()})
        coins.extend(
            (tx.txid, n, out.amount, n % bc.KEYS_PER_WORKER) for n, out in enumerate(tx.outputs)
        )
    return coins


async def _clear_mempool(node: NodeProc, address: str) -> None:
    for _ in range(50):
        if (await node.status())["mempool"]["count"] == 0:
            return
        await node.mine(1, address)
    raise BenchError(f"{node.name}: the mempool did not empty in 50 blocks")


async def _mempool_count(node: NodeProc) -> int:
    return (await node.status())["mempool"]["count"]


async def _p2p_run(
    b: Bench, node: NodeProc, raws: list[bytes], profile_as: str | None
) -> tuple[float, str]:
    frames = [tx_frame(REGTEST, raw) for raw in raws]
    before = await _mempool_count(node)
    peer = await WirePeer.connect(REGTEST, node.p2p_port)
    prof = b.profile(profile_as, node.pid) if profile_as else None
    try:
        cpu = CpuMeter(node=node.pid)
        started = time.perf_counter()
        await peer.send_frames(frames)

        deadline = time.monotonic() + 60 + len(raws) / 100
        while (count := await _mempool_count(node) - before) < len(raws):
            if peer.closed:
                raise BenchError("the node dropped the P2P test peer")
            if time.monotonic() > deadline:
                raise BenchError(
                    f"timed out waiting for P2P transactions ({count} of {len(raws)} in)"
                )
            await asyncio.sleep(P2P_POLL_NEAR if count >= 0.9 * len(raws) else P2P_POLL_FAR)
        elapsed = time.perf_counter() - started
        cores = cpu.stop()
    finally:
        b.profiler.detach(prof)
        await peer.close()
    return len(raws) / elapsed, cores


async def _timed_clients(
    b: Bench, node: NodeProc, profile_as: str | None, client, count: int
) -> tuple[float, str]:
    """Run ``count`` copies of ``client()`` at once: (seconds, cores the node used)."""
    prof = b.profile(profile_as, node.pid) if profile_as else None
    try:
        cpu = CpuMeter(node=node.pid)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(count)))
        return time.perf_counter() - started, cpu.stop()
    finally:
        b.profiler.detach(prof)


async def _post_all(
    b: Bench,
    node: NodeProc,
    route: str,
    bodies: list[bytes],
    clients: int,
    refusals: Callable[[int, bytes], list[str]],
    count: int,
    profile_as: str | None,
) -> tuple[float, str]:
    """POST ``bodies`` to ``route`` from ``clients`` concurrent clients; the timed rate of
    ``count`` transactions.  ``refusals(status, body)`` names what a response refused; any
    refusal, or a mempool short of ``count`` afterwards, fails the run."""
    url = node.url + route
    refused: list[str] = []
    before = await _mempool_count(node)
    todo = iter(bodies)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:

        async def client() -> None:
            for body in todo:
                async with session.post(
                    url,
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=aiohttp.ClientTimeout(total=300),
                ) as resp:
                    refused.extend(refusals(resp.status, await resp.read()))

        elapsed, cores = await _timed_clients(b, node, profile_as, client, clients)
    if refused:
        raise BenchError(f"POST /{route} refused {len(refused)} transactions, e.g. {refused[0]}")
    if await _mempool_count(node) < before + count:
        raise BenchError(f"POST /{route} answered 200 but the mempool is short")
    return count / elapsed, cores


def _single_refusals(status: int, body: bytes) -> list[str]:
    return [] if status == 200 else [f"{status} {body[:200]!r}"]


def _batch_refusals(status: int, body: bytes) -> list[str]:
    if status != 200:
        return [f"{status} {body[:200]!r}"]
    return [r["error"]["code"] for r in json.loads(body)["results"] if "error" in r]


async def _api_run(
    b: Bench, node: NodeProc, raws: list[bytes], profile_as: str | None
) -> tuple[float, str]:
    """``raws`` as one POST /tx each, from api_concurrency clients at a time."""
    bodies = [json.dumps({"hex": raw.hex()}).encode() for raw in raws]
    return await _post_all(
        b, node, "tx", bodies, b.sizes.api_concurrency, _single_refusals, len(raws), profile_as
    )


async def _api_batch_run(
    b: Bench, node: NodeProc, raws: list[bytes], profile_as: str | None
) -> tuple[float, str]:
    """``raws`` as POST /txs of API_BATCH transactions, API_BATCH_CLIENTS requests at a time."""
    bodies = [
        json.dumps({"txs": [raw.hex() for raw in raws[i : i + API_BATCH]]}).encode()
        for i in range(0, len(raws), API_BATCH)
    ]
    return await _post_all(
        b, node, "txs", bodies, API_BATCH_CLIENTS, _batch_refusals, len(raws), profile_as
    )


async def bench_mempool(b: Bench) -> None:
    s = b.sizes
    seed = b.seed + b"/mempool"
    address = b.address(seed)
    total = s.mempool_repeats * (s.p2p_txs + 2 * s.api_txs)
    coinbases = -(-total // FAN_OUT)
    node = await b.node("mempool").start()
    await node.mine(coinbases + REGTEST.coinbase_maturity, address)
    coins = await fan_out_coins(node, seed, range(1, coinbases + 1), total)
    await _clear_mempool(node, address)
    raws = await b.sign_spends(seed, coins)
    p2p: list[RateRun] = []
    api: list[RateRun] = []
    api_batch: list[RateRun] = []
    trims_before = (await node.metrics()).get("obol_lmdb_map_trims_total", 0)
    before = await sig_rate_near(b)
    for r in range(s.mempool_repeats):
        for runs, run, count, profile_as in (
            (p2p, _p2p_run, s.p2p_txs, "mempool_p2p"),
            (api, _api_run, s.api_txs, "mempool_api"),
            (api_batch, _api_batch_run, s.api_txs, "mempool_api_batch"),
        ):
            batch, raws = raws[:count], raws[count:]
            result = await run(b, node, batch, profile_as if r == 0 else None)
            await _clear_mempool(node, address)
            after = await sig_rate_near(b)  # also the next run's "before"
            runs.append((*result, (before + after) / 2))
            before = after
    trims = (await node.metrics()).get("obol_lmdb_map_trims_total", 0) - trims_before
    await b.stop_nodes(node)
    for name, runs, count, target, how in (
        ("mempool_accept_p2p", p2p, s.p2p_txs, 0.4, "streamed by one raw P2P peer"),
        (
            "mempool_accept_api_batch",
            api_batch,
            s.api_txs,
            0.2,
            f"sent as POST /txs of {API_BATCH} by {API_BATCH_CLIENTS} concurrent aiohttp clients "
            f"(the batch route the issue allows where one request per tx is the limit)",
        ),
        (
            "mempool_accept_api",
            api,
            s.api_txs,
            None,
            f"sent as POST /tx by {s.api_concurrency} concurrent aiohttp clients (one process); "
            f"no target: one request per tx, see mempool_accept_api_batch",
        ),
    ):
        add_rate_figure(
            b,
            name,
            runs,
            target,
            f"{count:,} 1-in/2-out txs {how}, until /status counts them; LMDB map "
            f"trims over all mempool runs: {trims:.0f}",
        )


# --- 3. initial sync --------------------------------------------------------------------------


def _accept(chain: ChainState, blocks: list[Block]) -> float:
    """Accept ``blocks`` and then, as the node does once it has relayed a change, merge
    ``txrecent`` if due; returns the seconds of both."""
    started = time.perf_counter()
    result = chain.accept_blocks(blocks)
    chain.merge_recent_txindex()
    elapsed = time.perf_counter() - started
    for outcome in result.outcomes:
        if isinstance(outcome, Exception):
            raise BenchError(f"the benchmark built an invalid block: {outcome!r}")
    return elapsed


def _build_chain(
    plan: bc.ChainPlan, forests: list[dict[int, list[bytes]]], datadir: Path, base_time: int
) -> tuple[float, int]:
    chain = ChainState(datadir, REGTEST)
    try:
        seconds, batch = 0.0, []
        for block in plan.blocks(forests, base_time):
            batch.append(block)
            if len(batch) == ACCEPT_BATCH:
                seconds += _accept(chain, batch)
                batch = []
        if batch:
            seconds += _accept(chain, batch)
        if chain.height != plan.height:
            raise BenchError(f"built chain stops at {chain.height}, not {plan.height}")
        return seconds, chain.utxo_stats.count
    finally:
        chain.close()


async def ensure_chain(b: Bench) -> ChainInfo:
    """The sync chain (built once per run): a regtest datadir ``chain-source``."""
    if b.chain_info is not None:
        return b.chain_info
    s = b.sizes
    seed = b.seed + b"/chain"
    plan = bc.ChainPlan(REGTEST, seed, s.chain_height, s.chain_txs, b.cores)
    started = time.perf_counter()
    results = await asyncio.gather(*(b.in_pool(bc.build_forest, *job) for job in plan.jobs()))
    signed = time.perf_counter() - started
    datadir = b.workdir / "chain-source"
    base_time = max(REGTEST.genesis_timestamp, int(time.time()) - s.chain_height - 120)
    seconds, utxos = await asyncio.to_thread(
        _build_chain, plan, [r[0] for r in results], datadir, base_time
    )
    b.log(
        f"  chain: {s.chain_txs:,} txs signed in {signed:.1f}s, {s.chain_height} blocks "
        f"accepted in-process in {seconds:.1f}s, {utxos:,} UTXOs"
    )
    b.add(
        "validate_in_process",
        s.chain_txs / seconds,
        "tx/s",
        *b.limit(SIG_ALL),
        note="ChainState.accept_blocks of the sync chain, batches of 128 blocks, no network",
    )
    b.chain_info = {
        "datadir": datadir,
        "seed": seed,
        "height": s.chain_height,
        "txs": s.chain_txs,
        "utxos": utxos,
        "leftovers": [r[1] for r in results],
    }
    return b.chain_info


async def _timed_sync(
    b: Bench, src: NodeProc, dst: NodeProc, height: int, profile_as: str | None
) -> tuple[float, str]:
    profs = [
        b.profile(profile_as, dst.pid),
        b.profile(profile_as and profile_as + "_source", src.pid),
    ]
    try:
        cpu = CpuMeter(syncing=dst.pid, source=src.pid)
        started = time.perf_counter()
        await dst.post("peers", {"connect": src.p2p})
        finished = await dst.wait_height(height, 900, interval=0.02)
        cores = cpu.stop()
    finally:
        for prof in profs:
            b.profiler.detach(prof)
    src_set, dst_set = await asyncio.gather(src.get("utxoset"), dst.get("utxoset"))
    if src_set["hash"] != dst_set["hash"]:
        raise BenchError(f"{dst.name} synced to another UTXO set than {src.name}")
    return finished - started, cores


async def bench_sync(b: Bench) -> None:
    """``sync_repeats`` fresh nodes sync the chain from one source, one after the other; the
    limit is measured between the syncs (each sync's is the mean of the two beside it)."""
    info = await ensure_chain(b)
    src = b.node("chain-source")
    await src.start()
    runs: list[RateRun] = []
    times: list[float] = []
    mems: list[dict[str, float]] = []
    before = await sig_rate_near(b)
    for r in range(b.sizes.sync_repeats):
        dst = b.node("sync-dest" if r == 0 else f"sync-dest-{r}")
        await dst.start()
        seconds, cores = await _timed_sync(b, src, dst, info["height"], "sync" if r == 0 else None)
        mems.append(dst.memory_mb())
        await b.stop_nodes(dst)
        after = await sig_rate_near(b)
        runs.append((info["txs"] / seconds, cores, (before + after) / 2))
        times.append(seconds)
        before = after
    await b.stop_nodes(src)
    peak = max(mems, key=lambda mem: mem["VmHWM"])  # the first of equal peaks
    size = (
        f"{info['height']:,} blocks, {info['txs']:,} txs in "
        + ", ".join(f"{t:.1f}" for t in times)
        + " s"
    )
    tx_rate = add_rate_figure(b, "sync_tx_per_s", runs, 0.5, size)
    b.add(
        "sync_blocks_per_s",
        info["height"] * tx_rate / info["txs"],
        "blocks/s",
        note=f"{size}; the sync sync_tx_per_s reports",
    )
    b.add("sync_tx_per_s_vs_all_cores", tx_rate, "tx/s", *b.limit(SIG_ALL), note="the same sync")
    b.add(
        "sync_peak_rss",
        peak["VmHWM"],
        "MB",
        note=f"highest VmHWM of the syncing nodes; after its sync: "
        f"RssAnon {peak['RssAnon']:.0f} MB (heap), "
        f"RssFile {peak['RssFile']:.0f} MB (mostly LMDB's map)",
    )


async def bench_empty(b: Bench) -> None:
    n = b.sizes.empty_blocks
    src, dst = b.node("empty-source"), b.node("empty-dest")
    await asyncio.gather(src.start(), dst.start())
    address = b.address(b.seed + b"/empty")
    started = time.perf_counter()
    mined = 0
    while mined < n:
        mined += len((await src.mine(min(10_000, n - mined), address))["hashes"])
    mine_rate = n / (time.perf_counter() - started)
    b.add(
        "regtest_mine_api",
        mine_rate,
        "blocks/s",
        target=1000,
        target_of="value",
        note=f"POST /mine {n} blocks",
    )
    seconds, cores = await _timed_sync(b, src, dst, n, "sync_empty")
    await b.stop_nodes(src, dst)
    b.add(
        "sync_empty_blocks_per_s",
        n / seconds,
        "blocks/s",
        target=1000,
        target_of="value",
        note=f"{n:,} empty blocks; cores used: {cores}",
    )
    await _mine_latency(b, address)


MINE_PEERS = 3  # peers of the node timed mining with peers
MINE_PAUSE = 0.02  # seconds between two timed POST /mine requests


async def _mine_latency(b: Bench, address: str) -> None:
    """``POST /mine`` of one block, request to answer: alone, then with MINE_PEERS peers
    (each block relayed to them, which validate it meanwhile on the same cores)."""
    node = b.node("mine-latency")
    await node.start()
    start = REGTEST.coinbase_maturity + 1  # blocks mined before the timed ones
    await node.mine(start, address)
    n = b.sizes.mine_requests
    body = {"blocks": 1, "address": address}
    lone = await node.timed_posts("mine", body, n, MINE_PAUSE)
    peers = [b.node(f"mine-peer-{i}") for i in range(MINE_PEERS)]
    await asyncio.gather(*(p.start(peers=(node,)) for p in peers))
    height = start + n

    async def joined() -> bool:
        if (await node.status())["peers"] != MINE_PEERS:
            return False
        statuses = await asyncio.gather(*(p.status() for p in peers))
        return all(s["height"] == height for s in statuses)

    await wait_for(joined, 60, f"{MINE_PEERS} peers synced to the mining node", 0.05)
    prof = b.profile("mine_latency_peers", node.pid)
    try:
        relayed = await node.timed_posts("mine", body, n, MINE_PAUSE)
    finally:
        b.profiler.detach(prof)
    await asyncio.gather(*(p.wait_height(height + n, 30) for p in peers))
    await b.stop_nodes(node, *peers)
    how = (
        f"median of {n} sequential requests {MINE_PAUSE * 1000:.0f} ms apart, one keep-alive "
        "connection, request to full answer"
    )
    b.add(
        "mine_one_block_latency",
        statistics.median(lone) * 1000,
        "ms",
        target=2.0,
        target_of="value",
        op="<=",
        note=f"idle regtest node, no peers; {how}; p90 {_p90(lone) * 1000:.2f} ms",
    )
    b.add(
        "mine_one_block_latency_3_peers",
        statistics.median(relayed) * 1000,
        "ms",
        note=f"{MINE_PEERS} peers validating each block on the same cores; {how}; "
        f"p90 {_p90(relayed) * 1000:.2f} ms",
    )


# --- 4. propagation ---------------------------------------------------------------------------


async def bench_propagation(b: Bench) -> None:
    nodes = [b.node(f"line-{i}") for i in range(4)]
    await asyncio.gather(
        *(n.start(peers=(nodes[i - 1],) if i else ()) for i, n in enumerate(nodes))
    )

    async def line_up() -> bool:
        peers = [(await n.status())["peers"] for n in nodes]
        return peers == [1, 2, 2, 1]

    await wait_for(line_up, 60, "a line of 4 connected nodes", 0.1)
    address = b.address(b.seed + b"/line")
    await nodes[0].mine(1, address)
    await asyncio.gather(*(n.wait_height(1, 30) for n in nodes))
    seen: dict[str, list[float | None]] = {}
    sockets = [await b.client.ws_connect(n.url + "events?types=tip") for n in nodes]

    async def listen(i: int, ws) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            if event.get("type") == "tip":
                seen.setdefault(event["hash"], [None] * 4)[i] = time.perf_counter()

    readers = [
        asyncio.get_running_loop().create_task(listen(i, ws)) for i, ws in enumerate(sockets)
    ]
    prof = b.profile("propagation_relay", nodes[1].pid)
    totals: list[float] = []  # seconds from the first node's tip event to the last's
    hops: list[list[float]] = [[], [], []]  # seconds from each node's tip event to the next's
    before = [await n.metrics() for n in nodes[1:]]

    async def everywhere(block: str) -> bool:
        return all(t is not None for t in seen.get(block, [None]))

    try:
        for _ in range(b.sizes.propagation_blocks):
            block = (await nodes[0].mine(1, address))["hashes"][0]
            arrived = functools.partial(everywhere, block)
            await wait_for(arrived, 30, f"block {block[:16]} at every node", 0.001)
            t = [at for at in seen[block] if at is not None]  # all 4: everywhere() held
            totals.append(t[3] - t[0])
            for i in range(3):
                hops[i].append(t[i + 1] - t[i])
            await asyncio.sleep(0.05)
        after = [await n.metrics() for n in nodes[1:]]
    finally:
        b.profiler.detach(prof)
        for ws in sockets:
            await ws.close()
        for r in readers:
            r.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        await b.stop_nodes(*nodes)
    n = len(totals)
    b.add(
        "propagation_4_nodes_median",
        statistics.median(totals) * 1000,
        "ms",
        note=f"{n} blocks, 3 hops: tip event at the first node to tip event at the last",
    )
    b.add("propagation_4_nodes_p90", _p90(totals) * 1000, "ms")
    # Per hop = end to end / 3.  Nodes relay a block before validating it (powblock), so
    # neighbours validate at once and the gap between two nodes' tip events says little
    # about a hop: hop 1 carries the validation the later nodes overlap.
    b.add(
        "propagation_per_hop_median",
        statistics.median(totals) / 3 * 1000,
        "ms",
        target=2.0,
        target_of="value",
        op="<=",
        note="median end-to-end time over the 3 hops, divided by 3; the pooled median of the "
        f"per-hop gaps is {statistics.median(h for hs in hops for h in hs) * 1000:.2f} ms",
    )
    for i, hs in enumerate(hops):
        b.add(
            f"propagation_hop{i + 1}_median",
            statistics.median(hs) * 1000,
            "ms",
            note="tip event at this node minus at the previous one "
            "(may be <= 0: validations overlap)",
        )
    key = "obol_block_validation_seconds_{}"
    relays = list(zip(after, before, strict=True))  # each relaying node's metrics: after, before
    seconds = sum(a[key.format("sum")] - o[key.format("sum")] for a, o in relays)
    count = sum(a[key.format("count")] - o[key.format("count")] for a, o in relays)
    if not count:
        raise BenchError("the relaying nodes validated no block")
    b.add(
        "propagation_validation_mean",
        seconds / count * 1000,
        "ms",
        note="mean time a relaying node spent in accept_blocks per block "
        "(obol_block_validation_seconds of nodes 2-4): the rest of a hop is transport and handoffs",
    )
    for stage in BLOCK_STAGES:  # where a hop's time goes, stage by stage
        key = f'obol_block_stage_seconds_{{}}{{{{stage="{stage}"}}}}'
        seconds = sum(a[key.format("sum")] - o[key.format("sum")] for a, o in relays)
        count = sum(a[key.format("count")] - o[key.format("count")] for a, o in relays)
        if not count:
            raise BenchError(f"the relaying nodes timed no block in stage {stage}")
        b.add(
            f"propagation_stage_{stage}_mean",
            seconds / count * 1000,
            "ms",
            note=f"mean of obol_block_stage_seconds{{stage={stage!r}}} over nodes 2-4, per block",
        )


# --- 5. mining --------------------------------------------------------------------------------


async def _bare_rate(b: Bench, prefix: bytes, target: int, seconds: float) -> float:
    runs = await asyncio.gather(
        *(b.in_pool(bc.bare_sha256d_loop, prefix, target, seconds) for _ in range(b.cores))
    )
    return sum(r[0] for r in runs) / (max(r[2] for r in runs) - min(r[1] for r in runs))


async def _miner_rate(b: Bench, block: Block, seconds: float) -> float:
    async def template() -> Block:
        return block

    async def submit(_: Block) -> None:
        raise BenchError("the miner met target 1")

    miner = Miner(template, submit, b.cores)
    miner.start()
    samples: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + seconds + 60
        while not samples or samples[-1][0] - samples[0][0] < seconds:
            if miner.hashes != (samples[-1][1] if samples else 0):
                samples.append((time.perf_counter(), miner.hashes))
            if time.monotonic() > deadline:
                raise BenchError("the miner reported no hashes")
            await asyncio.sleep(0.01)
    finally:
        await miner.stop()
    (t0, h0), (t1, h1) = samples[0], samples[-1]
    return (h1 - h0) / (t1 - t0)


async def bench_mining(b: Bench) -> None:
    from node.primitives.tx import TxOut, make_coinbase

    coinbase = make_coinbase(1, [TxOut(REGTEST.subsidy(1), bytes(20))], b"bench")
    header = BlockHeader.create(
        1, bytes(32), coinbase.txid, int(time.time()), 0x03000001, NONCE_START
    )
    block = Block.create(header, [coinbase])  # target 1: never met
    prefix, target = header.raw[:-8], 1
    bare, node = [], []
    for _ in range(b.sizes.miner_repeats):  # interleaved: the machine's load drifts
        bare.append(await _bare_rate(b, prefix, target, b.sizes.miner_seconds))
        node.append(await _miner_rate(b, block, b.sizes.miner_seconds))
    pairs = ", ".join(f"{n / r:.2f}" for n, r in zip(node, bare, strict=True))
    b.add(
        "bare_midstate_loop",
        statistics.median(bare),
        "H/s",
        note=f"{b.cores} processes, midstate .copy() loop, first start to last end; "
        f"median of {len(bare)} runs of {b.sizes.miner_seconds:g}s",
    )
    b.add(
        "node_miner",
        statistics.median(node),
        "H/s",
        *b.limit("bare_midstate_loop"),
        target=0.9,
        note=f"node.mining.miner.Miner, {b.cores} processes, whole rounds after start-up; "
        f"run-by-run ratios {pairs}",
    )


# --- 6. reorg ---------------------------------------------------------------------------------


def _reorg_runs(depths: tuple[int, ...], repeats: int) -> list[int]:
    """The depth of every timed switch: ``repeats`` of each depth below 100, one of 100+
    (one 100-deep switch spends ~10,000 coins and takes half a second)."""
    return [d for d in depths for _ in range(repeats if d < 100 else 1)]


@contextlib.contextmanager
def _cprofiled(outdir: Path | None, name: str) -> Iterator[None]:
    """cProfile the block into ``outdir/<name>.cprofile.txt`` (the 30 functions with the most
    cumulative time); without ``--profile`` (no ``outdir``) it runs unprofiled.  A reorg
    switch runs in this process, out of reach of the py-spy recordings of nodes."""
    if outdir is None:
        yield
        return
    profile = cProfile.Profile()
    profile.enable()
    yield
    profile.disable()
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(30)
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / f"{name}.cprofile.txt").write_text(text.getvalue())


def _reorgs(
    b: Bench, datadir: Path, seed: bytes, raws: list[bytes], runs: list[int], per_block: int
) -> list[tuple[int, float, int, int]]:
    """Time one switch per entry of ``runs`` (its depth), each from the tip the last left:
    a branch ``depth`` blocks long is connected, an equal-work rival stored, and the
    rival's next block times the switch."""
    chain = ChainState(datadir, REGTEST)
    out = []
    # The harness holds millions of objects (the sync chain's signed transactions): frozen,
    # the cyclic GC does not walk them during a timed switch, as it would never have to in
    # a node. The node code's own objects are collected as usual.
    gc.collect()
    gc.freeze()
    try:
        for run, depth in enumerate(runs):
            fork = chain.tip
            branches = []
            for name, length in ((b"A", depth), (b"B", depth + 1)):
                prev, blocks = fork.hash, []
                for i in range(length):
                    mine, raws = raws[:per_block], raws[per_block:]
                    height = fork.height + i + 1
                    tag = b"reorg-" + name + str(depth).encode() + b"-" + str(run).encode()
                    cb = bc.coinbase_for(REGTEST, seed, height, 0, tag)
                    blocks.append(
                        bc.make_block(REGTEST, prev, fork.header.timestamp + i + 1, cb, mine)
                    )
                    prev = blocks[-1].hash
                branches.append(blocks)
            ours, theirs = branches
            _accept(chain, ours)
            _accept(chain, theirs[:-1])  # as much work as ours: stored, no switch
            if chain.tip.hash != ours[-1].hash:
                raise BenchError("the equal-work branch took over")
            with _cprofiled(b.profiler.outdir, f"reorg_{depth}_{run}"):
                started = time.perf_counter()
                result = chain.accept_blocks([theirs[-1]])
                elapsed = time.perf_counter() - started
            if chain.tip.hash != theirs[-1].hash or len(result.disconnected) != depth:
                raise BenchError(f"reorg {depth}: the node did not switch branches")
            chain.merge_recent_txindex()  # the node's next step, after relaying the switch
            out.append((depth, elapsed, (depth + 1) * per_block, depth * per_block))
    finally:
        gc.unfreeze()
        chain.close()
    return out


async def bench_reorg(b: Bench) -> None:
    info = await ensure_chain(b)
    s = b.sizes
    datadir = b.workdir / "reorg-chain"
    shutil.copytree(
        info["datadir"],
        datadir,
        ignore=shutil.ignore_patterns("lock.mdb", "node.lock", "api.token"),
    )
    runs = _reorg_runs(s.reorg_depths, s.reorg_repeats)
    need = sum((2 * d + 1) * s.reorg_block_txs for d in runs)
    coins = bc.spendable(info["leftovers"], info["height"] + 1)
    if len(coins) < need:
        raise BenchError(f"reorg needs {need} coins, the chain left {len(coins)}")
    raws = await b.sign_spends(info["seed"], coins[-need:])
    results = await asyncio.to_thread(
        _reorgs, b, datadir, info["seed"], raws, runs, s.reorg_block_txs
    )
    sig_all = b.limit(SIG_ALL)[0]
    for depth in s.reorg_depths:
        times = [seconds * 1000 for d, seconds, _, _ in results if d == depth]
        connected_txs, disconnected_txs = (depth + 1) * s.reorg_block_txs, depth * s.reorg_block_txs
        floor = connected_txs / sig_all * 1000 if sig_all else None
        spread = (
            f"median of {len(times)} switches: " + ", ".join(f"{t:.1f}" for t in times) + " ms; "
            if len(times) > 1
            else ""
        )
        b.add(
            f"reorg_{depth}_deep",
            statistics.median(times),
            "ms",
            floor,
            "signature floor (all cores)",
            target=50.0 if depth == 7 else None,
            target_of="value",
            op="<=",
            note=f"{spread}disconnect {depth} blocks ({disconnected_txs} txs), connect {depth + 1} "
            f"({connected_txs} txs); in-process ChainState.accept_blocks",
        )


# --- 7. memory --------------------------------------------------------------------------------


async def bench_memory(b: Bench) -> None:
    s = b.sizes
    idle = await b.node("idle").start()
    await asyncio.sleep(s.idle_seconds)
    mem = idle.memory_mb()
    await b.stop_nodes(idle)
    b.add(
        "rss_idle_node",
        mem["VmHWM"],
        "MB",
        target=80.0,
        target_of="value",
        op="<=",
        note=f"VmHWM of a fresh regtest node {s.idle_seconds:g}s after start "
        f"(now RssAnon {mem['RssAnon']:.1f} MB, RssFile {mem['RssFile']:.1f} MB)",
    )

    info = await ensure_chain(b)
    coins = bc.spendable(info["leftovers"], info["height"] + 1)
    node = b.node("chain-source", args=("--maxmempool", str(s.fill_mb)) if s.fill_mb else ())
    await node.start()  # a node on the sync chain's datadir
    max_usage = (await node.get("mempool"))["max_usage"]
    # enough transactions to fill the cap at a conservative FILL_TX_USAGE bytes each
    per_job = -(-max_usage // FILL_TX_USAGE // s.fill_jobs)
    jobs = [coins[j :: s.fill_jobs] for j in range(s.fill_jobs)]
    lists = await asyncio.gather(
        *(
            b.in_pool(bc.sign_chained, REGTEST.network_id, info["seed"], job, per_job, 10**12)
            for job in jobs
        )
    )
    raws = [raw for txs, _ in lists for raw in txs]  # each list: parents before children
    frames = [tx_frame(REGTEST, raw) for raw in raws]
    utxos = (await node.get("utxoset"))["count"]
    peer = await WirePeer.connect(REGTEST, node.p2p_port)
    sent, base = 0, (await node.status())["mempool"]["count"]
    full = int(max_usage * FILL_TO)
    started = time.perf_counter()
    deadline = time.monotonic() + 900
    try:
        while True:  # send while the pool is short of full, never far ahead of what it took in
            pool = (await node.status())["mempool"]
            if pool["usage"] >= full or sent == len(frames):
                break
            if peer.closed:
                raise BenchError("the node dropped the P2P peer filling its mempool")
            per_tx = pool["usage"] // pool["count"] if pool["count"] > 100 else FILL_TX_USAGE
            room = (full - pool["usage"]) // per_tx  # transactions still fitting
            if sent - (pool["count"] - base) < min(FILL_WINDOW, room):
                batch = max(1, min(1000, room // 2))
                await peer.send_frames(frames[sent : sent + batch])
                sent = min(len(frames), sent + batch)
            else:
                await asyncio.sleep(0.02)
            if time.monotonic() > deadline:
                raise BenchError("filling the mempool took over 15 minutes")
        if sent == len(frames) and pool["usage"] < full:
            raise BenchError(
                f"{len(frames):,} transactions did not fill the mempool "
                f"({pool['usage']:,} of {max_usage:,} bytes)"
            )

        async def settled() -> bool:  # everything sent has been taken in (or evicted)
            first = (await node.status())["mempool"]
            await asyncio.sleep(0.25)
            return (await node.status())["mempool"] == first

        await wait_for(settled, 300, "the mempool fill", 0.05)
        fill_rate = sent / (time.perf_counter() - started)
        await asyncio.sleep(1.0)
        status = await node.status()
        mem = node.memory_mb()
    finally:
        await peer.close()
        await b.stop_nodes(node)
    pool = status["mempool"]
    b.add(
        "rss_node_mempool_and_utxos",
        mem["VmHWM"],
        "MB",
        target=125.0,
        target_of="value",
        op="<=",
        note=f"VmHWM of a node restarted on the sync chain ({utxos:,} UTXOs) after its mempool "
        f"took {pool['count']:,} txs ({pool['bytes'] / 1e6:.1f} MB encoded), "
        f"{pool['usage'] / 1e6:.1f} MB of its {max_usage / 1e6:.0f} MB --maxmempool",
    )
    b.add(
        "memory_node_rss_anon",
        mem["RssAnon"],
        "MB",
        note="of which heap (RssAnon) at the end; "
        f"RssFile {mem['RssFile']:.0f} MB (LMDB map, code)",
    )
    b.add("memory_node_utxos", utxos, "UTXOs")
    b.add("memory_node_mempool_txs", pool["count"], "txs")
    b.add(
        "memory_node_mempool_usage_mb",
        pool["usage"] / 1e6,
        "MB",
        max_usage / 1e6,
        "--maxmempool (MB)",
        note=f"estimated memory use; {pool['bytes']:,} bytes of encodings, "
        f"{pool['usage'] / max(1, pool['count']):.0f} bytes of usage per tx",
    )
    b.add(
        "mempool_fill_tx_per_s",
        fill_rate,
        "tx/s",
        *b.limit(SIG_1),
        note=f"one P2P peer, at most {FILL_WINDOW} txs outstanding, parents before children",
    )


# --- 9. block templates ------------------------------------------------------------------------


async def bench_template(b: Bench) -> None:
    """Block templates from a full mempool (scripts/bench_mempool.py), in a thread of this
    process: the selection by ancestor fee rate against the old by-own-fee-rate order."""
    from scripts import bench_mempool

    workdir = b.workdir / "template"
    workdir.mkdir()
    f = await asyncio.to_thread(
        bench_mempool.measure, workdir, b.sizes.template_mb * 1_000_000, b.sizes.template_repeats
    )
    note = f"{f.txs:,} transactions, {f.usage_mb:.1f} MB; median of {b.sizes.template_repeats}"
    b.add("template_ms", f.template_ms, "ms", note=f"create_block_template; {note}")
    b.add("template_select_ms", f.select_ms, "ms", note=f"Mempool.select_for_block; {note}")
    b.add("template_packages_ms", f.packages_ms, "ms", note="the choice alone, nothing decoded")
    b.add(
        "template_old_select_ms",
        f.old_select_ms,
        "ms",
        f.select_ms,
        "template_select_ms",
        note="the selection before package limits (by own fee rate, ancestors first)",
    )
    b.add("template_fees_vs_old", f.fees / max(f.old_fees, 1), "ratio", note="fees collected")
