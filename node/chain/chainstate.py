"""Chain state: connecting blocks to the active chain and switching branches, in LMDB.

``ChainState.accept_block`` stores any block whose header is valid and then
follows the branch with the most cumulative work.  Switching branches
(disconnect to the fork point with undo data, connect the new branch) happens
in ONE LMDB write transaction; if a block of the new branch is invalid the
transaction is abandoned, the block and its descendants are marked invalid,
and the next best branch is tried.  A crash at any instant leaves the last
committed state, which is always consistent.

The parts it is built from, each in its own module: the block index and the
queries over it (``index``), orphan blocks (``orphans``), applying one block to
the UTXO set (``connect``), and every read of the store (``reader``, which the
layers above use as ``chain.reader``).

Not thread-safe for writers: the daemon calls every mutating method from one
thread.  Readers open their own LMDB read transactions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import lmdb

from node.chain.blockcache import BlockCache
from node.chain.connect import (
    UtxoStats,
    connect_block,
    connect_genesis_allocations,
    disconnect_block,
)
from node.chain.index import (
    BlockIndex,
    BlockIndexEntry,
    BlockStatus,
    median_time_past,
    next_bits,
    on_chain,
)
from node.chain.orphans import OrphanPool, check_orphan_pow
from node.chain.reader import ChainReader
from node.consensus import rules
from node.consensus.params import NetworkParams
from node.consensus.pow import bits_to_target, block_work
from node.consensus.sigcache import VerifiedTxs
from node.consensus.sigcheck import SignatureVerifier, VerifyJob
from node.primitives.block import Block, BlockHeader, short_hash
from node.primitives.encoding import decode, decode_stored
from node.primitives.errors import BlockValidationError, ValidationError
from node.storage.schema import height_key
from node.storage.store import Store, StoreError

log = logging.getLogger("obol.chain")

# signature checks of connected blocks left running before waiting for them
SIGNATURE_BATCH = 16_384
# blocks above the tip an unrequested block may be and still be stored (Core: MIN_BLOCKS_TO_KEEP)
MAX_UNREQUESTED_AHEAD = 288
TXRECENT_MERGE = 2_000  # txrecent entries that make merge_recent_txindex move them into txindex


class AcceptStatus(StrEnum):
    """What became of one accepted block."""

    CONNECTED = "connected"  # it is on the active chain
    STORED = "stored"  # stored on a side branch (or its branch failed to connect)
    ORPHAN = "orphan"  # its parent is unknown: kept in the orphan pool
    DUPLICATE = "duplicate"  # already stored (or already in this batch)
    # came unasked and not worth storing: less work than the tip, or too far ahead of it
    IGNORED = "ignored"


@dataclass
class AcceptResult:
    """What ``accept_block`` did, so the mempool, miner, relay and wallet can react."""

    block_hash: bytes  # the block accepted
    status: AcceptStatus  # what became of it
    connected: list[Block] = field(default_factory=list)  # joined the active chain, in order
    disconnected: list[Block] = field(default_factory=list)  # left it, tip first
    invalid: list[tuple[bytes, str]] = field(default_factory=list)  # blocks found invalid
    commit_seconds: float = 0.0  # spent in the LMDB commits of the switches it made

    def merge(self, other: AcceptResult) -> None:
        self.connected.extend(other.connected)
        self.disconnected.extend(other.disconnected)
        self.invalid.extend(other.invalid)
        self.commit_seconds += other.commit_seconds


@dataclass
class BatchResult:
    """What ``accept_blocks`` did: each block's outcome and the batch's tip change."""

    outcomes: list[AcceptResult | ValidationError]  # per block, in order
    connected: list[Block] = field(default_factory=list)  # joined the active chain, in order
    disconnected: list[Block] = field(default_factory=list)  # left it, tip first
    invalid: list[tuple[bytes, str]] = field(default_factory=list)  # blocks found invalid
    commit_seconds: float = 0.0  # spent in the LMDB commits of the switches it made


class _ConnectFailed(Exception):
    def __init__(self, entry: BlockIndexEntry, error: ValidationError) -> None:
        super().__init__(error.code)
        self.entry, self.error = entry, error


class ChainState:
    """The block index, the active chain and the UTXO set of one datadir."""

    def __init__(
        self,
        datadir: Path,
        params: NetworkParams,
        verifier: SignatureVerifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.params = params
        self._store = Store(Path(datadir), params.name, sync=params.sync_commits)
        self._db = self._store.db
        self.verifier = verifier or SignatureVerifier()
        self._own_verifier = verifier is None
        # txids whose signatures the mempool verified: a block holding them skips their
        # signature checks (``consensus/sigcache.py``)
        self.verified = VerifiedTxs()
        self.clock = clock
        self.index = BlockIndex()
        self.chain: list[BlockIndexEntry] = []  # the active chain by height, genesis first
        self.reader = ChainReader(self._store, self.index, self.on_active_chain)
        self.utxo_stats = UtxoStats()
        self.orphans = OrphanPool()
        self._candidates: set[BlockIndexEntry] = set()
        self._recent: dict[bytes, Block] = {}  # blocks accepted in this call: no re-decoding
        self._decoded = BlockCache()  # blocks of earlier calls, for the next reorg
        # stored in memory, written by the next commit
        self._unsaved: dict[bytes, BlockIndexEntry] = {}
        self._seq = 0
        self._load()

    # --- start-up ------------------------------------------------------------------

    def _load(self) -> None:
        with self._store.env.begin() as txn:
            records = [decode_stored(v) for _, v in txn.cursor(db=self._db["index"])]
            tip_hash = txn.get(b"tip", db=self._db["meta"])
            stats = txn.get(b"utxostats", db=self._db["meta"])
        if not records:
            self._write_genesis()
            return
        assert tip_hash is not None and stats is not None, "a store with an index has a tip"
        records.sort(key=lambda r: r[1])
        for header_list, height, work, status, seq, failure in records:
            header = BlockHeader.from_list(header_list)
            parent = self.index.get(header.prev_hash)
            entry = BlockIndexEntry(
                header,
                height,
                int.from_bytes(work, "big"),
                BlockStatus(status),
                seq,
                parent,
                failure,
            )
            self.index.add(entry)
            entry.have_chain = entry.status in (BlockStatus.DATA, BlockStatus.VALID) and (
                parent is None or parent.have_chain
            )
            self._seq = max(self._seq, seq + 1)
        if self.index.get(self.params.genesis_hash) is None:
            # the same name, another genesis: a chain spec changed under an existing datadir
            self._store.close()
            raise StoreError(
                f"datadir holds another '{self.params.name}' chain: its genesis is not "
                f"{self.params.genesis_hash.hex()}"
            )
        self.index.recompute_best_header()
        count, amount = decode(stats)
        self.utxo_stats = UtxoStats(count, amount)
        tip = self.index[tip_hash]
        self.chain = [tip]
        while self.chain[-1].parent is not None:
            self.chain.append(self.chain[-1].parent)
        self.chain.reverse()
        for entry in self.index.values():
            if (
                entry.have_chain
                and entry.status != BlockStatus.INVALID
                and entry.chain_work > tip.chain_work
            ):
                self._candidates.add(entry)
        if self._candidates:
            # blocks stored with more work than the tip but not connected (a crash came
            # between storing and switching): connect them now, as Bitcoin Core does at start-up
            self.activate_best_chain()
        log.info(
            "loaded chain %s: height=%d tip=%s utxos=%d",
            self.params.name,
            self.height,
            short_hash(tip.hash),
            self.utxo_stats.count,
        )

    def _write_genesis(self) -> None:
        genesis = self.params.genesis
        target = bits_to_target(genesis.header.bits)
        entry = BlockIndexEntry(genesis.header, 0, block_work(target), BlockStatus.VALID, 0, None)
        entry.have_chain = True
        with self._store.env.begin(write=True) as txn:
            txn.put(entry.hash, entry.record(), db=self._db["index"])
            txn.put(entry.hash, genesis.raw, db=self._db["blocks"])
            txn.put(height_key(0), entry.hash, db=self._db["chain"])
            txn.put(b"tip", entry.hash, db=self._db["meta"])
            if self.params.genesis_allocations:
                connect_genesis_allocations(txn, self._db, genesis, entry.hash, self.utxo_stats)
            txn.put(b"utxostats", self.utxo_stats.record(), db=self._db["meta"])
        self.index.add(entry)
        self._seq = 1
        self.chain = [entry]

    def close(self) -> None:
        if self._own_verifier:
            self.verifier.close()
        self._store.close()

    # --- the active chain and the context of a new header ----------------------------

    @property
    def tip(self) -> BlockIndexEntry:
        return self.chain[-1]

    @property
    def height(self) -> int:
        return len(self.chain) - 1

    @property
    def best_header(self) -> BlockIndexEntry:
        """The valid header with the most work (Bitcoin: pindexBestHeader)."""
        best = self.index.best_header
        assert best is not None, "the index always holds the genesis block"
        return best

    def on_active_chain(self, entry: BlockIndexEntry) -> bool:
        return on_chain(self.chain, entry)

    def median_time_past(self, entry: BlockIndexEntry | None) -> int:
        """Median timestamp of the MEDIAN_TIME_SPAN blocks ending at ``entry``."""
        return median_time_past(entry)

    def next_bits(self, parent: BlockIndexEntry) -> int:
        """Compact target required of a child of ``parent`` on this network."""
        return next_bits(self.params, parent)

    def header_context(self, parent: BlockIndexEntry) -> rules.HeaderContext:
        return rules.HeaderContext(
            next_bits(self.params, parent), median_time_past(parent), int(self.clock())
        )

    # --- headers -------------------------------------------------------------------

    def accept_headers(self, headers: list[BlockHeader]) -> list[BlockIndexEntry]:
        """Validate and store headers (headers-first sync), in one write transaction.

        Raises on the first invalid header; those before it are kept.
        """
        new: list[BlockIndexEntry] = []
        entries: list[BlockIndexEntry] = []
        try:
            for header in headers:
                entry = self.index.get(header.hash)
                if entry is None:
                    entry = self._check_new_header(header)
                    self.index.add(entry)
                    new.append(entry)
                elif entry.status == BlockStatus.INVALID:
                    raise BlockValidationError(entry.failure or "invalid", "known invalid block")
                entries.append(entry)
        finally:
            if new:
                with self._store.env.begin(write=True) as txn:
                    for entry in new:
                        txn.put(entry.hash, entry.record(), db=self._db["index"])
        return entries

    def _check_new_header(self, header: BlockHeader) -> BlockIndexEntry:
        parent = self.index.get(header.prev_hash)
        if parent is None:
            raise BlockValidationError("prev-blk-not-found", "parent header unknown")
        if parent.status == BlockStatus.INVALID:
            raise BlockValidationError("bad-prevblk", "parent is invalid")
        rules.validate_header(header, self.header_context(parent), self.params)
        work = parent.chain_work + block_work(bits_to_target(header.bits))
        entry = BlockIndexEntry(
            header, parent.height + 1, work, BlockStatus.HEADER, self._seq, parent
        )
        self._seq += 1
        return entry

    # --- blocks --------------------------------------------------------------------

    def accept_block(self, block: Block) -> AcceptResult:
        """Store a block with a valid header and follow the branch with the most work.

        Raises a ValidationError if the block is invalid.  A block whose parent
        is unknown goes to the orphan pool and is connected when the parent comes.
        """
        batch = self.accept_blocks([block])
        outcome = batch.outcomes[0]
        if isinstance(outcome, ValidationError):
            raise outcome
        outcome.connected, outcome.disconnected = batch.connected, batch.disconnected
        outcome.invalid = batch.invalid
        return outcome

    def accept_blocks(
        self, blocks: list[Block], unrequested: Collection[bytes] = ()
    ) -> BatchResult:
        """Accept several blocks with one activation: when they extend the active
        chain, all of them are connected (and stored) in ONE write transaction.

        Each block gets its own outcome (an AcceptResult or the ValidationError
        it raised); the tip change of the whole batch is in the BatchResult.
        Blocks whose hash is in ``unrequested`` (pushed by a peer, not asked
        for) are stored only if worth it (``_worth_storing``).
        """
        batch = self._accept_batch(blocks, unrequested)
        # stored blocks whose orphan children to accept next: an orphan is judged as its
        # parent was (asked for or not), since it could not be judged before the parent came
        todo = [
            (r.block_hash, r.block_hash in unrequested)
            for r in batch.outcomes
            if isinstance(r, AcceptResult)
            and r.status in (AcceptStatus.CONNECTED, AcceptStatus.STORED)
        ]
        while todo and self.orphans:
            parent, pushed = todo.pop()
            children = self.orphans.take_children(parent)
            if not children:
                continue
            sub = self._accept_batch(children, {c.hash for c in children} if pushed else ())
            batch.connected.extend(sub.connected)
            batch.disconnected.extend(sub.disconnected)
            batch.invalid.extend(sub.invalid)
            batch.commit_seconds += sub.commit_seconds
            for outcome, h in zip(sub.outcomes, (c.hash for c in children), strict=True):
                if isinstance(outcome, ValidationError):
                    log.info("orphan block %s rejected: %s", short_hash(h), outcome)
                    batch.invalid.append((h, outcome.code))
                elif outcome.status in (AcceptStatus.CONNECTED, AcceptStatus.STORED):
                    todo.append((h, pushed))
        return batch

    def _accept_batch(self, blocks: list[Block], unrequested: Collection[bytes]) -> BatchResult:
        outcomes: list[AcceptResult | ValidationError] = []
        stored: list[tuple[int, BlockIndexEntry, AcceptResult]] = []
        for block in blocks:
            try:
                outcome = self._store_block(block, block.hash not in unrequested)
            except ValidationError as exc:
                outcomes.append(exc)
                continue
            if isinstance(outcome, BlockIndexEntry):
                result = AcceptResult(block.hash, AcceptStatus.STORED)
                stored.append((len(outcomes), outcome, result))
                outcomes.append(result)
            else:
                outcomes.append(outcome)
        batch = BatchResult(outcomes)
        if stored:
            try:
                activation = self.activate_best_chain()
            finally:
                self._flush_unsaved()
                for block in self._recent.values():
                    self._decoded.put(block)
                self._recent.clear()
            batch.connected, batch.disconnected = activation.connected, activation.disconnected
            batch.invalid = activation.invalid
            batch.commit_seconds = activation.commit_seconds
        for i, entry, result in stored:
            if entry.status == BlockStatus.INVALID:
                outcomes[i] = BlockValidationError(entry.failure, "block failed to connect")
            elif self.on_active_chain(entry):
                result.status = AcceptStatus.CONNECTED
        return batch

    def _store_block(self, block: Block, requested: bool = True) -> BlockIndexEntry | AcceptResult:
        """Check a block without its chain context and keep it in memory for the
        next activation, which writes it; returns its entry, or the outcome
        (orphan, duplicate, ignored) when there is nothing to activate."""
        h = block.hash
        entry = self.index.get(h)
        if entry is not None and entry.status == BlockStatus.INVALID:
            raise BlockValidationError(entry.failure or "invalid", "known invalid block")
        if entry is not None and (entry.status != BlockStatus.HEADER or h in self._recent):
            return AcceptResult(h, AcceptStatus.DUPLICATE)
        if entry is None and block.header.prev_hash not in self.index:
            check_orphan_pow(block.header, self.params)
            self.orphans.add(block, self.clock())
            return AcceptResult(h, AcceptStatus.ORPHAN)
        is_new = entry is None
        if entry is None:
            entry = self._check_new_header(block.header)
        if not requested and not self._worth_storing(entry):
            log.debug("unrequested block %s ignored", short_hash(h))
            return AcceptResult(h, AcceptStatus.IGNORED)
        try:
            rules.check_block(block)
        except BlockValidationError as exc:
            if exc.code not in rules.MUTATION_CODES:
                if is_new:
                    self.index.add(entry)
                self._mark_invalid(entry, exc.code)
            raise
        if is_new:
            self.index.add(entry)
        entry.status = BlockStatus.DATA
        self._recent[h] = block
        self._unsaved[h] = entry
        self._update_have_chain(entry)
        return entry

    def _worth_storing(self, entry: BlockIndexEntry) -> bool:
        """A block that came unasked is kept only if it could become the tip soon (Core's
        AcceptBlock): at least the tip's work, at most MAX_UNREQUESTED_AHEAD blocks above
        it, and the network's minimum chain work.  Anything else comes again by headers."""
        tip = self.tip
        return (
            entry.chain_work >= tip.chain_work
            and entry.height <= tip.height + MAX_UNREQUESTED_AHEAD
            and entry.chain_work >= self.params.min_chain_work
        )

    def _write_unsaved(self, txn: lmdb.Transaction[bytes]) -> None:
        for h, entry in self._unsaved.items():
            txn.put(h, entry.record(), db=self._db["index"])
            txn.put(h, self._recent[h].raw, db=self._db["blocks"])

    def _flush_unsaved(self) -> None:
        """Write blocks that no activation committed (side branches, failures)."""
        if self._unsaved:
            with self._store.env.begin(write=True) as txn:
                self._write_unsaved(txn)
            self._unsaved.clear()

    def _update_have_chain(self, entry: BlockIndexEntry) -> None:
        """Propagate 'all ancestors have data' from ``entry`` to its stored descendants."""
        if entry.parent is not None and not entry.parent.have_chain:
            return
        todo = [entry]
        while todo:
            e = todo.pop()
            if e.status not in (BlockStatus.DATA, BlockStatus.VALID) or e.have_chain:
                continue
            e.have_chain = True
            if e.chain_work > self.tip.chain_work:
                self._candidates.add(e)
            todo.extend(self.index.children.get(e.hash, ()))

    # --- switching branches ---------------------------------------------------------

    def _best_candidate(self) -> BlockIndexEntry | None:
        best = None
        for e in self._candidates:
            if best is None or (e.chain_work, -e.seq) > (best.chain_work, -best.seq):
                best = e
        return best

    def activate_best_chain(self) -> AcceptResult:
        """Switch to the valid branch with the most work, one transaction per switch."""
        total = AcceptResult(b"", AcceptStatus.STORED)
        while True:
            best = self._best_candidate()
            if best is None or best.chain_work <= self.tip.chain_work:
                break
            path, fork = self._path_from_fork(best)
            if path is None:
                continue
            started = time.perf_counter()
            try:
                connected, disconnected, committing = self._switch(fork, path)
            except _ConnectFailed as failed:
                log.warning(
                    "block %s height=%d invalid: %s",
                    short_hash(failed.entry.hash),
                    failed.entry.height,
                    failed.error,
                )
                self._mark_invalid(failed.entry, failed.error.code)
                total.invalid.append((failed.entry.hash, failed.error.code))
                continue
            total.connected.extend(connected)
            total.disconnected.extend(disconnected)
            total.commit_seconds += committing
            elapsed = (time.perf_counter() - started) * 1000
            if disconnected:
                log.info(
                    "reorg: disconnected %d, connected %d blocks; tip %s height=%d (%.0f ms)",
                    len(disconnected),
                    len(connected),
                    short_hash(self.tip.hash),
                    self.height,
                    elapsed,
                )
            else:
                for block in connected:
                    log.debug("connected block %s txs=%d", short_hash(block.hash), len(block.txs))
                log.info(
                    "connected block %s height=%d txs=%d (%.0f ms)",
                    short_hash(self.tip.hash),
                    self.height,
                    len(connected[-1].txs),
                    elapsed,
                )
        self._candidates = {
            e
            for e in self._candidates
            if e.chain_work > self.tip.chain_work and e.status != BlockStatus.INVALID
        }
        return total

    def _path_from_fork(
        self, best: BlockIndexEntry
    ) -> tuple[list[BlockIndexEntry] | None, BlockIndexEntry]:
        """Entries from just above the fork with the active chain up to ``best``."""
        path = []
        entry = best
        while not self.on_active_chain(entry):
            if entry.status == BlockStatus.INVALID:
                self._mark_invalid(best, "bad-prevblk")
                return None, entry
            path.append(entry)
            assert entry.parent is not None, "genesis is on the active chain"
            entry = entry.parent
        path.reverse()
        return path, entry

    def _load_block(self, txn: lmdb.Transaction[bytes], entry: BlockIndexEntry) -> Block:
        """A stored block: from this call, the cache, or (decoded as our own) the database."""
        block = self._recent.get(entry.hash) or self._decoded.get(entry.hash)
        if block is None:
            raw = txn.get(entry.hash, db=self._db["blocks"])
            assert raw is not None, "a block on a branch being connected is stored"
            block = Block.from_stored(raw)
            self._decoded.put(block)
        return block

    def _switch(
        self, fork: BlockIndexEntry, path: list[BlockIndexEntry]
    ) -> tuple[list[Block], list[Block], float]:
        """Disconnect down to ``fork`` and connect ``path`` in one write transaction: the
        blocks connected and disconnected, and the seconds the commit took."""
        stats = self.utxo_stats.copy()
        connected: list[Block] = []
        disconnected: list[Block] = []
        pending: list[tuple[BlockIndexEntry, VerifyJob, int]] = []  # signature checks running
        outstanding = 0  # checks in ``pending``
        try:
            with self._store.env.begin(write=True) as txn:
                self._write_unsaved(txn)
                for entry in reversed(self.chain[fork.height + 1 :]):
                    block = self._load_block(txn, entry)
                    self._disconnect_block(txn, entry, block, stats)
                    disconnected.append(block)
                for entry in path:
                    block = self._load_block(txn, entry)
                    try:
                        checks = self._connect_block(txn, entry, block, stats)
                    except ValidationError as exc:
                        # a bad signature in an earlier block comes first
                        self._wait_pending(pending)
                        raise _ConnectFailed(entry, exc) from None
                    if checks:  # verified on the pool while the next block connects
                        pending.append((entry, self.verifier.start(checks), len(checks)))
                        outstanding += len(checks)
                        if outstanding > SIGNATURE_BATCH:
                            outstanding = self._wait_pending(pending)
                    if entry.status != BlockStatus.VALID:  # in memory only after the commit
                        txn.put(entry.hash, entry.record(BlockStatus.VALID), db=self._db["index"])
                    connected.append(block)
                self._wait_pending(pending)
                txn.put(b"tip", path[-1].hash, db=self._db["meta"])
                txn.put(b"utxostats", stats.record(), db=self._db["meta"])
                committing = time.perf_counter()  # leaving the block commits
            committing = time.perf_counter() - committing
        finally:
            for _, job, _ in pending:  # a failure abandoned the switch: stop their checks
                job.cancel()
        # committed: now mirror it in memory
        self._unsaved.clear()
        for entry in path:
            entry.status = BlockStatus.VALID
        self.chain = self.chain[: fork.height + 1] + path
        self.utxo_stats = stats
        return connected, disconnected, committing

    def _connect_block(
        self, txn: lmdb.Transaction[bytes], entry: BlockIndexEntry, block: Block, stats: UtxoStats
    ) -> list:
        """Apply ``block`` inside ``txn`` (``connect.connect_block``); its signature checks."""
        return connect_block(
            txn,
            self._db,
            block,
            entry.hash,
            entry.height,
            median_time_past(entry.parent),
            self.params,
            stats,
            self.reader.height_of,
            self.verified,
        )

    @staticmethod
    def _wait_pending(pending: list[tuple[BlockIndexEntry, VerifyJob, int]]) -> int:
        """Finish every pending block's signature checks, helping the pool with all of them
        first (waiting on one job while another's chunks sit unclaimed would idle this
        thread); raise for the first block, in chain order, with an invalid signature.
        Empties ``pending``; returns 0 (the checks now outstanding)."""
        for _, job, _ in pending:
            job.help()
        while pending:
            entry, job, _ = pending.pop(0)
            try:
                job.wait()
            except ValidationError as exc:
                raise _ConnectFailed(entry, BlockValidationError(exc.code, exc.message)) from None
        return 0

    def _disconnect_block(
        self, txn: lmdb.Transaction[bytes], entry: BlockIndexEntry, block: Block, stats: UtxoStats
    ) -> None:
        """Undo ``block`` inside ``txn`` with its stored undo data."""
        disconnect_block(txn, self._db, block, entry.hash, entry.height, stats)

    # --- invalidity ------------------------------------------------------------------

    def _mark_invalid(self, entry: BlockIndexEntry, code: str) -> None:
        """Mark ``entry`` and all its descendants invalid, persistently."""
        marked = []
        for e in self.index.subtree(entry):
            if e.status != BlockStatus.INVALID:
                e.status = BlockStatus.INVALID
                e.failure = code if e is entry else "bad-prevblk"
                marked.append(e)
            self._candidates.discard(e)
        with self._store.env.begin(write=True) as txn:
            for e in marked:
                txn.put(e.hash, e.record(), db=self._db["index"])
        if (
            self.index.best_header is not None
            and self.index.best_header.status == BlockStatus.INVALID
        ):
            self.index.recompute_best_header()

    def invalidate_block(self, block_hash: bytes) -> AcceptResult:
        """Treat a block as invalid (Bitcoin: invalidateblock) and follow the best other branch."""
        entry = self.index.get(block_hash)
        if entry is None:
            raise KeyError(block_hash)
        if entry.height == 0:
            raise ValueError("cannot invalidate the genesis block")
        result = AcceptResult(block_hash, AcceptStatus.STORED)
        if self.on_active_chain(entry):
            parent = entry.parent
            assert parent is not None  # not genesis
            # Every entry with data and more work than the fork point may now win.
            connected, disconnected = self._switch_back(parent)
            result.disconnected.extend(disconnected)
        self._mark_invalid(entry, "manually-invalidated")
        for e in self.index.values():
            if (
                e.have_chain
                and e.status != BlockStatus.INVALID
                and e.chain_work > self.tip.chain_work
            ):
                self._candidates.add(e)
        result.merge(self.activate_best_chain())
        return result

    def _switch_back(self, fork: BlockIndexEntry) -> tuple[list[Block], list[Block]]:
        stats = self.utxo_stats.copy()
        disconnected = []
        with self._store.env.begin(write=True) as txn:
            for entry in reversed(self.chain[fork.height + 1 :]):
                block = self._load_block(txn, entry)
                self._disconnect_block(txn, entry, block, stats)
                disconnected.append(block)
            txn.put(b"utxostats", stats.record(), db=self._db["meta"])
        self.chain = self.chain[: fork.height + 1]
        self.utxo_stats = stats
        return [], disconnected

    def reconsider_block(self, block_hash: bytes) -> AcceptResult:
        """Clear invalidity of a block, its ancestors and descendants (Bitcoin: reconsiderblock)."""
        entry = self.index.get(block_hash)
        if entry is None:
            raise KeyError(block_hash)
        cleared = [e for e in self.index.subtree(entry) if e.status == BlockStatus.INVALID]
        e = entry.parent
        while e is not None:
            if e.status == BlockStatus.INVALID:
                cleared.append(e)
            e = e.parent
        with self._store.env.begin(write=True) as txn:
            for e in cleared:
                has_data = txn.get(e.hash, db=self._db["blocks"]) is not None
                e.status = BlockStatus.DATA if has_data else BlockStatus.HEADER
                e.failure = ""
                txn.put(e.hash, e.record(), db=self._db["index"])
        for e in sorted(cleared, key=lambda x: x.height):
            e.have_chain = False
            self._update_have_chain(e)
        self.index.recompute_best_header()
        return self.activate_best_chain()

    # --- txindex ----------------------------------------------------------------------

    def merge_recent_txindex(self, threshold: int | None = None) -> int:
        """Move the ``txrecent`` entries into ``txindex`` (one write transaction) if there
        are at least ``threshold`` (default TXRECENT_MERGE; and any); return how many moved.

        Connects write to the small ``txrecent`` so that a block's entries dirty few
        pages; the node calls this on the chain thread after it has relayed a change,
        so a merge's commit (~1 page of ``txindex`` per entry) follows a switch
        instead of lengthening it (docs/design.md, "Storage")."""
        recent = self._db["txrecent"]
        with self._store.env.begin() as txn:
            if txn.stat(recent)["entries"] < max(
                1, TXRECENT_MERGE if threshold is None else threshold
            ):
                return 0
        started = time.perf_counter()
        with self._store.env.begin(write=True) as txn:
            entries = list(txn.cursor(db=recent))
            txn.cursor(db=self._db["txindex"]).putmulti(entries)
            txn.drop(recent, delete=False)
        log.debug(
            "merged %d txrecent entries into txindex (%.0f ms)",
            len(entries),
            (time.perf_counter() - started) * 1000,
        )
        return len(entries)
