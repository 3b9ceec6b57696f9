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
template     block templates from a full 32 MB mempool, against the old selection
attacks      an honest node's sync and the API's latency while each attack of issue 14 runs
             against the node it syncs from, against the same without an attack
blackbox     a line of 4 nodes, from just before POST /mine at one end until all four GET
             /status report the block: empty, 2,000 txs every node holds, 2,000 only the
             miner holds
single       transactions one at a time on one connection: POST /tx alone and with two
             peers, and tx frames from one P2P peer (p50, p99, tx/s)
bigblock     in-process: a block of 2,000 transactions connected, signatures verified, and
             one whose transactions the mempool had verified (µs per transaction)
hosts        32 nodes, each in its own network namespace (obol-testnet up --hosts; root):
             memory and CPU per idle node, convergence after a kernel partition heals
linkemu      emulated WAN links between two namespaces: 80 ms +- 10 ms, 1 % loss, 10 mbit
             each way, and the RTT, loss, TCP rate, packets/s and CPU really seen (root)
wan          8 hosts (--quick: 4) on the `world` WAN profile, real proof of work at a 3 s interval:
             stale-block rate, propagation to all nodes (p50, p90), a partition with miners
             on both sides and the seconds to one tip after the heal (root)

Every figure is printed with the limit measured in the same run and the ratio;
``--json FILE`` writes them all.  Figures are noisy on a shared machine; ratios
are taken within one run.  Results and analysis: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from scripts.bench_harness import QUICK, Bench, Figure, Sizes, log  # noqa: E402
from scripts.bench_net import BenchError, Profiler, summarize_profile  # noqa: E402

BENCHMARKS = (
    "signatures",
    "mempool",
    "sync",
    "empty",
    "propagation",
    "mining",
    "reorg",
    "memory",
    "template",
    "attacks",
    "blackbox",
    "single",
    "bigblock",
    "hosts",
    "linkemu",
    "wan",
)
NEEDS_SIG = {"mempool", "sync", "reorg", "memory"}
NEEDS_CHAIN = {"sync", "reorg", "memory"}


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs: dict[str, str | None] = {}  # distribution -> version, None: not installed
    for name in ("coincurve", "cryptography", "msgpack", "lmdb", "aiohttp"):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    try:
        commit = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": libs,
        "commit": commit or None,
        "load_average": os.getloadavg(),
    }


async def run(bench: Bench, selected: list[str]) -> None:
    """Run the ``selected`` benchmarks (in dependency order) on ``bench``, then stop its nodes."""
    # imported here, not at the top: worker processes started with spawn re-run this
    # module's top level, and none of them needs the benchmarks themselves
    from scripts import bench_attacks, bench_hosts, bench_relay, bench_wan
    from scripts import bench_suite as suite

    async with aiohttp.ClientSession() as bench.session:
        try:
            if NEEDS_SIG & set(selected) or "signatures" in selected:
                await suite.bench_signatures(bench)  # every ratio needs this run's limit
            for name in selected:
                if name == "signatures":
                    continue
                started = time.perf_counter()
                log(f"{name}: starting")
                module = {
                    "attacks": bench_attacks,
                    "blackbox": bench_relay,
                    "single": bench_relay,
                    "bigblock": bench_relay,
                    "hosts": bench_hosts,
                    "linkemu": bench_wan,
                    "wan": bench_wan,
                }.get(name, suite)
                await getattr(module, f"bench_{name}")(bench)
                log(f"{name}: done in {time.perf_counter() - started:.1f}s")
        finally:
            await bench.close()


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
    rows = [
        [
            f.name,
            fmt(f.value),
            f.unit,
            f"{fmt(f.limit)} ({f.limit_name})" if f.limit is not None else "-",
            fmt(f.ratio),
            f.target_text,
            "-" if f.holds is None else ("yes" if f.holds else "NO"),
        ]
        for f in figures.values()
    ]
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(head), sep] + [line(r) for r in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, fewer repeats (CI)")
    parser.add_argument("--only", help=f"comma-separated benchmarks: {','.join(BENCHMARKS)}")
    parser.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="record the node under test with py-spy (raw stacks) into DIR",
    )
    parser.add_argument(
        "--profile-mode",
        choices=sorted(Profiler.MODES),
        default="cpu",
        help="with --profile: sample running threads (cpu, default), only the thread "
        "holding the GIL (gil), or every thread, waiting or not (wall)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directory (logs, datadirs)"
    )
    args = parser.parse_args(argv)
    selected = list(BENCHMARKS)
    if args.only:
        selected = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in selected if s not in BENCHMARKS]
        if unknown:
            parser.error(
                f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}"
            )
        selected = [b for b in BENCHMARKS if b in selected]  # dependency order
    sizes = QUICK if args.quick else Sizes()
    info = machine()
    command = " ".join(
        shlex.quote(a) for a in [Path(sys.argv[0]).as_posix()] + (argv or sys.argv[1:])
    )
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    log(f"obol bench ({'quick' if args.quick else 'full'}): {', '.join(selected)}")
    log(f"machine: {info['nproc']} × {info['cpu']}, Python {info['python']}, {info['libraries']}")
    workdir = Path(tempfile.mkdtemp(prefix="obol-bench-"))
    bench = Bench(
        sizes, workdir, Profiler(Path(args.profile) if args.profile else None, args.profile_mode)
    )
    started = time.perf_counter()
    failed: BaseException | None = None
    try:
        asyncio.run(run(bench, selected))
    except (BenchError, AssertionError) as exc:
        failed = exc
        log(f"FAILED: {exc}")
    finally:
        if args.keep or failed is not None:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    print(
        f"\nObol benchmarks, {date}: {info['nproc']} × {info['cpu']}, Python {info['python']}, "
        f"commit {info['commit']}"
    )
    print(f"command: {command}  ({elapsed:.0f} s)\n")
    print(table(bench.figures))
    if args.profile:
        for name, (path, seconds) in bench.profiler.files.items():
            if path.exists() and seconds > 0:
                print(f"\nprofile {name} ({path}, {seconds:.1f}s at {Profiler.RATE} Hz)")
                print("\n".join(summarize_profile(path, seconds)))
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "date": date,
                    "command": command,
                    "mode": "quick" if args.quick else "full",
                    "seconds": round(elapsed, 1),
                    "machine": info,
                    "figures": {n: f.to_json() for n, f in bench.figures.items()},
                },
                indent=2,
            )
            + "\n"
        )
    return 1 if failed is not None else 0


if __name__ == "__main__":
    sys.exit(main())
