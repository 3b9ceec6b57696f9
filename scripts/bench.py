"""``make bench``: measure the node against this machine's limits, in one run.

Each figure is a real workload through the real code paths (real obol-node
processes where the figure is about the node) and is printed beside the
limit it is measured against, with the ratio and the target from the issue.

    python scripts/bench.py [--quick] [--only NAME[,NAME]] [--json FILE]

``--quick`` runs every benchmark at a small size (CI keeps the code working
with it); figures from a quick run say little.  Benchmarks print figures;
tests never time anything.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from node.crypto import SigningKey, encode_address, sha256, verify_schnorr  # noqa: E402
from node.params import REGTEST  # noqa: E402
from scripts.bench_work import (ChainBuilder, bare_hash_rate, miner_hash_rate,  # noqa: E402
                                reorg_seconds)
from scripts.testnet_lib import Api, free_port, program  # noqa: E402

CPUS = os.cpu_count() or 1


@dataclass
class Figure:
    value: float             # what was measured
    unit: str                # its unit
    limit: float | None      # what it is measured against (same run), if anything
    target: str              # the target, as text
    holds: bool | None       # whether the target holds (None: no target)

    @property
    def ratio(self) -> float | None:
        return self.value / self.limit if self.limit else None


@dataclass
class Bench:
    quick: bool
    workdir: Path
    figures: dict[str, Figure] = field(default_factory=dict)
    sig_1core: float = 0.0
    sig_all: float = 0.0

    def add(self, name: str, value: float, unit: str, limit: float | None = None,
            target: str = "", holds: bool | None = None) -> None:
        self.figures[name] = Figure(value, unit, limit, target, holds)
        f = self.figures[name]
        ratio = f"{f.ratio:8.2f}" if f.ratio is not None else "       -"
        mark = {True: "yes", False: "NO", None: ""}[holds]
        print(f"  {name:34s} {value:14,.1f} {unit:9s} ratio {ratio}  {target:28s} {mark}", flush=True)


# --- a node process ------------------------------------------------------------------------

class NodeProcess:
    """One obol-node on regtest with free loopback ports."""

    def __init__(self, datadir: Path, peers: list[int] = ()) -> None:
        self.datadir = datadir
        self.p2p_port, self.api_port = free_port("127.0.0.1"), free_port("127.0.0.1")
        args = ["--network", "regtest", "--datadir", str(datadir), "--log-level", "WARNING",
                "--listen", f"127.0.0.1:{self.p2p_port}", "--api", f"127.0.0.1:{self.api_port}"]
        for port in peers:
            args += ["--peer", f"127.0.0.1:{port}", "--no-discover"]
        datadir.mkdir(parents=True, exist_ok=True)
        (datadir / "api.token").unlink(missing_ok=True)
        self.log = open(datadir.parent / f"{datadir.name}.log", "ab")
        self.proc = subprocess.Popen(program("obol-node", "node.daemon") + args, stdout=self.log,
                                     stderr=self.log, stdin=subprocess.DEVNULL)
        self.api = Api(self.api_port, datadir, timeout=120)
        wait(lambda: (datadir / "api.token").exists() and self.status() is not None, 60, "node start")

    def status(self) -> dict | None:
        try:
            return self.api.get("status", timeout=5)
        except Exception:
            return None

    def height(self) -> int:
        return self.api.get("status")["height"]

    def rss_peak_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def wait(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- 1. signatures ------------------------------------------------------------------------

def _verify_all(checks: list) -> None:
    for pubkey, sig, msg in checks:
        verify_schnorr(pubkey, sig, msg)


def bench_signatures(b: Bench) -> None:
    n = 2_000 if b.quick else 20_000
    key = SigningKey.generate()
    checks = [(key.pubkey, key.sign(sha256(i.to_bytes(4, "big"))), sha256(i.to_bytes(4, "big")))
              for i in range(n)]
    started = time.perf_counter()
    _verify_all(checks)
    b.sig_1core = n / (time.perf_counter() - started)
    b.add("signature_verify_1core", b.sig_1core, "sig/s", target="the ceiling")
    chunk = -(-n // CPUS)
    with ThreadPoolExecutor(CPUS) as pool:
        started = time.perf_counter()
        list(pool.map(_verify_all, [checks[i:i + chunk] for i in range(0, n, chunk)]))
        b.sig_all = n / (time.perf_counter() - started)
    b.add("signature_verify_all_cores", b.sig_all, "sig/s", b.sig_1core,
          target=f"{CPUS} cores, {CPUS} threads")


# --- 2. mempool acceptance ------------------------------------------------------------------

def bench_mempool(b: Bench) -> None:
    n = 1_000 if b.quick else 6_000
    builder = ChainBuilder(b.workdir / "mempool-src")
    coins = builder.fan_out(2 * n)          # 2n mature, independent coins
    api_txs = builder.spends(coins[:n])
    p2p_txs = builder.spends(coins[n:])
    builder.close()
    node = NodeProcess(builder.path)
    try:
        started = time.perf_counter()
        asyncio.run(_post_all(node.api_port, [t.raw.hex() for t in api_txs], 32))
        wait(lambda: node.api.get("status")["mempool"]["count"] >= n, 120, "API txs in the mempool")
        rate = n / (time.perf_counter() - started)
        b.add("mempool_accept_api", rate, "tx/s", b.sig_1core, "≥ 0.2 × 1-core sig limit",
              rate >= 0.2 * b.sig_1core)
        started = time.perf_counter()
        asyncio.run(_stream_p2p(node.p2p_port, [t.to_list() for t in p2p_txs]))
        wait(lambda: node.api.get("status")["mempool"]["count"] >= 2 * n, 120, "P2P txs in the mempool")
        rate = n / (time.perf_counter() - started)
        b.add("mempool_accept_p2p", rate, "tx/s", b.sig_1core, "≥ 0.4 × 1-core sig limit",
              rate >= 0.4 * b.sig_1core)
        b.add("rss_node_mempool_and_utxos", node.rss_peak_mb(), "MB",
              target=f"{2 * n} mempool txs, {2 * n}+ UTXOs")
    finally:
        node.stop()


async def _post_all(port: int, hexes: list[str], concurrency: int) -> None:
    import aiohttp
    queue = list(reversed(hexes))
    async with aiohttp.ClientSession() as session:
        async def worker() -> None:
            while queue:
                body = {"hex": queue.pop()}
                async with session.post(f"http://127.0.0.1:{port}/api/v1/tx", json=body) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"POST /tx: {resp.status} {await resp.text()}")
        await asyncio.gather(*(worker() for _ in range(concurrency)))


async def _stream_p2p(port: int, bodies: list) -> None:
    from network.frames import encode_frame
    from node import encoding
    from node.params import REGTEST as params
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    send = lambda t, body: writer.write(encode_frame(params.magic, encoding.encode([t, body])))  # noqa: E731
    send("version", [1, params.magic, params.genesis_hash, 0, 0,
                     int.from_bytes(os.urandom(8), "big"), "/bench:0/", int(time.time())])
    send("verack", [])
    await writer.drain()
    await asyncio.sleep(0.2)   # the node's version/verack; we need nothing of it
    for body in bodies:
        send("tx", body)
    await writer.drain()
    await asyncio.sleep(0.5)   # let the node read everything before we hang up
    reader.feed_eof()
    writer.close()


# --- 3. initial sync -----------------------------------------------------------------------

def bench_sync(b: Bench) -> None:
    blocks, txs = (200, 2_000) if b.quick else (2_000, 100_000)
    builder = ChainBuilder(b.workdir / "sync-src")
    coins = builder.fan_out(txs)
    builder.mine_spends(coins, blocks)
    height, total_txs = builder.chain.height, builder.tx_count()
    builder.close()
    _timed_sync(b, builder.path, height, total_txs, "sync")

    empty = 500 if b.quick else 5_000
    src = NodeProcess(b.workdir / "empty-src")
    try:
        addr = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)
        started = time.perf_counter()
        for _ in range(empty // 500):
            src.api.post("mine", {"blocks": 500, "address": addr})
        rate = empty / (time.perf_counter() - started)
        b.add("regtest_mine_api", rate, "blocks/s", target="≥ 1,000 blocks/s", holds=rate >= 1000)
    finally:
        src.stop()
    _timed_sync(b, src.datadir, empty, empty, "sync_empty")


def _timed_sync(b: Bench, source_dir: Path, height: int, total_txs: int, name: str) -> None:
    src = NodeProcess(source_dir)
    dst = None
    try:
        started = time.perf_counter()
        dst = NodeProcess(b.workdir / f"{name}-dst", peers=[src.p2p_port])
        wait(lambda: dst.height() >= height, 1200, f"{name}: the new node to sync", 0.05)
        elapsed = time.perf_counter() - started
        b.add(f"{name}_blocks_per_s", height / elapsed, "blocks/s",
              target="≥ 1,000 empty blocks/s" if name == "sync_empty" else "",
              holds=(height / elapsed >= 1000) if name == "sync_empty" else None)
        if name == "sync":
            rate = total_txs / elapsed
            b.add("sync_tx_per_s", rate, "tx/s", b.sig_all, "≥ 0.5 × 1-core sig limit",
                  rate >= 0.5 * b.sig_1core)
            b.add("sync_peak_rss", dst.rss_peak_mb(), "MB", target=f"{height} blocks, {total_txs} txs")
    finally:
        src.stop()
        if dst is not None:
            dst.stop()


# --- 4. propagation ------------------------------------------------------------------------

def bench_propagation(b: Bench) -> None:
    rounds = 5 if b.quick else 20
    nodes: list[NodeProcess] = []
    try:
        for i in range(4):
            nodes.append(NodeProcess(b.workdir / f"prop-{i}", peers=[nodes[-1].p2p_port] if nodes else []))
        wait(lambda: all(len(n.api.get("peers")) == (1 if k in (0, 3) else 2)
                         for k, n in enumerate(nodes)), 30, "a line of 4")
        totals, hops = asyncio.run(_propagate(nodes, rounds))
    finally:
        for n in nodes:
            n.stop()
    med = statistics.median(totals) * 1000
    p90 = sorted(totals)[int(0.9 * (len(totals) - 1))] * 1000
    hop = statistics.median(hops) * 1000
    b.add("propagation_4_nodes_median", med, "ms", target=f"{rounds} blocks, 3 hops")
    b.add("propagation_4_nodes_p90", p90, "ms")
    b.add("propagation_per_hop_median", hop, "ms", target="≤ 2 ms per hop", holds=hop <= 2.0)


async def _propagate(nodes: list[NodeProcess], rounds: int) -> tuple[list[float], list[float]]:
    import aiohttp
    addr = encode_address(REGTEST.hrp, SigningKey.generate().address_hash)
    token = nodes[0].api.token()
    totals, hops = [], []
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"http://127.0.0.1:{n.api_port}/api/v1/events?types=tip")
                   for n in nodes]
        for ws in sockets:
            await ws.receive_json()    # hello
        for _ in range(rounds):
            started = time.perf_counter()
            async with session.post(f"http://127.0.0.1:{nodes[0].api_port}/api/v1/mine",
                                    json={"blocks": 1, "address": addr},
                                    headers={"Authorization": f"Bearer {token}"}) as resp:
                block = (await resp.json())["hashes"][0]
            arrival = []
            for ws in sockets:
                while True:
                    event = await asyncio.wait_for(ws.receive_json(), 30)
                    if event.get("hash") == block:
                        arrival.append(time.perf_counter())
                        break
            totals.append(arrival[3] - arrival[0])
            hops.extend(arrival[i + 1] - arrival[i] for i in range(3))
            del started
        for ws in sockets:
            await ws.close()
    return totals, hops


# --- 5. mining, 6. reorg, 7. idle memory ------------------------------------------------------

def bench_mining(b: Bench) -> None:
    seconds = 2.0 if b.quick else 8.0
    bare = bare_hash_rate(CPUS, seconds)
    b.add("bare_midstate_loop", bare, "H/s", target=f"{CPUS} processes")
    miner = miner_hash_rate(CPUS, seconds)
    b.add("node_miner", miner, "H/s", bare, "≥ 0.9 × bare loop", miner >= 0.9 * bare)


def bench_reorg(b: Bench) -> None:
    for depth in ((7, 10) if b.quick else (7, 10, 100)):
        ms = reorg_seconds(b.workdir / f"reorg-{depth}", depth, txs_per_block=20) * 1000
        b.add(f"reorg_{depth}_deep", ms, "ms", target="≤ 50 ms" if depth == 7 else "",
              holds=(ms <= 50) if depth == 7 else None)


def bench_idle_memory(b: Bench) -> None:
    node = NodeProcess(b.workdir / "idle")
    try:
        time.sleep(1.0 if b.quick else 3.0)
        rss = node.rss_peak_mb()
    finally:
        node.stop()
    b.add("rss_idle_node", rss, "MB", target="≤ 80 MB", holds=rss <= 80)


BENCHMARKS: dict[str, Callable[[Bench], None]] = {
    "signatures": bench_signatures, "mempool": bench_mempool, "sync": bench_sync,
    "propagation": bench_propagation, "mining": bench_mining, "reorg": bench_reorg,
    "memory": bench_idle_memory,
}


def machine() -> dict[str, str]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import coincurve
    import lmdb
    import msgpack
    return {"cpus": str(CPUS), "cpu": model, "python": platform.python_version(),
            "coincurve": getattr(coincurve, "__version__", "?"), "lmdb": lmdb.__version__,
            "msgpack": ".".join(map(str, msgpack.version)),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.py", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (CI)")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    if "signatures" not in names:
        names.insert(0, "signatures")   # every ratio needs the limit of this run
    info = machine()
    print(f"obol bench on {info['cpus']} × {info['cpu']}, Python {info['python']}, {info['date']}"
          f"{' (quick)' if args.quick else ''}")
    print(f"  {'figure':34s} {'value':>14s} {'unit':9s} {'ratio':>14s}  {'target':28s} holds")
    with tempfile.TemporaryDirectory(prefix="obol-bench-") as tmp:
        b = Bench(args.quick, Path(tmp))
        for name in names:
            print(f"[{name}]", flush=True)
            BENCHMARKS[name](b)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "quick": args.quick, "figures": {
            name: {"value": f.value, "unit": f.unit, "limit": f.limit, "ratio": f.ratio,
                   "target": f.target, "holds": f.holds}
            for name, f in b.figures.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    multiprocessing.set_start_method("spawn")
    sys.exit(main())
