"""The ``hosts`` benchmark: a network of a host per node (``obol-testnet up --hosts``).

With the real ``obol-testnet`` program it starts 32 regtest nodes (4 with
``--quick``), each in its own network namespace, and measures:

* what an idle node costs: resident memory (VmRSS of the node process) and CPU
  (utime + stime over a window, from /proc) per node, once the network is linked
  and quiet;
* how fast the network converges after a kernel partition heals: the network is
  cut in two halves, each half mines its own blocks (the second half more), then
  ``heal`` removes the rules and the clock runs until every node reports the
  same tip and UTXO-set hash (target: 10 s).

It needs root (network namespaces); without it the section says why and records
nothing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from scripts import testnet_hosts
from scripts.bench_harness import Bench
from scripts.bench_net import BenchError
from scripts.testnet_lib import Testnet
from scripts.testnet_ops import agree, tips

FULL_NODES = 32
QUICK_NODES = 4
SETTLE_SECONDS = 10.0  # after `up`: start-up work (bootstrap, address gossip) dies down
IDLE_WINDOW = 10.0  # seconds of idle CPU measured
QUICK_SECONDS = 2.0  # --quick: settle and idle window (the harness keeps working, no more)
CONVERGE_TARGET = 10.0  # seconds from `heal` to one tip and one UTXO set everywhere
CONVERGE_TIMEOUT = 60.0  # seconds before the measurement gives up
REPO = Path(__file__).resolve().parent.parent  # obol-testnet runs this tree's code
POLL = 0.1  # seconds between convergence checks
SIDE_A_BLOCKS = 3  # blocks the first half mines while cut off
SIDE_B_BLOCKS = 5  # and the second half: its chain wins after the heal


def testnet(directory: Path, *args: str, timeout: float = 300) -> str:
    cmd = [sys.executable, "-m", "scripts.testnet", "--dir", str(directory), *args]
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": path},
    )
    if proc.returncode != 0:
        raise BenchError(f"obol-testnet {' '.join(args)}: {proc.stderr.strip() or proc.stdout}")
    return proc.stdout


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def idle_cost(pids: list[int], window: float) -> tuple[float, float, float]:
    """(mean RSS in MB, mean CPU % of one core, highest CPU %) per node over ``window``."""
    before = {p: cpu_seconds(p) for p in pids}
    started = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - started
    cpu = [(cpu_seconds(p) - before[p]) / elapsed * 100 for p in pids]
    rss = [rss_mb(p) for p in pids]
    return sum(rss) / len(rss), sum(cpu) / len(cpu), max(cpu)


def converge_after_heal(directory: Path, count: int) -> float:
    """Cut the network in halves, mine on both, heal: seconds until all agree."""
    tn = Testnet(directory)
    half = count // 2
    first = ",".join(map(str, range(half)))
    second = ",".join(map(str, range(half, count)))
    testnet(directory, "partition", first, second)
    testnet(directory, "mine", str(SIDE_A_BLOCKS), "--node", "0")
    testnet(directory, "mine", str(SIDE_B_BLOCKS), "--node", str(half))
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while True:  # each half agrees within itself before the heal
        rows = tips(tn, tn.load(), utxo=False)
        if len({r.tip for r in rows if r.index < half}) == 1 and (
            len({r.tip for r in rows if r.index >= half}) == 1
        ):
            break
        if time.monotonic() > deadline:
            raise BenchError("the halves did not settle on their own tips")
        time.sleep(POLL)
    started = time.monotonic()
    testnet(directory, "heal")
    while not agree(tips(tn, tn.load())):
        if time.monotonic() - started > CONVERGE_TIMEOUT:
            raise BenchError(f"{count} nodes did not converge within {CONVERGE_TIMEOUT:g}s")
        time.sleep(POLL)
    return time.monotonic() - started


def measure(b: Bench, directory: Path, count: int, settle: float, window: float) -> None:
    started = time.monotonic()
    testnet(directory, "up", "--hosts", "--nodes", str(count), "--network", "regtest",
            "--topology", "random", "--seed", "1")  # fmt: skip
    b.add("hosts_up", time.monotonic() - started, "s",
          note=f"obol-testnet up --hosts, {count} nodes: namespaces, nodes, links, "
          "120 blocks mined")  # fmt: skip
    time.sleep(settle)
    pids = [n.pid for n in Testnet(directory).load().nodes if n.pid]
    rss, cpu, worst = idle_cost(pids, window)
    b.add("hosts_idle_rss_per_node", rss, "MB", note=f"mean VmRSS of {count} idle nodes")
    b.add(
        "hosts_idle_cpu_per_node",
        cpu,
        "% of a core",
        note=f"mean over {window:g} s, {count} idle nodes; the busiest {worst:.2f} %",
    )
    seconds = converge_after_heal(directory, count)
    b.add(
        "hosts_converge_after_heal",
        seconds,
        "s",
        target=CONVERGE_TARGET,
        target_of="value",
        op="<=",
        note=f"halves of {count} hosts, {SIDE_A_BLOCKS} vs {SIDE_B_BLOCKS} blocks, kernel cut",
    )


async def bench_hosts(b: Bench) -> None:
    reason = testnet_hosts.missing_requirements()
    if reason is not None:
        b.log(f"hosts: skipped: {reason}")
        return
    quick = b.sizes.idle_seconds < 2  # the QUICK sizes
    count = QUICK_NODES if quick else FULL_NODES
    settle, window = (QUICK_SECONDS, QUICK_SECONDS) if quick else (SETTLE_SECONDS, IDLE_WINDOW)
    directory = b.workdir / "hosts"
    try:
        await asyncio.to_thread(measure, b, directory, count, settle, window)
    finally:
        await asyncio.to_thread(testnet, directory, "down", "--clean")
        shutil.rmtree(directory, ignore_errors=True)
