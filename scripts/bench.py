#!/usr/bin/env python3
"""Obol benchmarks: what a node does on this machine, beside the limit it is measured against.

    python scripts/bench.py                  # everything (make bench), under 10 minutes on 2 cores
    python scripts/bench.py --quick          # small sizes (make bench-quick; CI keeps it working)
    python scripts/bench.py --only sync,reorg --json out.json

Benchmarks (``--only`` names):

signatures   raw BIP340 verifications/s on one core and on all cores (threads): the limits
mempool      1-in/2-out transactions accepted per second over P2P (a raw peer streams ``tx``)
             and over ``POST /api/v1/tx`` (concurrent aiohttp clients) and the batch route
             ``POST /api/v1/txs``, on a real node
sync         a fresh node syncs a chain of 2,100 blocks / 100,000 transactions from a peer
empty        regtest ``POST /mine`` blocks/s, and a fresh node syncing the empty blocks
propagation  a line of 4 nodes: block found at one end until it is every node's tip
mining       node.miner.Miner on all cores against the bare sha256d midstate loop
reorg        switching to a competing branch 7, 10 and 100 blocks deep (in-process ChainState)
memory       peak RSS of an idle node, and of one holding 100,000 UTXOs and a full mempool

Every figure is printed with the limit measured in the same run and the ratio;
``--json FILE`` writes them all.  Figures are noisy on a shared machine; ratios
are taken within one run.  Results and analysis: docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from node.consensus.params import REGTEST  # noqa: E402
from scripts import bench_chain as bc  # noqa: E402
from scripts.bench_net import BenchError, NodeProc, Profiler, summarize_profile  # noqa: E402

BENCHMARKS = ("signatures", "mempool", "sync", "empty", "propagation", "mining", "reorg", "memory")
NEEDS_SIG = {"mempool", "sync", "reorg", "memory"}
NEEDS_CHAIN = {"sync", "reorg", "memory"}


@dataclass(frozen=True)
class Sizes:
    sig_seconds: float = 2.0          # each signature-limit measurement
    sig_repeats: int = 3
    sig_near_seconds: float = 1.0     # single-core limit measured again next to a rate run
    p2p_txs: int = 20_000             # per P2P run (2-3 s: 12,000 caught more of the machine's swings)
    api_txs: int = 8_000              # per API run
    mempool_repeats: int = 3
    api_concurrency: int = 32
    chain_height: int = 2_100         # blocks of the sync chain (100 before coinbases mature)
    chain_txs: int = 100_000          # its 1-in/2-out transactions
    sync_repeats: int = 3             # fresh nodes timed syncing it (the median counts)
    empty_blocks: int = 5_000
    propagation_blocks: int = 20
    miner_seconds: float = 3.0
    miner_repeats: int = 4
    reorg_depths: tuple[int, ...] = (7, 10, 100)
    reorg_repeats: int = 5            # switches timed per depth below 100 (their median counts)
    reorg_block_txs: int = 50         # transactions per block on both branches
    fill_mb: int = 0                  # memory node's --maxmempool in MB (0: the node's default)
    fill_jobs: int = 8                # independent parent/child lists, one P2P peer each
    idle_seconds: float = 5.0


QUICK = Sizes(sig_seconds=0.3, sig_repeats=1, sig_near_seconds=0.2, p2p_txs=1_000, api_txs=1_000,
              mempool_repeats=1, sync_repeats=1, chain_height=200, chain_txs=2_000,
              empty_blocks=300, propagation_blocks=5,
              miner_seconds=1.0, miner_repeats=1, reorg_repeats=1, reorg_block_txs=5, fill_mb=5,
              fill_jobs=2, idle_seconds=1.0)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    limit: float | None = None        # the limit's value, same unit as ``value`` unless noted
    limit_name: str | None = None
    target: float | None = None       # threshold on ``target_of``
    target_of: str = "ratio"          # "ratio" or "value"
    op: str = ">="
    note: str = ""

    @property
    def ratio(self) -> float | None:
        return self.value / self.limit if self.limit else None

    @property
    def holds(self) -> bool | None:
        if self.target is None:
            return None
        x = self.ratio if self.target_of == "ratio" else self.value
        if x is None or math.isnan(x):
            return False
        return x >= self.target if self.op == ">=" else x <= self.target

    @property
    def target_text(self) -> str:
        if self.target is None:
            return "-"
        what = "× limit" if self.target_of == "ratio" else self.unit
        return f"{self.op} {self.target:g} {what}"

    def to_json(self) -> dict:
        return {"value": self.value, "unit": self.unit, "limit": self.limit, "limit_name": self.limit_name,
                "ratio": self.ratio, "target": self.target, "target_of": self.target_of, "op": self.op,
                "target_text": self.target_text if self.target is not None else None,
                "holds": self.holds, "note": self.note}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = {}
    for name in ("coincurve", "cryptography", "msgpack", "lmdb", "aiohttp"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "platform": platform.platform(), "libraries": libs, "commit": commit or None,
            "load_average": os.getloadavg()}


class Bench:
    def __init__(self, sizes: Sizes, workdir: Path, profiler: Profiler) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.profiler = profiler
        self.figures: dict[str, Figure] = {}
        self.cores = os.cpu_count() or 1
        self.seed = os.urandom(16)
        self.nodes: list[NodeProc] = []
        self.session: aiohttp.ClientSession | None = None
        self._pool = None
        self.chain_info: dict | None = None
        self.sig_checks: list = []       # (pubkey, sig, msg) triples of the signature benchmark

    # --- plumbing ------------------------------------------------------------------------

    def add(self, name: str, value: float, unit: str, limit: float | None = None,
            limit_name: str | None = None, **kw) -> Figure:
        fig = Figure(name, float(value), unit, limit, limit_name if limit is not None else None, **kw)
        self.figures[name] = fig
        ratio = f" ratio {fig.ratio:.3f}" if fig.ratio is not None else ""
        log(f"  {name} = {value:,.4g} {unit}{ratio}")
        return fig

    @staticmethod
    def log(msg: str) -> None:
        log(msg)

    def limit(self, name: str) -> tuple[float | None, str | None]:
        fig = self.figures.get(name)
        return (fig.value, name) if fig else (None, None)

    @property
    def pool(self):
        if self._pool is None:
            self._pool = bc.signing_pool(self.cores)
            list(self._pool.map(bc.warm, range(self.cores)))   # start-up is not signing
        return self._pool

    async def in_pool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def node(self, name: str, **kw) -> NodeProc:
        proc = NodeProc(self.workdir, name, self.session, **kw)
        self.nodes.append(proc)
        return proc

    async def stop_nodes(self, *nodes: NodeProc) -> None:
        await asyncio.gather(*(n.stop() for n in nodes), return_exceptions=True)

    async def close(self) -> None:
        await self.stop_nodes(*self.nodes)
        for n in self.nodes:
            n.kill()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def address(self, seed: bytes, key_no: int = 0) -> str:
        from node.primitives.crypto import encode_address
        return encode_address(REGTEST.hrp, bc.addr_for(seed, key_no))

    async def sign_spends(self, seed: bytes, coins: list, chunks: int | None = None) -> list[bytes]:
        chunks = chunks or self.cores * 4
        size = max(1, -(-len(coins) // chunks))
        parts = await asyncio.gather(*(self.in_pool(bc.sign_spends, REGTEST.network_id, seed,
                                                    coins[i:i + size])
                                       for i in range(0, len(coins), size)))
        return [raw for part in parts for raw in part]

    def profile(self, name: str | None, pid: int):
        return self.profiler.attach(name, pid)

    async def run(self, selected: list[str]) -> None:
        from scripts import bench_suite as suite
        async with aiohttp.ClientSession() as self.session:
            try:
                if NEEDS_SIG & set(selected) or "signatures" in selected:
                    await suite.bench_signatures(self)   # every ratio needs this run's limit
                for name in selected:
                    if name == "signatures":
                        continue
                    started = time.perf_counter()
                    log(f"{name}: starting")
                    await getattr(suite, f"bench_{name}")(self)
                    log(f"{name}: done in {time.perf_counter() - started:.1f}s")
            finally:
                await self.close()


# --- reporting ------------------------------------------------------------------------------

def fmt(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0 or abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:,.2f}"
    return f"{x:.3g}"


def table(figures: dict[str, Figure]) -> str:
    head = ["figure", "value", "unit", "limit", "ratio", "target", "holds"]
    rows = [[f.name, fmt(f.value), f.unit,
             f"{fmt(f.limit)} ({f.limit_name})" if f.limit is not None else "-",
             fmt(f.ratio), f.target_text,
             "-" if f.holds is None else ("yes" if f.holds else "NO")] for f in figures.values()]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep] + [line(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats (CI)")
    parser.add_argument("--only", help=f"comma-separated benchmarks: {','.join(BENCHMARKS)}")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument("--profile", metavar="DIR",
                        help="record the node under test with py-spy (raw stacks) into DIR")
    parser.add_argument("--profile-mode", choices=sorted(Profiler.MODES), default="cpu",
                        help="with --profile: sample running threads (cpu, default), only the thread "
                             "holding the GIL (gil), or every thread, waiting or not (wall)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, datadirs)")
    args = parser.parse_args(argv)
    selected = list(BENCHMARKS)
    if args.only:
        selected = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in selected if s not in BENCHMARKS]
        if unknown:
            parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        selected = [b for b in BENCHMARKS if b in selected]   # dependency order
    sizes = QUICK if args.quick else Sizes()
    info = machine()
    command = " ".join(shlex.quote(a) for a in [Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:]))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log(f"obol bench ({'quick' if args.quick else 'full'}): {', '.join(selected)}")
    log(f"machine: {info['nproc']} × {info['cpu']}, Python {info['python']}, {info['libraries']}")
    workdir = Path(tempfile.mkdtemp(prefix="obol-bench-"))
    bench = Bench(sizes, workdir, Profiler(Path(args.profile) if args.profile else None, args.profile_mode))
    started = time.perf_counter()
    failed: BaseException | None = None
    try:
        asyncio.run(bench.run(selected))
    except (BenchError, AssertionError) as exc:
        failed = exc
        log(f"FAILED: {exc}")
    finally:
        if args.keep or failed is not None:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(f"\nObol benchmarks, {date}: {info['nproc']} × {info['cpu']}, Python {info['python']}, "
          f"commit {info['commit']}")
    print(f"command: {command}  ({elapsed:.0f} s)\n")
    print(table(bench.figures))
    if args.profile:
        for name, (path, seconds) in bench.profiler.files.items():
            if path.exists() and seconds > 0:
                print(f"\nprofile {name} ({path}, {seconds:.1f}s at {Profiler.RATE} Hz)")
                print("\n".join(summarize_profile(path, seconds)))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "date": date, "command": command, "mode": "quick" if args.quick else "full",
            "seconds": round(elapsed, 1), "machine": info,
            "figures": {n: f.to_json() for n, f in bench.figures.items()}}, indent=2) + "\n")
    return 1 if failed is not None else 0


if __name__ == "__main__":
    sys.exit(main())
