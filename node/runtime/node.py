"""A full node's parts wired together: chain state, mempool, P2P, relay, sync, miner.

Every change to the chain state or mempool runs on ONE thread (``in_chain``),
so those objects need no locks; the event loop stays free for I/O.  The
daemon (``daemon.py``) builds a Node from its configuration and adds the API.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from network import NetConfig, PeerManager
from network.frames import encode_frame
from node.chain.chainstate import AcceptResult, AcceptStatus, BatchResult, ChainState
from node.consensus.params import NetworkParams
from node.consensus.sigcheck import SignatureVerifier
from node.mempool.persist import MEMPOOL_FILE, load_mempool, save_mempool
from node.mempool.pool import MAX_MEMPOOL_USAGE, Mempool
from node.mining.miner import Miner, mine_blocks
from node.mining.warm import WarmTemplate
from node.p2p.compact_relay import CompactRelay
from node.p2p.early_relay import EarlyRelay
from node.p2p.messages import (
    MAX_BLOCK_TXS,
    MAX_HEADERS,
    MAX_INV,
    MAX_LOCATOR,
    MSG_BLOCK,
    MSG_BLOCKTXN,
    MSG_CMPCTBLOCK,
    MSG_GETBLOCKTXN,
    MSG_GETDATA,
    MSG_GETHEADERS,
    MSG_HEADERS,
    MSG_INV,
    MSG_MEMPOOL,
    MSG_NOTFOUND,
    MSG_POWBLOCK,
    MSG_SENDCMPCT,
    MSG_TX,
    VALUE_LIMITS,
)
from node.p2p.peerstate import PeerTable
from node.p2p.ports import STAGE_COMMIT, STAGE_QUEUE, STAGE_TIP, STAGE_VALIDATE
from node.p2p.relay import Relay
from node.p2p.sync import BlockSync
from node.p2p.trickle import TrickleIntervals, TxTrickle, default_trickle
from node.primitives import encoding
from node.primitives.block import MAX_BLOCK_SIZE, Block
from node.primitives.tx import MAX_TX_SIZE, Transaction
from node.runtime.batcher import Batcher
from node.runtime.events import EventHub
from node.storage.mapbudget import MapBudget

log = logging.getLogger("obol.node")

T = TypeVar("T")

MEMPOOL_EXPIRY_INTERVAL = 600.0  # seconds between mempool expiry sweeps
MAX_BLOCK_BATCH = 128  # blocks accepted in one chain-thread call (one commit)
# transactions checked in one chain-thread call (one signature batch)
MAX_TX_BATCH = 1024


# bytes: largest payload of each node message, checked before it is decoded (decoding
# costs in proportion to size): its cap in entries times an entry's largest encoding,
# plus the envelope (docs/protocol.md §14.8)
_ENVELOPE = 64
_INV_ENTRY = 36  # [kind, hash]: array header, kind, bin header, 32 bytes
_HASH = 34  # bin header and 32 bytes
_HEADER = 128  # an encoded block header is under 100 bytes
_SHORT_ID = 8  # a short id: bin header and 6 bytes
_INDEX = 3  # a transaction index below 2^16
PAYLOAD_LIMITS = {
    MSG_INV: _ENVELOPE + MAX_INV * _INV_ENTRY,
    MSG_GETDATA: _ENVELOPE + MAX_INV * _INV_ENTRY,
    MSG_NOTFOUND: _ENVELOPE + MAX_INV * _INV_ENTRY,
    MSG_GETHEADERS: _ENVELOPE + (MAX_LOCATOR + 1) * _HASH,
    MSG_HEADERS: _ENVELOPE + MAX_HEADERS * _HEADER,
    MSG_TX: _ENVELOPE + MAX_TX_SIZE,
    MSG_BLOCK: _ENVELOPE + MAX_BLOCK_SIZE,
    MSG_POWBLOCK: _ENVELOPE + MAX_BLOCK_SIZE,
    MSG_MEMPOOL: _ENVELOPE,
    MSG_SENDCMPCT: _ENVELOPE,
    # a header, a nonce, and its transactions by short id (2 + 6 bytes) or whole
    MSG_CMPCTBLOCK: _ENVELOPE + _HEADER + MAX_BLOCK_TXS * _SHORT_ID + MAX_BLOCK_SIZE,
    MSG_GETBLOCKTXN: _ENVELOPE + _HASH + MAX_BLOCK_TXS * _INDEX,
    MSG_BLOCKTXN: _ENVELOPE + _HASH + MAX_BLOCK_SIZE,
}


def _report_failure(future: asyncio.Future) -> None:
    """Done callback of chain work nobody awaits: log its exception."""
    if not future.cancelled() and future.exception() is not None:
        log.error("chain thread task failed", exc_info=future.exception())


@dataclass(frozen=True)
class NodeConfig:
    """What a node is told at start-up (the daemon fills it from flags, file and env)."""

    params: NetworkParams  # which network
    datadir: Path  # LMDB, peers, bans, api.token live here
    net: NetConfig = field(default_factory=NetConfig)  # P2P options
    peers: tuple[tuple[str, int], ...] = ()  # persistent outbound peers
    mine: bool = False  # run the miner from the start
    miner_address: bytes | None = None  # 20-byte hash the miner pays to
    miner_threads: int = 0  # miner processes; 0 = one per core
    sig_threads: int = 0  # signature-check threads; 0 = one per core
    stall_timeout: float = 10.0  # seconds before a block download is re-requested
    max_mempool: int = MAX_MEMPOOL_USAGE  # bytes of memory the mempool may use
    persist_mempool: bool = True  # save the mempool on stop, load it at start
    # seconds added to the clock the chain and mempool read (block timestamps, future-block
    # limit, mempool ages): a test network's skewed host (--clock-offset, not on main)
    clock_offset: float = 0.0
    # mean seconds between two ``inv`` of transactions to a peer; None: the network's
    # default (node/p2p/trickle.py)
    tx_trickle: TrickleIntervals | None = None


def skewed_clock(offset: float) -> Callable[[], float]:
    """time.time, or a clock ``offset`` seconds ahead of it (behind if negative)."""
    if not offset:
        return time.time
    return lambda: time.time() + offset


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.params = config.params
        self.verifier = SignatureVerifier(config.sig_threads or None)
        clock = skewed_clock(config.clock_offset)
        self.chain = ChainState(config.datadir, self.params, self.verifier, clock=clock)
        self.map_budget = MapBudget(
            config.datadir / "chain.lmdb" / "data.mdb", syncing=lambda: self.sync.syncing
        )
        self.mempool = Mempool(
            self.chain,
            self.verifier,
            max_usage=config.max_mempool,
            clock=clock,
            after_read=self.map_budget.check,
        )
        self.events = EventHub()
        self._chain_thread = ThreadPoolExecutor(1, thread_name_prefix="chain")
        self.peers = PeerManager(
            magic=self.params.magic,
            genesis_hash=self.params.genesis_hash,
            codec=encoding,
            best_height=lambda: self.chain.height,
            datadir=config.datadir,
            config=config.net,
        )
        self.peer_states = PeerTable()
        self.sync = BlockSync(self.chain, self.peer_states, self, config.stall_timeout)
        self.compact = CompactRelay(
            self.chain, self.mempool, self.peer_states, self, self.sync.request_headers
        )
        early = EarlyRelay(
            self.chain, self.peer_states, lambda: self.sync.syncing, self, self.compact.send
        )
        self.relay = Relay(
            self.chain,
            self.mempool,
            self.peer_states,
            self.sync,
            early,
            self.compact,
            TxTrickle(
                self.peer_states,
                self.mempool.__contains__,
                config.tx_trickle or default_trickle(self.params),
            ),
            self,
            self.peers,
        )
        self.miner = Miner(
            self._miner_template, self.submit_block, config.miner_threads or os.cpu_count() or 1
        )
        self.miner_address = config.miner_address
        # the next block's template, kept between requests (used on the chain thread only)
        self.template = WarmTemplate(self.chain, self.mempool)
        self.started = time.time()
        self.blocks_validated = 0
        self.txs_validated = 0
        self.reorgs = 0
        # called (on the chain thread) with the seconds each block submission took to validate
        self.block_timers: list[Callable[[float], None]] = []
        # called (from any thread) with a stage of a block's path (p2p/ports.py's
        # BLOCK_STAGES) and the seconds one block spent in it
        self.stage_timers: list[Callable[[str, float], None]] = []
        self._tasks: list[asyncio.Task] = []
        self._blocks = Batcher(self._process_blocks, MAX_BLOCK_BATCH, "accept-blocks")
        self._was_syncing = False  # a peer had more work at the last tip change
        self._txs = Batcher(self._process_txs, MAX_TX_BATCH, "accept-txs", finish=self._finish_txs)
        self._register()

    def _register(self) -> None:
        """Each node message's handler and bounds: its bytes, and its values per depth
        (``VALUE_LIMITS``), both checked before it is decoded."""
        p, s, r, c = self.peers, self.sync, self.relay, self.compact
        size, values = PAYLOAD_LIMITS, VALUE_LIMITS
        for msg_type, handler in (
            (MSG_SENDCMPCT, c.handle_sendcmpct),
            (MSG_GETBLOCKTXN, c.handle_getblocktxn),
            (MSG_GETHEADERS, s.handle_getheaders),
            (MSG_HEADERS, s.handle_headers),
            (MSG_INV, r.handle_inv),
            (MSG_GETDATA, r.handle_getdata),
            (MSG_NOTFOUND, r.handle_notfound),
            (MSG_MEMPOOL, r.handle_mempool),
        ):
            p.register(msg_type, handler, max_payload=size[msg_type], max_values=values[msg_type])
        # ids hashed from the bytes as they came, not re-encoded
        for msg_type, bytes_handler in (
            (MSG_TX, r.handle_tx),
            (MSG_BLOCK, r.handle_block),
            (MSG_POWBLOCK, r.handle_powblock),
            (MSG_CMPCTBLOCK, r.handle_cmpctblock),
            (MSG_BLOCKTXN, r.handle_blocktxn),
        ):
            p.register(
                msg_type,
                bytes_handler,
                with_bytes=True,
                max_payload=size[msg_type],
                max_values=values[msg_type],
            )
        p.on_established.append(s.on_established)
        p.on_established.append(r.on_established)
        p.on_established.append(c.on_established)
        p.on_disconnected.append(s.on_disconnected)
        p.on_disconnected.append(r.on_disconnected)
        p.on_disconnected.append(c.on_disconnected)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.config.persist_mempool:
            await self.in_chain(self._load_mempool)
        await self.peers.start()
        for host, port in self.config.peers:
            self.peers.add_persistent_peer(host, port)
        self.sync.start()
        self._tasks.append(asyncio.get_running_loop().create_task(self._expire_loop()))
        if self.config.mine:
            self.start_miner()

    async def stop(self) -> None:
        await self.miner.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.sync.stop()
        await self.peers.stop()
        if self.config.persist_mempool:
            await self.in_chain(self._save_mempool)
        # Let a block being connected finish: its LMDB transaction commits or aborts whole.
        self._chain_thread.shutdown(wait=True)
        self.chain.close()
        self.verifier.close()

    def start_miner(self) -> None:
        if self.miner_address is None:
            raise ValueError("the miner needs an address (--miner-address)")
        self.miner.start()

    def _load_mempool(self) -> None:
        """On the chain thread: the mempool saved at the last clean stop, validated anew."""
        path = self.config.datadir / MEMPOOL_FILE
        started = time.perf_counter()
        accepted, dropped = load_mempool(self.mempool, path)
        if accepted or dropped:
            log.info(
                "loaded %d mempool transaction(s) from %s, %d dropped (%.0f ms)",
                accepted,
                path.name,
                dropped,
                (time.perf_counter() - started) * 1000,
            )

    def _save_mempool(self) -> None:
        """On the chain thread, once no peer can add more: the mempool to ``mempool.dat``."""
        path = self.config.datadir / MEMPOOL_FILE
        try:
            count = save_mempool(self.mempool, path)
        except OSError as exc:
            log.error("cannot save the mempool to %s: %s", path, exc)
            return
        log.info("saved %d mempool transaction(s) to %s", count, path.name)

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(MEMPOOL_EXPIRY_INTERVAL)
            await self.in_chain(self.mempool.expire)

    # --- the chain thread ------------------------------------------------------------------

    async def in_chain(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the chain thread (the only one that changes chain state or mempool)."""
        return await self.chain_future(fn, *args)

    def chain_future(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``in_chain`` that queues ``fn`` for the chain thread now, not when first awaited."""
        return asyncio.get_running_loop().run_in_executor(
            self._chain_thread, self._chain_call, fn, *args
        )

    def _chain_call(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return fn(*args)
        finally:
            # chain work reads the LMDB map: keep its resident pages bounded
            self.map_budget.check()

    def frame(self, payload: bytes) -> bytes:
        return encode_frame(self.params.magic, payload)

    # --- blocks and transactions -----------------------------------------------------------

    def block_stage(self, stage: str, seconds: float) -> None:
        """One block spent ``seconds`` in ``stage`` (``NodePort``; any thread)."""
        for timer in self.stage_timers:
            timer(stage, seconds)

    def _accept_blocks(
        self,
        blocks: list[Block],
        unrequested: Collection[bytes] = (),
        queued: Collection[float] = (),
    ) -> BatchResult:
        """On the chain thread: accept a batch, then bring the mempool along.  ``queued``:
        when (perf_counter) each block was queued for this call."""
        started = time.perf_counter()
        for at in queued:
            self.block_stage(STAGE_QUEUE, started - at)
        commit = 0.0
        try:
            result = self.chain.accept_blocks(blocks, unrequested)
            commit = result.commit_seconds
        finally:
            elapsed = (time.perf_counter() - started) / len(blocks)
            for timer in self.block_timers:
                for _ in blocks:
                    timer(elapsed)
            for _ in blocks:
                self.block_stage(STAGE_VALIDATE, elapsed - commit / len(blocks))
                self.block_stage(STAGE_COMMIT, commit / len(blocks))
        if result.connected or result.disconnected:
            self.mempool.update_for_chain(result.connected, result.disconnected)
        return result

    async def submit_block(self, block: Block, source: Any = None) -> AcceptResult:
        """Validate and store a block from any source (peer, miner, API); react to tip changes.

        Blocks submitted while the chain thread is busy are accepted together in
        one batch (one LMDB commit when they extend the chain): during initial
        sync this is what keeps up with the download.  Raises the block's
        ValidationError if it is invalid.
        """
        return await self.queue_block(block)

    def queue_block(self, block: Block, requested: bool = True) -> asyncio.Future:
        """``submit_block`` without waiting (no task per block): the future holds the
        AcceptResult or the ValidationError.  A block a peer pushed unasked
        (``requested`` False) is stored only if worth it (``ChainState.accept_blocks``)."""
        return self._blocks.enqueue((block, requested, time.perf_counter()))

    async def _process_blocks(self, items: list[tuple[Block, bool, float]]) -> list:
        blocks = [block for block, _, _ in items]
        unrequested = {block.hash for block, requested, _ in items if not requested}
        queued = [at for _, _, at in items]
        result, accepted = await self.in_chain(self._accept_timed, blocks, unrequested, queued)
        self._after_blocks(result, accepted)
        self._merge_txindex_later(result)
        for outcome in result.outcomes:
            if isinstance(outcome, AcceptResult):
                outcome.connected, outcome.disconnected = result.connected, result.disconnected
        return result.outcomes

    def _merge_txindex_later(self, result: AcceptResult | BatchResult) -> None:
        """After a change is relayed: ``ChainState.merge_recent_txindex`` (a no-op unless
        due), queued behind the chain thread's work."""
        if not result.connected:
            return
        try:
            self.chain_future(self.chain.merge_recent_txindex).add_done_callback(_report_failure)
        except RuntimeError:
            # stopping: the chain thread takes no more work.  Nothing is lost: readers find
            # txrecent's entries, and it is merged after a block connects next time.
            return

    def _accept_timed(self, *args: Any) -> tuple[BatchResult, float]:
        """``_accept_blocks``, and when (perf_counter) it returned."""
        return self._accept_blocks(*args), time.perf_counter()

    def _after_blocks(self, result: AcceptResult | BatchResult, accepted: float = 0.0) -> None:
        """React to a tip change: counters, relay, miner, mempool event subscribers.
        ``accepted``: when (perf_counter) the chain thread finished with the blocks."""
        if not result.connected and not result.disconnected:
            return
        self.blocks_validated += len(result.connected)
        self.txs_validated += sum(len(b.txs) for b in result.connected)
        if result.disconnected:
            self.reorgs += 1
            # Transactions of the branch that lost and are back in the mempool: tell peers again.
            for block in result.disconnected:
                for tx in block.txs[1:]:
                    if tx.txid in self.mempool:
                        self.relay.announce_tx(tx)
        self.relay.tip_changed(result.connected)
        syncing = self.sync.syncing
        if result.connected and not syncing:
            self.relay.announce_blocks(result.connected)
        if self._was_syncing and not syncing:
            self.relay.request_mempools()  # caught up: now their transactions can be checked
        self._was_syncing = syncing
        self.miner.notify()
        tip = self.chain.tip
        self.events.publish(
            {
                "type": "tip",
                "height": tip.height,
                "hash": tip.hash.hex(),
                "connected": [b.hash.hex() for b in result.connected],
                "disconnected": [b.hash.hex() for b in result.disconnected],
            }
        )
        if accepted:
            tip_seconds = time.perf_counter() - accepted
            for _ in result.connected:
                self.block_stage(STAGE_TIP, tip_seconds)

    async def change_chain(self, action: str, block_hash: bytes) -> AcceptResult:
        """``invalidate`` or ``reconsider`` a block (Bitcoin: invalidateblock/reconsiderblock).

        Raises KeyError for an unknown block, ValueError for the genesis block.
        """
        method = {
            "invalidate": self.chain.invalidate_block,
            "reconsider": self.chain.reconsider_block,
        }[action]

        def work() -> AcceptResult:
            result = method(block_hash)
            if result.connected or result.disconnected:
                self.mempool.update_for_chain(result.connected, result.disconnected)
            return result

        result = await self.in_chain(work)
        self._after_blocks(result)
        self._merge_txindex_later(result)
        return result

    async def submit_tx(self, tx: Transaction, source: Any = None, test_only: bool = False):
        """Validate a transaction against chain + mempool; add and relay it unless ``test_only``.

        Transactions submitted while the chain thread is busy are checked as
        one batch, their signatures verified in parallel.  Raises with the
        reject code if refused.
        """
        if test_only:
            return await self.in_chain(self.mempool.accept, tx, True)
        return await self.queue_tx(tx, source)

    @overload
    def queue_tx(
        self, tx: Transaction, source: Any = None, on_outcome: None = None
    ) -> asyncio.Future[Any]: ...

    @overload
    def queue_tx(self, tx: Transaction, source: Any, on_outcome: Callable[[Any], None]) -> None: ...

    def queue_tx(
        self, tx: Transaction, source: Any = None, on_outcome: Callable[[Any], None] | None = None
    ) -> asyncio.Future[Any] | None:
        """``submit_tx`` without waiting: the future holds the mempool entry or the error
        (or, given ``on_outcome``, that is called with it instead).  An accepted
        transaction is announced to peers (other than ``source``)."""
        return self._txs.enqueue((tx, source), on_outcome)

    def _process_txs(self, items: list[tuple[Transaction, Any]]) -> asyncio.Future[list]:
        # queued for the chain thread at once: the batcher calls this before it finishes
        # the previous batch on the event loop
        return self.chain_future(self.mempool.accept_many, [tx for tx, _ in items])

    def _finish_txs(self, items: list[tuple[Transaction, Any]], outcomes: list) -> None:
        """Relay and announce a processed batch (while the chain thread takes the next)."""
        for (tx, source), outcome in zip(items, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                self.relay.tx_accepted(tx, source)
        accepted = [o for o in outcomes if not isinstance(o, BaseException)]
        self.txs_validated += len(accepted)
        if accepted:
            # a new template only once the current one is MIN_TEMPLATE_AGE old
            self.miner.notify(tip=False)
        if self.events.listened:
            for entry in accepted:
                self.events.publish(
                    {"type": "tx", "txid": entry.txid.hex(), "fee": entry.fee, "size": entry.size}
                )

    async def generate(self, count: int, addr_hash: bytes) -> list[Block]:
        """Mine ``count`` blocks at once in this process (regtest), relaying the newest."""
        queued = time.perf_counter()
        loop = asyncio.get_running_loop()

        def accept(chunk: list[Block]) -> BatchResult:
            if count == 1:
                # pushed to high-bandwidth peers while it is validated here, as a block
                # from a peer is (Core announces a mined block in NewPoWValidBlock, before
                # connecting it): the first hop does not wait for our own validation
                loop.call_soon_threadsafe(self.relay.relay_early, chunk[0])
            return self._accept_blocks(chunk)

        def work() -> tuple[list[Block], float]:
            self.block_stage(STAGE_QUEUE, time.perf_counter() - queued)  # for the chain thread
            blocks = mine_blocks(
                self.chain, self.mempool, addr_hash, count, template=self.template, accept=accept
            )
            return blocks, time.perf_counter()

        tip_before = self.chain.tip
        blocks, accepted = await self.in_chain(work)
        if self.chain.tip is not tip_before:
            connected = AcceptResult(b"", AcceptStatus.CONNECTED, connected=blocks)
            self._after_blocks(connected, accepted)
        return blocks

    async def _miner_template(self) -> Block:
        addr = self.miner_address
        assert addr is not None, "start_miner checked it"
        return await self.in_chain(lambda: self.template.block(addr, extra=os.urandom(4)))
