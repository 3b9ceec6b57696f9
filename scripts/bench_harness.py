"""The harness every benchmark of ``scripts/bench.py`` runs in: sizes, figures, and the Bench.

``bench.py`` (the program) creates one :class:`Bench` per run and hands it to each
``bench_<name>(b)`` of ``bench_suite.py``; both import it from here, so neither imports
the other.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import aiohttp

from node.consensus.params import REGTEST
from scripts import bench_chain as bc
from scripts.bench_net import BenchError, NodeProc, Profiler


@dataclass(frozen=True)
class Sizes:
    sig_seconds: float = 2.0  # each signature-limit measurement
    sig_repeats: int = 3
    sig_near_seconds: float = 1.0  # single-core limit measured again next to a rate run
    p2p_txs: int = 20_000  # per P2P run (2-3 s: 12,000 caught more of the machine's swings)
    api_txs: int = 8_000  # per API run
    mempool_repeats: int = 3
    api_concurrency: int = 32
    chain_height: int = 2_100  # blocks of the sync chain (100 before coinbases mature)
    chain_txs: int = 100_000  # its 1-in/2-out transactions
    sync_repeats: int = 3  # fresh nodes timed syncing it (the median counts)
    empty_blocks: int = 5_000
    propagation_blocks: int = 20
    mine_requests: int = 200  # sequential POST /mine of one block timed, alone and with peers
    miner_seconds: float = 3.0
    miner_repeats: int = 4
    reorg_depths: tuple[int, ...] = (7, 10, 100)
    reorg_repeats: int = 5  # switches timed per depth below 100 (their median counts)
    reorg_block_txs: int = 50  # transactions per block on both branches
    fill_mb: int = 0  # memory node's --maxmempool in MB (0: the node's default)
    fill_jobs: int = 8  # independent parent/child lists, one P2P peer each
    idle_seconds: float = 5.0
    template_mb: int = 32  # mempool filled for the template benchmark (the default --maxmempool)
    template_repeats: int = 5  # templates timed (their median counts)
    blackbox_runs: int = 20  # empty blocks timed down the black-box line (the median counts)
    blackbox_big_runs: int = 5  # 2,000-transaction blocks timed, known and unknown, each
    single_txs: int = 2_000  # transactions sent one at a time, per single-path figure
    bigblock_repeats: int = 3  # pairs of 2,000-transaction blocks connected (the median counts)


QUICK = Sizes(
    sig_seconds=0.3,
    sig_repeats=1,
    sig_near_seconds=0.2,
    p2p_txs=1_000,
    api_txs=1_000,
    mempool_repeats=1,
    sync_repeats=1,
    chain_height=200,
    chain_txs=2_000,
    empty_blocks=300,
    propagation_blocks=5,
    mine_requests=20,
    miner_seconds=1.0,
    miner_repeats=1,
    reorg_repeats=1,
    reorg_block_txs=5,
    template_mb=4,
    template_repeats=1,
    fill_mb=5,
    fill_jobs=2,
    idle_seconds=1.0,
    blackbox_runs=5,
    blackbox_big_runs=1,
    single_txs=200,
    bigblock_repeats=1,
)


@dataclass
class Figure:
    name: str
    value: float
    unit: str
    limit: float | None = None  # the limit's value, same unit as ``value`` unless noted
    limit_name: str | None = None
    target: float | None = None  # threshold on ``target_of``
    target_of: str = "ratio"  # "ratio" or "value"
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
        return {
            "value": self.value,
            "unit": self.unit,
            "limit": self.limit,
            "limit_name": self.limit_name,
            "ratio": self.ratio,
            "target": self.target,
            "target_of": self.target_of,
            "op": self.op,
            "target_text": self.target_text if self.target is not None else None,
            "holds": self.holds,
            "note": self.note,
        }


class ChainInfo(TypedDict):
    """The sync chain, built once per run by ``ensure_chain`` for sync, reorg and memory."""

    datadir: Path  # a regtest datadir holding it
    seed: bytes  # the seed its keys derive from
    height: int  # blocks
    txs: int  # 1-in/2-out transactions in it
    utxos: int  # unspent outputs at its tip
    leftovers: list[list[tuple[bc.Coin, int]]]  # per worker: unspent coin, height spendable at


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    """One run of the benchmarks: its sizes, work directory, figures, signing pool and nodes."""

    def __init__(self, sizes: Sizes, workdir: Path, profiler: Profiler) -> None:
        self.sizes = sizes
        self.workdir = workdir
        self.profiler = profiler
        self.figures: dict[str, Figure] = {}
        self.cores = os.cpu_count() or 1
        self.seed = os.urandom(16)
        self.nodes: list[NodeProc] = []
        self.session: aiohttp.ClientSession | None = None
        self._pool: ProcessPoolExecutor | None = None
        self.chain_info: ChainInfo | None = None
        self.sig_checks: list = []  # (pubkey, sig, msg) triples of the signature benchmark

    # --- plumbing ------------------------------------------------------------------------

    def add(
        self,
        name: str,
        value: float,
        unit: str,
        limit: float | None = None,
        limit_name: str | None = None,
        **kw,
    ) -> Figure:
        fig = Figure(
            name, float(value), unit, limit, limit_name if limit is not None else None, **kw
        )
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
    def client(self) -> aiohttp.ClientSession:
        """The run's HTTP session, which ``bench.py`` opens around all the benchmarks."""
        if self.session is None:
            raise BenchError("the benchmarks run inside bench.run(), which opens the HTTP session")
        return self.session

    @property
    def pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = bc.signing_pool(self.cores)
            list(self._pool.map(bc.warm, range(self.cores)))  # start-up is not signing
        return self._pool

    async def in_pool(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)

    def node(self, name: str, **kw) -> NodeProc:
        proc = NodeProc(self.workdir, name, self.client, **kw)
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
        parts = await asyncio.gather(
            *(
                self.in_pool(bc.sign_spends, REGTEST.network_id, seed, coins[i : i + size])
                for i in range(0, len(coins), size)
            )
        )
        return [raw for part in parts for raw in part]

    def profile(self, name: str | None, pid: int):
        return self.profiler.attach(name, pid)
