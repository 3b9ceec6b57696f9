"""The ``linkemu`` and ``wan`` benchmarks: emulated WAN links, and a proof-of-work network on them.

linkemu  two namespaces made for the purpose, both directions 80 ms +- 10 ms, 1 % loss,
         10 mbit (scripts/link_measure.py): the RTT, one-way loss and TCP throughput
         really seen, and the packets/s the emulator sustains with its CPU share
wan      ``obol-testnet up --hosts --wan world``: 8 hosts (``--quick``: 4), half of them
         mining, real proof of work on a chain spec with a 3 s block interval; while
         connected, the stale-block rate
         and how long a block takes to reach every node (p50, p90); then a partition
         with miners on both sides (both sides go on confirming: availability), a heal,
         and the seconds until every node is on one tip again (convergence)

Both need root, iptables and NetfilterQueue (make link-deps); without them they log
why and add no figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from scripts import link_measure as lm
from scripts import testnet_hosts
from scripts.bench_harness import Bench
from scripts.bench_net import BenchError
from scripts.linkrules import LinkSpec, missing_tools

REPO = Path(__file__).resolve().parent.parent
WAN_LINK = LinkSpec(delay=0.080, jitter=0.010, loss=0.01, rate=10e6)  # the accuracy figures
WAN_SEED = 1  # the world profile's draws
BLOCK_INTERVAL = 3.0  # seconds: the bench chain's ASERT target
# the bench chain's genesis target: ~2^21 hashes a block (2 s at the ~1 MH/s four 1-thread
# miners reach on 2 shared cores); ASERT with a 60 s half-life corrects the rest
GENESIS_BITS = "1e080000"
POW_LIMIT_BITS = "1f00ffff"
HALF_LIFE = 60  # seconds
CONVERGE_TIMEOUT = 120.0  # seconds after the heal for one tip everywhere
PHASE_TIMEOUT = 300.0  # seconds a phase may take beyond its length to see its blocks
POLL = 0.1  # seconds between status polls while waiting for convergence
PHASE_POLL = 0.5  # seconds between checks of a phase's end


@dataclass(frozen=True)
class WanSizes:
    """The ``wan`` network and how long each phase runs."""

    nodes: int  # hosts
    miners: int  # nodes 0..miners-1 mine (one process each)
    groups: tuple[str, str]  # the partition, miners on both sides
    connected: float  # seconds at least, measured while every link is up: stale rate, ...
    min_blocks: int  # ... and until this many blocks were found
    partitioned: float  # seconds at least both sides mine alone (and each found a block)
    warmup: int  # blocks mined before anything is measured (difficulty settles)
    flood: float  # seconds of the linkemu flood
    pings: int  # the linkemu RTT sample
    datagrams: int  # the linkemu loss sample
    transfer: int  # bytes of the linkemu TCP transfer


WAN_FULL = WanSizes(
    nodes=8,
    miners=4,
    groups=("0,1,4,5", "2,3,6,7"),
    connected=90.0,
    min_blocks=20,
    partitioned=30.0,
    warmup=5,
    flood=3.0,
    pings=200,
    datagrams=5000,
    transfer=4_000_000,
)
WAN_QUICK = WanSizes(  # CI keeps it working: 4 hosts, a few blocks
    nodes=4,
    miners=2,
    groups=("0,2", "1,3"),
    connected=8.0,
    min_blocks=3,
    partitioned=4.0,
    warmup=2,
    flood=1.0,
    pings=30,
    datagrams=2000,
    transfer=1_000_000,
)


def sizes_of(b: Bench) -> WanSizes:
    return WAN_QUICK if b.sizes.p2p_txs < 10_000 else WAN_FULL  # QUICK has 1,000


def skipped(b: Bench, name: str) -> bool:
    why = missing_tools() or testnet_hosts.missing_requirements()
    if why is not None:
        b.log(f"{name}: skipped: {why}")
        return True
    return False


# --- linkemu ---------------------------------------------------------------------------------


async def bench_linkemu(b: Bench) -> None:
    if skipped(b, "linkemu"):
        return
    await asyncio.to_thread(measure_links, b, sizes_of(b))


def measure_links(b: Bench, size: WanSizes) -> None:
    with lm.netns_pair(b.workdir / "linkemu") as pair:
        pair.set(WAN_LINK)
        rtts = lm.ping_rtts(pair.a, pair.ip_b, count=size.pings, interval=0.02)
        s = lm.summary(rtts)
        note = "configured 2 x 80 ms +- 10 ms (one draw per direction)"
        b.add("linkemu_rtt_mean", s["mean"], "ms", target=155, target_of="value", note=note)
        b.add("linkemu_rtt_p10", s["p10"], "ms", note=note)
        b.add("linkemu_rtt_p90", s["p90"], "ms", note=note)
        lost = lm.udp_loss(pair, count=size.datagrams, interval=0.0002)
        b.add("linkemu_loss", lost * 100, "%", note=f"1 % asked, {size.datagrams} UDP datagrams")
        pair.set(LinkSpec(delay=0.080, jitter=0.010, rate=10e6))
        bits = lm.tcp_throughput(pair, size.transfer)
        b.add("linkemu_tcp_rate", bits / 1e6, "mbit/s", note=f"10 mbit, 80 ms: {size.transfer} B")
        pair.set(LinkSpec(delay=0.001))
        flood = lm.udp_flood(pair, size.flood)
        b.add("linkemu_flood_sent", flood.sent_pps, "packets/s", note="one UDP sender, 64 B")
        b.add(
            "linkemu_flood_through",
            flood.received_pps,
            "packets/s",
            limit=flood.sent_pps,
            limit_name="linkemu_flood_sent",
            note="what crossed a 1 ms link",
        )
        b.add("linkemu_flood_cpu", flood.cpu_share * 100, "% of a core", note="the emulator")
        status = pair.links.status() or {}
        b.add("linkemu_rss", status.get("max_rss_kib", 0) / 1024, "MiB", note="the emulator")


# --- wan -------------------------------------------------------------------------------------


@dataclass
class Seen:
    """When each node connected each block (tip events), and what the events said."""

    at: dict[str, dict[int, float]] = field(default_factory=dict)  # block -> node -> time
    height: dict[str, int] = field(default_factory=dict)  # block -> height (from tip events)

    def note(self, node: int, event: dict[str, Any], now: float) -> None:
        connected = event.get("connected") or [event["hash"]]
        top = event["height"]
        for depth, block in enumerate(reversed(connected)):
            self.at.setdefault(block, {}).setdefault(node, now)
            self.height.setdefault(block, top - depth)


def testnet(directory: Path, *args: str, timeout: float = 300) -> str:
    path = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path))
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.testnet", "--dir", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise BenchError(f"obol-testnet {' '.join(args)}: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def make_chain(path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "node.daemon", "chain", "new", "wanbench", "--out", str(path)]
        + ["--bits", GENESIS_BITS, "--pow-limit-bits", POW_LIMIT_BITS]
        + ["--block-interval", f"{BLOCK_INTERVAL:g}", "--asert-half-life", str(HALF_LIFE)]
        + ["--coinbase-maturity", "1", "--force"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    if proc.returncode != 0:
        raise BenchError(f"obol-node chain new: {proc.stderr.strip()}")


async def bench_wan(b: Bench) -> None:
    if skipped(b, "wan"):
        return
    size = sizes_of(b)
    net = b.workdir / "wan"
    spec = b.workdir / "wanbench.toml"
    await asyncio.to_thread(make_chain, spec)
    up = (
        ["up", "--hosts", "--nodes", str(size.nodes), "--miners", str(size.miners)]
        + ["--chain", str(spec), "--topology", "random", "--wan", "world"]
        + ["--seed", str(WAN_SEED)]
    )
    try:
        await asyncio.to_thread(testnet, net, *up)
        await measure_wan(b, net, size)
    finally:
        await asyncio.to_thread(testnet, net, "down")


async def measure_wan(b: Bench, net: Path, size: WanSizes) -> None:
    state = json.loads((net / "testnet.json").read_text())
    urls = [f"http://{n['ip']}:{n['api_port']}/api/v1/" for n in state["nodes"]]
    seen = Seen()
    sockets = [await b.client.ws_connect(u + "events?types=tip") for u in urls]

    async def listen(i: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            event = json.loads(msg.data)
            if event.get("type") == "tip":
                seen.note(i, event, time.monotonic())

    loop = asyncio.get_running_loop()
    readers = [loop.create_task(listen(i, ws)) for i, ws in enumerate(sockets)]
    try:
        await wait_blocks(b, urls, size.warmup)
        start_height = await height_of(b, urls[0])
        t0 = time.monotonic()

        async def connected_done() -> bool:
            found = sum(min(at.values()) >= t0 for at in seen.at.values())
            return time.monotonic() - t0 >= size.connected and found >= size.min_blocks

        await phase(connected_done, size.connected, "blocks while connected")
        t1 = time.monotonic()
        await asyncio.to_thread(testnet, net, "partition", *size.groups)
        t2 = time.monotonic()
        sides = [int(g.split(",")[0]) for g in size.groups]
        cut_at = [await height_of(b, urls[i]) for i in sides]

        async def partition_done() -> bool:
            heights = [await height_of(b, urls[i]) for i in sides]
            both = all(h > c for h, c in zip(heights, cut_at, strict=True))
            return time.monotonic() - t2 >= size.partitioned and both

        await phase(partition_done, size.partitioned, "a block on each side of the cut")
        t3 = time.monotonic()  # from the heal command's start: its ~0.5 s are counted
        await asyncio.to_thread(testnet, net, "heal")
        await wait_one_tip(b, urls, CONVERGE_TIMEOUT)
        t4 = time.monotonic()
    finally:
        for ws in sockets:
            await ws.close()
        for task in readers:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    main = set(await main_chain(b, urls[0], start_height))
    report(b, seen, main, (t0, t1, t2, t3, t4), len(urls))


def report(b: Bench, seen: Seen, main: set[str], times: tuple[float, ...], n: int) -> None:
    t0, t1, t2, t3, t4 = times
    found = {h: min(at.values()) for h, at in seen.at.items()}  # first node: the miner
    window = [h for h, t in found.items() if t0 <= t < t1]
    if not window:
        raise BenchError("wan: no block was found while connected")
    stale = [h for h in window if h not in main]
    everywhere = [
        max(seen.at[h].values()) - found[h] for h in window if h in main and len(seen.at[h]) == n
    ]
    seconds = t1 - t0
    b.add(
        "wan_blocks_connected",
        len(window) / seconds * BLOCK_INTERVAL,
        "blocks / interval",
        note=f"{len(window)} blocks found in {seconds:.0f} s (target 1 per {BLOCK_INTERVAL:g} s)",
    )
    b.add(
        "wan_stale_rate",
        len(stale) / len(window) * 100,
        "%",
        note=f"{len(stale)} of {len(window)} blocks found while connected are not in the "
        "final chain",
    )
    if everywhere:
        ranked = sorted(everywhere)
        p90 = ranked[math.ceil(0.9 * len(ranked)) - 1]  # nearest rank: a time measured
        b.add("wan_propagation_all_p50", statistics.median(ranked), "s", note=f"to all {n}")
        b.add("wan_propagation_all_p90", p90, "s", note=f"{len(ranked)} main-chain blocks")
    during = [h for h, t in found.items() if t2 <= t < t3]
    lost = [h for h in during if h not in main]
    b.add(
        "wan_partition_blocks",
        len(during),
        "blocks",
        note=f"found on both sides in {t3 - t2:.0f} s of partition; {len(lost)} of them "
        "rolled back at the heal",
    )
    b.add("wan_partition_rolled_back", len(lost), "blocks", note="the lighter side's")
    b.add(
        "wan_converge_after_heal",
        t4 - t3,
        "s",
        note=f"from `obol-testnet heal` (its own run included) until all {n} report one tip",
    )


async def phase(done: Any, length: float, what: str) -> None:
    """Let the network run until ``done()`` (the phase's length and its blocks)."""
    deadline = time.monotonic() + length + PHASE_TIMEOUT
    while not await done():
        if time.monotonic() > deadline:
            raise BenchError(f"wan: no {what} in {length + PHASE_TIMEOUT:g} s")
        await asyncio.sleep(PHASE_POLL)


async def get_json(b: Bench, url: str) -> Any:
    async with b.client.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
        return await resp.json()


async def height_of(b: Bench, url: str) -> int:
    return int((await get_json(b, url + "status"))["height"])


async def wait_blocks(b: Bench, urls: list[str], blocks: int) -> None:
    target = await height_of(b, urls[0]) + blocks
    deadline = time.monotonic() + blocks * BLOCK_INTERVAL * 20
    while min([await height_of(b, u) for u in urls]) < target:
        if time.monotonic() > deadline:
            raise BenchError(f"wan: fewer than {blocks} blocks mined in time")
        await asyncio.sleep(0.5)


async def wait_one_tip(b: Bench, urls: list[str], timeout: float) -> float:
    """Seconds until every node reports the same tip."""
    start = time.monotonic()
    while True:
        tips = {(await get_json(b, u + "status"))["tip"] for u in urls}
        elapsed = time.monotonic() - start
        if len(tips) == 1:
            return elapsed
        if elapsed > timeout:
            raise BenchError(f"wan: {len(tips)} tips {timeout:g} s after the heal")
        await asyncio.sleep(POLL)


async def main_chain(b: Bench, url: str, start: int) -> list[str]:
    hashes: list[str] = []
    while True:
        page = await get_json(b, url + f"blocks?start={start + len(hashes)}&count=500")
        hashes += [h["hash"] for h in page["headers"]]
        if not page["headers"] or start + len(hashes) > page["height"]:
            return hashes
