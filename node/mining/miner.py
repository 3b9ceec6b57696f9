"""Block templates and the proof-of-work search.

The header's canonical encoding ends with the nonce.  Nonces are searched in
[NONCE_START, 2^64), where msgpack always writes them as ``0xcf`` + 8 bytes,
so every candidate header is ``prefix + nonce_bytes`` with a fixed prefix:
sha256 absorbs the prefix once (the midstate) and each try only hashes the
nonce and the second round.

``search_nonce`` is a plain function so worker processes can run it; the
``Miner`` (asyncio) keeps one process per core busy with nonce ranges (a new
range is handed out as soon as one returns, never waiting for the slowest)
and starts over when the tip changes, or when the mempool changed and the
template is older than MIN_TEMPLATE_AGE (Bitcoin Core refreshes templates
for new transactions only every few seconds too: building one decodes and
sorts the pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import multiprocessing
import os
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor

from node.chain.chainstate import BatchResult, ChainState
from node.chain.index import BlockIndexEntry
from node.consensus.params import BLOCK_VERSION, MEDIAN_TIME_SPAN
from node.consensus.pow import bits_to_target
from node.mempool.pool import Mempool
from node.mining.warm import NONCE_START, WarmTemplate
from node.primitives.block import Block, BlockHeader, merkle_root
from node.primitives.tx import TxOut, make_coinbase

log = logging.getLogger("obol.miner")

NONCE_PREFIX = b"\xcf"  # msgpack marker of a uint64
MINE_BATCH = 256  # regtest blocks built ahead and accepted in one commit
CHUNK_NONCES = 1 << 16  # nonces in one work unit (~0.1 s of one core)
QUEUED_CHUNKS = 2  # work units in flight per process, so none waits for the next
MIN_TEMPLATE_AGE = 2.0  # seconds a template is kept when only the mempool changed
NONCE_END = 1 << 63  # past this a fresh template (new time, new extra nonce) is taken
PR_SET_PDEATHSIG = 1  # prctl option: signal to receive when the parent dies
MINER_RETRY_DELAY = 1.0  # seconds to wait after a failed round (template or submit raised)


def create_block_template(
    chain: ChainState,
    mempool: Mempool | None,
    addr_hash: bytes,
    extra: bytes = b"",
    now: float | None = None,
) -> Block:
    """An unsolved block on the current tip paying subsidy + fees to ``addr_hash``, built
    cold (a node keeps a ``WarmTemplate`` instead)."""
    return WarmTemplate(chain, mempool).block(addr_hash, extra, now)


def _die_with_node() -> None:
    """Worker initializer: the kernel kills this worker when the node dies, even by
    SIGKILL (Linux PR_SET_PDEATHSIG), so no worker keeps hashing for a dead node."""
    try:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers end when their pipe closes
        return
    if os.getppid() == 1:  # the node died before the line above ran
        os._exit(1)


def header_prefix(header: BlockHeader) -> bytes:
    """The header's encoding without its nonce (which must be ≥ NONCE_START)."""
    assert header.nonce >= NONCE_START
    return header.raw[:-8]


def search_nonce(prefix: bytes, target: int, start: int, count: int) -> int | None:
    """First nonce in [start, start+count) whose header hash is ≤ target, or None."""
    sha256 = hashlib.sha256
    midstate = sha256(prefix)
    target_bytes = target.to_bytes(32, "big")
    for nonce in range(start, start + count):
        h = midstate.copy()
        h.update(nonce.to_bytes(8, "big"))
        if sha256(h.digest()).digest() <= target_bytes:
            return nonce
    return None


def solve_block(block: Block, max_tries: int = 1 << 40) -> Block | None:
    """Search nonces in this process (regtest and tests: the target is trivial)."""
    prefix = header_prefix(block.header)
    nonce = search_nonce(prefix, bits_to_target(block.header.bits), NONCE_START, max_tries)
    if nonce is None:
        return None
    return Block(block.header.with_nonce(nonce), block.txs, _with_nonce_raw(block, nonce))


def _with_nonce_raw(block: Block, nonce: int) -> bytes:
    # The block's encoding starts with [header, ...]: swap the 8 nonce bytes in place.
    header_len = len(block.header.raw)
    start = 1 + header_len - 8  # 1 byte: the outer array marker
    return block.raw[:start] + nonce.to_bytes(8, "big") + block.raw[start + 8 :]


def mine_blocks(
    chain: ChainState,
    mempool: Mempool | None,
    addr_hash: bytes,
    count: int,
    template: WarmTemplate | None = None,
    accept: Callable[[list[Block]], BatchResult] | None = None,
) -> list[Block]:
    """Mine ``count`` blocks in this process and accept them (regtest's ``generate``).

    Where the target does not retarget, blocks are built ahead on one another
    and accepted MINE_BATCH at a time (one LMDB commit each batch); otherwise
    one at a time, since each target depends on the previous block.  The first
    block of each batch comes from ``template`` (a node's warm one; else one
    built cold); ``accept`` takes each batch through the chain's normal
    acceptance and brings the mempool along (by default ``accept_blocks``, then
    ``update_for_chain``; a node passes its own, which also times them).
    """
    if template is None:
        template = WarmTemplate(chain, mempool)
    if accept is None:
        accept = functools.partial(_accept, chain, mempool)
    blocks: list[Block] = []
    batch_size = 1 if chain.params.retarget else MINE_BATCH
    while len(blocks) < count:
        chunk = [_solved(template.block(addr_hash, extra=os.urandom(4)))]
        recent = _recent_times(chain) + [chunk[0].header.timestamp]
        while len(chunk) < min(batch_size, count - len(blocks)):
            recent = recent[-MEDIAN_TIME_SPAN:]
            mtp = sorted(recent)[len(recent) // 2]
            chunk.append(_solved(_empty_child(chain, chunk[-1], addr_hash, mtp)))
            recent.append(chunk[-1].header.timestamp)
        result = accept(chunk)
        for outcome in result.outcomes:
            if isinstance(outcome, Exception):
                raise outcome
        blocks.extend(chunk)
    return blocks


def _accept(chain: ChainState, mempool: Mempool | None, blocks: list[Block]) -> BatchResult:
    """``mine_blocks``' acceptance without a node: the chain's, then the mempool's."""
    result = chain.accept_blocks(blocks)
    if mempool is not None:
        mempool.update_for_chain(result.connected, result.disconnected)
    return result


def _solved(block: Block) -> Block:
    """``solve_block`` where a nonce must exist (regtest's target is trivial)."""
    solved = solve_block(block)
    if solved is None:
        raise RuntimeError("no nonce of the whole range meets the block's target")
    return solved


def _recent_times(chain: ChainState) -> list[int]:
    """Timestamps of the tip and its ancestors, oldest first (up to MEDIAN_TIME_SPAN)."""
    times: list[int] = []
    entry: BlockIndexEntry | None = chain.tip
    while entry is not None and len(times) < MEDIAN_TIME_SPAN:
        times.append(entry.header.timestamp)
        entry = entry.parent
    return times[::-1]


def _empty_child(
    chain: ChainState, parent: Block, addr_hash: bytes, median_time_past: int
) -> Block:
    """An unsolved block with only a coinbase on ``parent`` (not yet in the chain state)."""
    height = parent.txs[0].inputs[0].prev_index + 1
    coinbase = make_coinbase(
        height, [TxOut(chain.params.subsidy(height), addr_hash)], os.urandom(4)
    )
    timestamp = max(int(chain.clock()), median_time_past + 1)
    header = BlockHeader.create(
        BLOCK_VERSION,
        parent.hash,
        merkle_root([coinbase.txid]),
        timestamp,
        chain.params.genesis_bits,
        NONCE_START,
    )
    return Block.create(header, [coinbase])


class Miner:
    """Mines on the tip with worker processes; never blocks the event loop.

    ``template`` builds a fresh unsolved block (called on the loop's chain thread
    by the daemon); ``submit`` hands a solved block back.  ``notify()`` says the
    tip changed, so the current search is abandoned when the next chunk returns;
    ``notify(tip=False)`` says the mempool changed, which abandons it only once
    the template is MIN_TEMPLATE_AGE old.
    """

    def __init__(
        self,
        template: Callable[[], Awaitable[Block]],
        submit: Callable[[Block], Awaitable[object]],
        processes: int | None = None,
    ) -> None:
        self.template = template
        self.submit = submit
        self.processes = processes or os.cpu_count() or 1
        self._tip_generation = 0  # bumped when the tip changes
        self._pool_generation = 0  # bumped when the mempool changes
        self._task: asyncio.Task | None = None
        self._pool: ProcessPoolExecutor | None = None
        self.hashes = 0
        self.started = 0.0
        self.blocks_found = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def hash_rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.hashes / elapsed if self.running and elapsed > 0 else 0.0

    def notify(self, tip: bool = True) -> None:
        if tip:
            self._tip_generation += 1
        else:
            self._pool_generation += 1

    def _outdated(self, tip_generation: int, pool_generation: int, built: float) -> bool:
        return tip_generation != self._tip_generation or (
            pool_generation != self._pool_generation
            and time.monotonic() - built >= MIN_TEMPLATE_AGE
        )

    def start(self) -> None:
        if self.running:
            return
        ctx = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(self.processes, mp_context=ctx, initializer=_die_with_node)
        self.hashes = 0
        self.started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="miner")
        log.info("miner started with %d process(es)", self.processes)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            # a round that failed has logged its error already
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        pool, self._pool = self._pool, None
        if pool is not None:
            # wait (off the loop) for the workers to finish their chunk and exit:
            # shutdown(wait=False) returned while worker processes were still running
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
            log.info("miner stopped")

    async def _run(self) -> None:
        while True:
            try:
                await self._mine_one()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("miner round failed; retrying in %.0f s", MINER_RETRY_DELAY)
                await asyncio.sleep(MINER_RETRY_DELAY)

    async def _mine_one(self) -> None:
        """Search one template until a block is found or the template is outdated."""
        generations = (self._tip_generation, self._pool_generation)
        block = await self.template()
        built = time.monotonic()
        prefix = header_prefix(block.header)
        target = bits_to_target(block.header.bits)
        next_nonce = NONCE_START
        found = None
        in_flight: set[asyncio.Future] = set()
        pool = self._pool
        assert pool is not None, "a running miner has its worker processes"
        try:
            while found is None and not self._outdated(*generations, built):
                while len(in_flight) < self.processes * QUEUED_CHUNKS and next_nonce < NONCE_END:
                    in_flight.add(
                        asyncio.wrap_future(
                            pool.submit(search_nonce, prefix, target, next_nonce, CHUNK_NONCES)
                        )
                    )
                    next_nonce += CHUNK_NONCES
                if not in_flight:
                    break  # nonce space used up: a fresh template (new time) comes next
                done, in_flight = await asyncio.wait(in_flight, return_when=asyncio.FIRST_COMPLETED)
                for future in done:
                    self.hashes += CHUNK_NONCES
                    if future.result() is not None and found is None:
                        found = future.result()
        finally:
            # not yet started: dropped; running: they end with their chunk
            for future in in_flight:
                future.cancel()
        if found is not None:
            # Submitted even if the template became outdated meanwhile: a block on a
            # tip that just moved is still valid work (a competing branch at worst).
            solved = Block(block.header.with_nonce(found), block.txs, _with_nonce_raw(block, found))
            self.blocks_found += 1
            await self.submit(solved)
