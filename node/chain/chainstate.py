"""Chain state: the block index, the active chain and the UTXO set in LMDB.

``ChainState.accept_block`` stores any block whose header is valid and then
follows the branch with the most cumulative work.  Switching branches
(disconnect to the fork point with undo data, connect the new branch) happens
in ONE LMDB write transaction; if a block of the new branch is invalid the
transaction is abandoned, the block and its descendants are marked invalid,
and the next best branch is tried.  A crash at any instant leaves the last
committed state, which is always consistent.

Not thread-safe for writers: the daemon calls every mutating method from one
thread.  Readers (``get_*``) open their own LMDB read transactions.
"""
from __future__ import annotations

import logging
import time

import lmdb
from contextlib import closing
from itertools import islice
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from node.consensus import rules
from node.primitives.block import Block, BlockHeader
from node.chain.blockcache import BlockCache
from node.primitives.encoding import decode, decode_stored, encode
from node.primitives.errors import BlockValidationError, ValidationError
from node.consensus.params import MEDIAN_TIME_SPAN, NetworkParams
from node.consensus.pow import asert_target, bits_to_target, block_work, hash_meets_target, target_to_bits
from node.consensus.sigcheck import SignatureVerifier, VerifyJob
from node.storage.store import (Store, coin_from_record, coin_fields, coin_key_prefix, height_key,
                    outpoint_from_record, parse_addr_hist)
from node.primitives.tx import Coin, OutPoint, Transaction
from node.chain.connect import (DIGEST_MODULUS, CoinFinder, TxLocator, UtxoStats, connect_block, disconnect_block,
                      stored_digest_term)

log = logging.getLogger("obol.chain")

STATUS_HEADER = 0    # header valid, block data not (yet) stored
STATUS_DATA = 1      # block data stored, never connected
STATUS_VALID = 2     # connected at least once: fully valid
STATUS_INVALID = 3   # the block or one of its ancestors breaks a rule
STATUS_NAMES = {STATUS_HEADER: "header-only", STATUS_DATA: "data", STATUS_VALID: "valid",
                STATUS_INVALID: "invalid"}
MAX_ORPHANS = 100          # blocks whose parent is unknown, kept until it arrives
MAX_LOCATOR_ENTRIES = 64   # hashes in a block locator
SCAN_CALLBACK_COINS = 4096  # coins of a UTXO-set scan between two calls of its callback
SIGNATURE_BATCH = 16_384   # signature checks of connected blocks left running before waiting for them
TXRECENT_MERGE = 2_000     # txrecent entries that make merge_recent_txindex move them into txindex


class BlockIndexEntry:
    """What the node knows of one header; lives in memory and in the ``index`` db."""

    __slots__ = ("header", "hash", "height", "chain_work", "status", "seq", "parent",
                 "anchor", "failure", "have_chain")

    def __init__(self, header: BlockHeader, height: int, chain_work: int, status: int, seq: int,
                 parent: "BlockIndexEntry | None", failure: str = "") -> None:
        self.header = header            # the header itself
        self.hash = header.hash         # its sha256d
        self.height = height            # blocks between it and genesis
        self.chain_work = chain_work    # sum of block_work from genesis to here
        self.status = status            # STATUS_*
        self.seq = seq                  # arrival order: ties in work go to the first seen
        self.parent = parent            # parent entry (None for genesis)
        self.failure = failure          # reject code if invalid
        # ASERT anchor: the branch's block at height 1 (None below height 1)
        self.anchor = self if height == 1 else (parent.anchor if parent is not None else None)
        # True if this block and all its ancestors have data stored
        self.have_chain = False

    def record(self, status: int | None = None) -> bytes:
        """The ``index`` db value; ``status`` overrides the in-memory one (written before commit)."""
        return encode([self.header.to_list(), self.height, self.chain_work.to_bytes(32, "big"),
                       self.status if status is None else status, self.seq, self.failure])

    def ancestor(self, height: int) -> "BlockIndexEntry":
        entry = self
        while entry.height > height:
            entry = entry.parent
        return entry


@dataclass
class AcceptResult:
    """What ``accept_block`` did, so the mempool, miner, relay and wallet can react."""
    block_hash: bytes
    status: str                                            # connected | stored | orphan | duplicate
    connected: list[Block] = field(default_factory=list)     # joined the active chain, in order
    disconnected: list[Block] = field(default_factory=list)  # left it, tip first
    invalid: list[tuple[bytes, str]] = field(default_factory=list)  # blocks found invalid

    def merge(self, other: "AcceptResult") -> None:
        self.connected.extend(other.connected)
        self.disconnected.extend(other.disconnected)
        self.invalid.extend(other.invalid)


@dataclass
class BatchResult:
    """What ``accept_blocks`` did: each block's outcome and the batch's tip change."""
    outcomes: list                                           # AcceptResult or ValidationError, per block
    connected: list[Block] = field(default_factory=list)     # joined the active chain, in order
    disconnected: list[Block] = field(default_factory=list)  # left it, tip first
    invalid: list[tuple[bytes, str]] = field(default_factory=list)  # blocks found invalid


class _ConnectFailed(Exception):
    def __init__(self, entry: BlockIndexEntry, error: ValidationError) -> None:
        super().__init__(error.code)
        self.entry, self.error = entry, error


class ChainState:
    """The block index, the active chain and the UTXO set of one datadir."""

    def __init__(self, datadir: Path, params: NetworkParams,
                 verifier: SignatureVerifier | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.params = params
        self.store = Store(Path(datadir), params.name)
        self.db = self.store.db
        self.verifier = verifier or SignatureVerifier()
        self._own_verifier = verifier is None
        self.clock = clock
        self.index: dict[bytes, BlockIndexEntry] = {}
        self.children: dict[bytes, list[BlockIndexEntry]] = {}
        self.chain: list[BlockIndexEntry] = []
        self.best_header: BlockIndexEntry | None = None  # valid header with the most work (Bitcoin: pindexBestHeader)
        self.utxo_stats = UtxoStats()
        self.orphans: dict[bytes, tuple[Block, float]] = {}
        self._candidates: set[BlockIndexEntry] = set()
        self._recent: dict[bytes, Block] = {}   # blocks accepted in this call: no re-decoding
        self._decoded = BlockCache()            # blocks of earlier calls, for the next reorg
        self._unsaved: dict[bytes, BlockIndexEntry] = {}  # stored in memory, written by the next commit
        self._utxo_info: dict | None = None     # the last utxo_set_info (for its tip)
        self._seq = 0
        self._load()

    # --- start-up ------------------------------------------------------------------

    def _load(self) -> None:
        with self.store.env.begin() as txn:
            records = [decode_stored(v) for _, v in txn.cursor(db=self.db["index"])]
            tip_hash = txn.get(b"tip", db=self.db["meta"])
            stats = txn.get(b"utxostats", db=self.db["meta"])
        if not records:
            self._write_genesis()
            return
        records.sort(key=lambda r: r[1])
        for header_list, height, work, status, seq, failure in records:
            header = BlockHeader.from_list(header_list)
            parent = self.index.get(header.prev_hash)
            entry = BlockIndexEntry(header, height, int.from_bytes(work, "big"), status, seq,
                                    parent, failure)
            self._add_entry(entry)
            entry.have_chain = status in (STATUS_DATA, STATUS_VALID) and (
                parent is None or parent.have_chain)
            self._seq = max(self._seq, seq + 1)
        self._recompute_best_header()
        count, amount = decode(stats)
        self.utxo_stats = UtxoStats(count, amount)
        tip = self.index[tip_hash]
        self.chain = [tip]
        while self.chain[-1].parent is not None:
            self.chain.append(self.chain[-1].parent)
        self.chain.reverse()
        for entry in self.index.values():
            if entry.have_chain and entry.status != STATUS_INVALID and entry.chain_work > tip.chain_work:
                self._candidates.add(entry)
        if self._candidates:
            # blocks stored with more work than the tip but not connected (a crash came
            # between storing and switching): connect them now, as Bitcoin Core does at start-up
            self.activate_best_chain()
        log.info("loaded chain %s: height=%d tip=%s utxos=%d", self.params.name, self.height,
                 short(tip.hash), self.utxo_stats.count)

    def _write_genesis(self) -> None:
        genesis = self.params.genesis
        target = bits_to_target(genesis.header.bits)
        entry = BlockIndexEntry(genesis.header, 0, block_work(target), STATUS_VALID, 0, None)
        entry.have_chain = True
        with self.store.env.begin(write=True) as txn:
            txn.put(entry.hash, entry.record(), db=self.db["index"])
            txn.put(entry.hash, genesis.raw, db=self.db["blocks"])
            txn.put(height_key(0), entry.hash, db=self.db["chain"])
            txn.put(b"tip", entry.hash, db=self.db["meta"])
            txn.put(b"utxostats", self.utxo_stats.record(), db=self.db["meta"])
        self._add_entry(entry)
        self._seq = 1
        self.chain = [entry]

    def _add_entry(self, entry: BlockIndexEntry) -> None:
        self.index[entry.hash] = entry
        self.children.setdefault(entry.header.prev_hash, []).append(entry)
        best = getattr(self, "best_header", None)
        if entry.status != STATUS_INVALID and (best is None or entry.chain_work > best.chain_work):
            self.best_header = entry

    def _recompute_best_header(self) -> None:
        """After invalidity changes: the valid header with the most work (first seen on ties)."""
        self.best_header = max((e for e in self.index.values() if e.status != STATUS_INVALID),
                               key=lambda e: (e.chain_work, -e.seq))

    def close(self) -> None:
        if self._own_verifier:
            self.verifier.close()
        self.store.close()

    # --- views ---------------------------------------------------------------------

    @property
    def tip(self) -> BlockIndexEntry:
        return self.chain[-1]

    @property
    def height(self) -> int:
        return len(self.chain) - 1

    def on_active_chain(self, entry: BlockIndexEntry) -> bool:
        return entry.height < len(self.chain) and self.chain[entry.height] is entry

    def median_time_past(self, entry: BlockIndexEntry | None) -> int:
        """Median timestamp of the MEDIAN_TIME_SPAN blocks ending at ``entry``."""
        times = []
        while entry is not None and len(times) < MEDIAN_TIME_SPAN:
            times.append(entry.header.timestamp)
            entry = entry.parent
        times.sort()
        return times[len(times) // 2]

    def next_bits(self, parent: BlockIndexEntry) -> int:
        """Compact target required of a child of ``parent`` (ASERT, anchored at height 1)."""
        p = self.params
        if not p.retarget or parent.height < 1:
            return p.genesis_bits
        anchor = parent.anchor
        target = asert_target(bits_to_target(anchor.header.bits),
                              parent.header.timestamp - anchor.header.timestamp,
                              parent.height - anchor.height,
                              p.target_spacing, p.asert_half_life, p.pow_limit)
        return target_to_bits(target)

    def header_context(self, parent: BlockIndexEntry) -> rules.HeaderContext:
        return rules.HeaderContext(self.next_bits(parent), self.median_time_past(parent),
                                   int(self.clock()))

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
                    self._add_entry(entry)
                    new.append(entry)
                elif entry.status == STATUS_INVALID:
                    raise BlockValidationError(entry.failure or "invalid", "known invalid block")
                entries.append(entry)
        finally:
            if new:
                with self.store.env.begin(write=True) as txn:
                    for entry in new:
                        txn.put(entry.hash, entry.record(), db=self.db["index"])
        return entries

    def _check_new_header(self, header: BlockHeader) -> BlockIndexEntry:
        parent = self.index.get(header.prev_hash)
        if parent is None:
            raise BlockValidationError("prev-blk-not-found", "parent header unknown")
        if parent.status == STATUS_INVALID:
            raise BlockValidationError("bad-prevblk", "parent is invalid")
        rules.validate_header(header, self.header_context(parent), self.params)
        work = parent.chain_work + block_work(bits_to_target(header.bits))
        entry = BlockIndexEntry(header, parent.height + 1, work, STATUS_HEADER, self._seq, parent)
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

    def accept_blocks(self, blocks: list[Block]) -> "BatchResult":
        """Accept several blocks with one activation: when they extend the active
        chain, all of them are connected (and stored) in ONE write transaction.

        Each block gets its own outcome (an AcceptResult or the ValidationError
        it raised); the tip change of the whole batch is in the BatchResult.
        """
        batch = self._accept_batch(blocks)
        todo = [r.block_hash for r in batch.outcomes
                if isinstance(r, AcceptResult) and r.status in ("connected", "stored")]
        while todo and self.orphans:
            parent = todo.pop()
            children = [k for k, (b, _) in self.orphans.items() if b.header.prev_hash == parent]
            if not children:
                continue
            sub = self._accept_batch([self.orphans.pop(k)[0] for k in children])
            batch.connected.extend(sub.connected)
            batch.disconnected.extend(sub.disconnected)
            batch.invalid.extend(sub.invalid)
            for outcome, h in zip(sub.outcomes, children):
                if isinstance(outcome, ValidationError):
                    log.info("orphan block %s rejected: %s", short(h), outcome)
                    batch.invalid.append((h, outcome.code))
                elif outcome.status in ("connected", "stored"):
                    todo.append(h)
        return batch

    def _accept_batch(self, blocks: list[Block]) -> "BatchResult":
        outcomes: list[AcceptResult | ValidationError] = []
        stored: list[tuple[int, BlockIndexEntry]] = []
        for block in blocks:
            try:
                outcome = self._store_block(block)
            except ValidationError as exc:
                outcomes.append(exc)
                continue
            if isinstance(outcome, BlockIndexEntry):
                stored.append((len(outcomes), outcome))
                outcomes.append(AcceptResult(block.hash, "stored"))
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
        for i, entry in stored:
            if entry.status == STATUS_INVALID:
                outcomes[i] = BlockValidationError(entry.failure, "block failed to connect")
            elif self.on_active_chain(entry):
                outcomes[i].status = "connected"
        return batch

    def _store_block(self, block: Block) -> "BlockIndexEntry | AcceptResult":
        """Check a block without its chain context and keep it in memory for the
        next activation, which writes it; returns its entry, or the outcome
        (orphan, duplicate) when there is nothing to activate."""
        h = block.hash
        entry = self.index.get(h)
        if entry is not None and entry.status == STATUS_INVALID:
            raise BlockValidationError(entry.failure or "invalid", "known invalid block")
        if entry is not None and (entry.status != STATUS_HEADER or h in self._recent):
            return AcceptResult(h, "duplicate")
        if entry is None and block.header.prev_hash not in self.index:
            self._check_orphan_pow(block.header)
            self._add_orphan(block)
            return AcceptResult(h, "orphan")
        is_new = entry is None
        if entry is None:
            entry = self._check_new_header(block.header)
        try:
            rules.check_block(block)
        except BlockValidationError as exc:
            if exc.code not in rules.MUTATION_CODES:
                if is_new:
                    self._add_entry(entry)
                self._mark_invalid(entry, exc.code)
            raise
        if is_new:
            self._add_entry(entry)
        entry.status = STATUS_DATA
        self._recent[h] = block
        self._unsaved[h] = entry
        self._update_have_chain(entry)
        return entry

    def _write_unsaved(self, txn) -> None:
        for h, entry in self._unsaved.items():
            txn.put(h, entry.record(), db=self.db["index"])
            txn.put(h, self._recent[h].raw, db=self.db["blocks"])

    def _flush_unsaved(self) -> None:
        """Write blocks that no activation committed (side branches, failures)."""
        if self._unsaved:
            with self.store.env.begin(write=True) as txn:
                self._write_unsaved(txn)
            self._unsaved.clear()

    def _update_have_chain(self, entry: BlockIndexEntry) -> None:
        """Propagate 'all ancestors have data' from ``entry`` to its stored descendants."""
        if entry.parent is not None and not entry.parent.have_chain:
            return
        todo = [entry]
        while todo:
            e = todo.pop()
            if e.status not in (STATUS_DATA, STATUS_VALID) or e.have_chain:
                continue
            e.have_chain = True
            if e.chain_work > self.tip.chain_work:
                self._candidates.add(e)
            todo.extend(self.children.get(e.hash, ()))

    # --- orphans ---------------------------------------------------------------------

    def _check_orphan_pow(self, header: BlockHeader) -> None:
        """The context-free part of the header check: junk must not flush the orphan pool."""
        target = bits_to_target(header.bits)  # raises bad-diffbits
        if target > self.params.pow_limit:
            raise BlockValidationError("bad-diffbits", "target above the proof-of-work limit")
        if not hash_meets_target(header.hash, target):
            raise BlockValidationError("high-hash", "proof of work does not meet the target")

    def _add_orphan(self, block: Block) -> None:
        if block.hash in self.orphans:
            return
        if len(self.orphans) >= MAX_ORPHANS:
            oldest = min(self.orphans, key=lambda k: self.orphans[k][1])
            del self.orphans[oldest]
        self.orphans[block.hash] = (block, self.clock())
        log.debug("orphan block %s (parent %s unknown)", short(block.hash), short(block.header.prev_hash))

    def orphan_root(self, block_hash: bytes) -> bytes | None:
        """The missing ancestor hash of an orphan chain, to ask peers for."""
        entry = self.orphans.get(block_hash)
        while entry is not None:
            prev = entry[0].header.prev_hash
            entry = self.orphans.get(prev)
            if entry is None:
                return prev
        return None

    # --- switching branches ---------------------------------------------------------

    def _best_candidate(self) -> BlockIndexEntry | None:
        best = None
        for e in self._candidates:
            if best is None or (e.chain_work, -e.seq) > (best.chain_work, -best.seq):
                best = e
        return best

    def activate_best_chain(self) -> AcceptResult:
        """Switch to the valid branch with the most work, one transaction per switch."""
        total = AcceptResult(b"", "stored")
        while True:
            best = self._best_candidate()
            if best is None or best.chain_work <= self.tip.chain_work:
                break
            path, fork = self._path_from_fork(best)
            if path is None:
                continue
            started = time.perf_counter()
            try:
                connected, disconnected = self._switch(fork, path)
            except _ConnectFailed as failed:
                log.warning("block %s height=%d invalid: %s", short(failed.entry.hash),
                            failed.entry.height, failed.error)
                self._mark_invalid(failed.entry, failed.error.code)
                total.invalid.append((failed.entry.hash, failed.error.code))
                continue
            total.connected.extend(connected)
            total.disconnected.extend(disconnected)
            elapsed = (time.perf_counter() - started) * 1000
            if disconnected:
                log.info("reorg: disconnected %d, connected %d blocks; tip %s height=%d (%.0f ms)",
                         len(disconnected), len(connected), short(self.tip.hash), self.height, elapsed)
            else:
                for block in connected:
                    log.debug("connected block %s txs=%d", short(block.hash), len(block.txs))
                log.info("connected block %s height=%d txs=%d (%.0f ms)", short(self.tip.hash),
                         self.height, len(connected[-1].txs), elapsed)
        self._candidates = {e for e in self._candidates
                            if e.chain_work > self.tip.chain_work and e.status != STATUS_INVALID}
        return total

    def _path_from_fork(self, best: BlockIndexEntry
                        ) -> tuple[list[BlockIndexEntry] | None, BlockIndexEntry]:
        """Entries from just above the fork with the active chain up to ``best``."""
        path = []
        entry = best
        while not self.on_active_chain(entry):
            if entry.status == STATUS_INVALID:
                self._mark_invalid(best, "bad-prevblk")
                return None, entry
            path.append(entry)
            entry = entry.parent
        path.reverse()
        return path, entry

    def _load_block(self, txn, entry: BlockIndexEntry) -> Block:
        """A stored block: from this call, the cache, or (decoded as our own) the database."""
        block = self._recent.get(entry.hash) or self._decoded.get(entry.hash)
        if block is None:
            block = Block.from_stored(txn.get(entry.hash, db=self.db["blocks"]))
            self._decoded.put(block)
        return block

    def _switch(self, fork: BlockIndexEntry, path: list[BlockIndexEntry]
                ) -> tuple[list[Block], list[Block]]:
        stats = self.utxo_stats.copy()
        connected: list[Block] = []
        disconnected: list[Block] = []
        pending: list[tuple[BlockIndexEntry, VerifyJob, int]] = []   # signature checks running
        outstanding = 0                                              # checks in ``pending``
        try:
            with self.store.env.begin(write=True) as txn:
                self._write_unsaved(txn)
                for entry in reversed(self.chain[fork.height + 1:]):
                    block = self._load_block(txn, entry)
                    self._disconnect_block(txn, entry, block, stats)
                    disconnected.append(block)
                for entry in path:
                    block = self._load_block(txn, entry)
                    try:
                        checks = self._connect_block(txn, entry, block, stats)
                    except ValidationError as exc:
                        self._wait_pending(pending)   # a bad signature in an earlier block comes first
                        raise _ConnectFailed(entry, exc) from None
                    if checks:    # verified on the pool while the next block connects
                        pending.append((entry, self.verifier.start(checks), len(checks)))
                        outstanding += len(checks)
                        if outstanding > SIGNATURE_BATCH:
                            outstanding = self._wait_pending(pending)
                    if entry.status != STATUS_VALID:  # in memory only after the commit
                        txn.put(entry.hash, entry.record(STATUS_VALID), db=self.db["index"])
                    connected.append(block)
                self._wait_pending(pending)
                txn.put(b"tip", path[-1].hash, db=self.db["meta"])
                txn.put(b"utxostats", stats.record(), db=self.db["meta"])
        finally:
            for _, job, _ in pending:     # a failure abandoned the switch: stop their checks
                job.cancel()
        # committed: now mirror it in memory
        self._unsaved.clear()
        for entry in path:
            entry.status = STATUS_VALID
        self.chain = self.chain[:fork.height + 1] + path
        self.utxo_stats = stats
        return connected, disconnected

    def _connect_block(self, txn, entry: BlockIndexEntry, block: Block, stats: UtxoStats) -> list:
        """Apply ``block`` inside ``txn`` (``utxoset.connect_block``); its signature checks."""
        return connect_block(txn, self.db, block, entry.hash, entry.height,
                             self.median_time_past(entry.parent), self.params, stats, self._height_of)

    def _height_of(self, block_hash: bytes) -> int | None:
        """The height of a known block (``utxoset.CoinFinder``), None if unknown."""
        entry = self.index.get(block_hash)
        return entry.height if entry is not None else None

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

    def _disconnect_block(self, txn, entry: BlockIndexEntry, block: Block, stats: UtxoStats) -> None:
        """Undo ``block`` inside ``txn`` with its stored undo data."""
        disconnect_block(txn, self.db, block, entry.hash, entry.height, stats)

    # --- invalidity ------------------------------------------------------------------

    def _mark_invalid(self, entry: BlockIndexEntry, code: str) -> None:
        """Mark ``entry`` and all its descendants invalid, persistently."""
        todo = [entry]
        marked = []
        while todo:
            e = todo.pop()
            if e.status != STATUS_INVALID:
                e.status = STATUS_INVALID
                e.failure = code if e is entry else "bad-prevblk"
                marked.append(e)
            self._candidates.discard(e)
            todo.extend(self.children.get(e.hash, ()))
        with self.store.env.begin(write=True) as txn:
            for e in marked:
                txn.put(e.hash, e.record(), db=self.db["index"])
        if self.best_header is not None and self.best_header.status == STATUS_INVALID:
            self._recompute_best_header()

    def invalidate_block(self, block_hash: bytes) -> AcceptResult:
        """Treat a block as invalid (Bitcoin: invalidateblock) and follow the best other branch."""
        entry = self.index.get(block_hash)
        if entry is None:
            raise KeyError(block_hash)
        if entry.height == 0:
            raise ValueError("cannot invalidate the genesis block")
        result = AcceptResult(block_hash, "stored")
        if self.on_active_chain(entry):
            parent = entry.parent
            # Every entry with data and more work than the fork point may now win.
            connected, disconnected = self._switch_back(parent)
            result.disconnected.extend(disconnected)
        self._mark_invalid(entry, "manually-invalidated")
        for e in self.index.values():
            if e.have_chain and e.status != STATUS_INVALID and e.chain_work > self.tip.chain_work:
                self._candidates.add(e)
        result.merge(self.activate_best_chain())
        return result

    def _switch_back(self, fork: BlockIndexEntry) -> tuple[list[Block], list[Block]]:
        stats = self.utxo_stats.copy()
        disconnected = []
        with self.store.env.begin(write=True) as txn:
            for entry in reversed(self.chain[fork.height + 1:]):
                block = self._load_block(txn, entry)
                self._disconnect_block(txn, entry, block, stats)
                disconnected.append(block)
            txn.put(b"utxostats", stats.record(), db=self.db["meta"])
        self.chain = self.chain[:fork.height + 1]
        self.utxo_stats = stats
        return [], disconnected

    def reconsider_block(self, block_hash: bytes) -> AcceptResult:
        """Clear invalidity of a block, its ancestors and descendants (Bitcoin: reconsiderblock)."""
        entry = self.index.get(block_hash)
        if entry is None:
            raise KeyError(block_hash)
        cleared = []
        todo = [entry]
        while todo:
            e = todo.pop()
            if e.status == STATUS_INVALID:
                cleared.append(e)
            todo.extend(self.children.get(e.hash, ()))
        e = entry.parent
        while e is not None:
            if e.status == STATUS_INVALID:
                cleared.append(e)
            e = e.parent
        with self.store.env.begin(write=True) as txn:
            for e in cleared:
                has_data = txn.get(e.hash, db=self.db["blocks"]) is not None
                e.status = STATUS_DATA if has_data else STATUS_HEADER
                e.failure = ""
                txn.put(e.hash, e.record(), db=self.db["index"])
        for e in sorted(cleared, key=lambda x: x.height):
            e.have_chain = False
            self._update_have_chain(e)
        self._recompute_best_header()
        return self.activate_best_chain()

    # --- queries ---------------------------------------------------------------------

    def get_block(self, block_hash: bytes) -> Block | None:
        with self.store.env.begin() as txn:
            raw = txn.get(block_hash, db=self.db["blocks"])
        return Block.from_stored(raw) if raw is not None else None

    def get_block_raw(self, block_hash: bytes) -> bytes | None:
        with self.store.env.begin() as txn:
            return txn.get(block_hash, db=self.db["blocks"])

    def get_coin(self, outpoint: OutPoint) -> Coin | None:
        return self.get_coins([outpoint])[0]

    def get_coins(self, outpoints: list[OutPoint], txn: "lmdb.Transaction | None" = None
                  ) -> list[Coin | None]:
        """The unspent coins at ``outpoints`` (None where spent or unknown), read in ``txn``
        if given (see ``reading``), else in a read transaction of their own."""
        if txn is None:
            with self.store.env.begin() as txn:
                return self.get_coins(outpoints, txn)
        # a cursor: Transaction.get in a read transaction releases the GIL for every key
        # (py-lmdb), and the event loop then keeps it for a switch interval (docs/design.md)
        find = CoinFinder(txn, self.db, self._height_of).key
        cursor = txn.cursor(db=self.db["utxo"])
        found, value = cursor.set_key, cursor.value
        coins: list[Coin | None] = []
        for txid, index in outpoints:
            key = find(txid, index)
            if key is None or not found(key):
                coins.append(None)
                continue
            raw = value()
            # a txindex entry left by a disconnected block can point at another tx's coin
            coins.append(coin_from_record(key, raw) if raw[-32:] == txid else None)
        return coins

    def reading(self) -> "lmdb.Transaction":
        """A read transaction to share among many reads (``with chain.reading() as txn``):
        one snapshot, begun once.  Only on the chain thread, and not across a change."""
        return self.store.env.begin()

    def get_tx_location(self, txid: bytes) -> tuple[bytes, int] | None:
        """(block hash, position) of a confirmed transaction on the active chain.

        A disconnect leaves its transactions' ``txindex`` entries (as Bitcoin Core's
        txindex does): an entry counts only if its block is on the active chain."""
        with self.store.env.begin() as txn:
            raw = TxLocator(txn, self.db).raw(txid)
            if raw is None:
                return None
            block_hash, pos = decode_stored(raw)
        entry = self.index.get(block_hash)
        if entry is None or not self.on_active_chain(entry):
            return None
        return block_hash, pos

    def merge_recent_txindex(self, threshold: int | None = None) -> int:
        """Move the ``txrecent`` entries into ``txindex`` (one write transaction) if there
        are at least ``threshold`` (default TXRECENT_MERGE; and any); return how many moved.

        Connects write to the small ``txrecent`` so that a block's entries dirty few
        pages; the node calls this on the chain thread after it has relayed a change,
        so a merge's commit (~1 page of ``txindex`` per entry) follows a switch
        instead of lengthening it (docs/design.md, "Storage")."""
        recent = self.db["txrecent"]
        with self.store.env.begin() as txn:
            if txn.stat(recent)["entries"] < max(1, TXRECENT_MERGE if threshold is None else threshold):
                return 0
        started = time.perf_counter()
        with self.store.env.begin(write=True) as txn:
            entries = list(txn.cursor(db=recent))
            txn.cursor(db=self.db["txindex"]).putmulti(entries)
            txn.drop(recent, delete=False)
        log.debug("merged %d txrecent entries into txindex (%.0f ms)", len(entries),
                  (time.perf_counter() - started) * 1000)
        return len(entries)

    def get_transaction(self, txid: bytes) -> tuple[Transaction, BlockIndexEntry] | None:
        loc = self.get_tx_location(txid)
        if loc is None:
            return None
        block = self.get_block(loc[0])
        return block.txs[loc[1]], self.index[loc[0]]

    def address_coins(self, addr_hash: bytes) -> list[tuple[OutPoint, Coin]]:
        """The unspent outputs paying ``addr_hash``, by outpoint.

        Every output paying an address was created by a transaction in that
        address's history (``addrhist``), so the coins are those transactions'
        unspent outputs (a ``utxo`` range per transaction: its keys start with its
        height and position) that pay it: no separate per-address coin index is
        written for every block."""
        found: dict[OutPoint, Coin] = {}
        with self.store.env.begin() as txn:
            utxo = txn.cursor(db=self.db["utxo"])
            for height, position, _ in self._history(addr_hash, None, txn):
                prefix = coin_key_prefix(height, position)
                if not utxo.set_range(prefix):
                    continue
                for key, value in utxo:
                    if not key.startswith(prefix):
                        break
                    if coin_fields(value)[1] == addr_hash:
                        found[outpoint_from_record(key, value)] = coin_from_record(key, value)
        return sorted(found.items())

    def _history(self, addr_hash: bytes, before_height: int | None, txn=None
                 ) -> Iterator[tuple[int, int, bytes]]:
        """(height, position, txid) touching an address below ``before_height``, newest
        first; in ``txn`` if given, else in a read transaction of its own."""
        if txn is None:
            with self.store.env.begin() as own:
                yield from self._history(addr_hash, before_height, own)
            return
        upper = addr_hash + height_key(before_height if before_height is not None else 2**64 - 1)
        cursor = txn.cursor(db=self.db["addrhist"])
        found = cursor.prev() if cursor.set_range(upper) else cursor.last()
        while found and cursor.key().startswith(addr_hash):
            yield from reversed(parse_addr_hist(cursor.key(), cursor.value()))
            found = cursor.prev()

    def address_history(self, addr_hash: bytes, limit: int = 50,
                        before_height: int | None = None) -> list[tuple[int, int, bytes]]:
        """Up to ``limit`` confirmed transactions touching an address, newest first."""
        with closing(self._history(addr_hash, before_height)) as items:
            return list(islice(items, limit))

    def address_history_page(self, addr_hash: bytes, limit: int, before_height: int | None
                             ) -> tuple[list[tuple[int, int, bytes]], int | None]:
        """A page of ``address_history`` completed to a block boundary (so paging by
        height skips nothing), and the ``before_height`` of the next page (None if last)."""
        page: list[tuple[int, int, bytes]] = []
        with closing(self._history(addr_hash, before_height)) as items:
            for item in items:
                if len(page) >= limit and item[0] != page[-1][0]:
                    return page, page[-1][0]
                page.append(item)
        return page, None

    def iter_utxos(self) -> Iterator[tuple[OutPoint, Coin]]:
        with self.store.env.begin() as txn:
            for key, value in txn.cursor(db=self.db["utxo"]):
                yield outpoint_from_record(key, value), coin_from_record(key, value)

    def utxo_digest(self) -> bytes:
        """The digest of the UTXO set at the tip (``utxoset.utxo_digest``, 32 bytes)."""
        return self.utxo_set_info()["digest"]

    def utxo_set_info(self, every_pages: Callable[[], object] = lambda: None) -> dict:
        """Tip, height, count, amount and digest of one snapshot of the UTXO set, from a
        scan (any thread: one read transaction, remembered until the tip changes).
        ``every_pages`` is called every SCAN_CALLBACK_COINS coins (the daemon's MapBudget:
        a scan maps the whole ``utxo`` tree, and with it most of the file)."""
        with self.store.env.begin() as txn:
            tip = txn.get(b"tip", db=self.db["meta"])
            cached = self._utxo_info
            if cached is not None and cached["tip"] == tip:
                return cached
            count = amount = total = 0
            for key, value in txn.cursor(db=self.db["utxo"]):   # one coin at a time
                count += 1
                if count % SCAN_CALLBACK_COINS == 0:
                    every_pages()
                amount += coin_fields(value)[0]
                total += stored_digest_term(key, value)
            digest = (total % DIGEST_MODULUS).to_bytes(32, "big")
        info = {"tip": tip, "height": self.index[tip].height, "count": count, "amount": amount,
                "digest": digest}
        self._utxo_info = info
        return info

    # --- locators and header sync ---------------------------------------------------------

    def locator(self, entry: BlockIndexEntry | None = None) -> list[bytes]:
        """Hashes going back from ``entry`` (default: tip) with doubling steps, ending at genesis."""
        entry = entry or self.tip
        hashes = []
        step = 1
        while entry is not None and len(hashes) < MAX_LOCATOR_ENTRIES - 1:
            hashes.append(entry.hash)
            if entry.height == 0:
                return hashes
            if len(hashes) >= 10:
                step *= 2
            entry = entry.ancestor(max(entry.height - step, 0))
        hashes.append(self.chain[0].hash)
        return hashes

    def find_fork(self, locator: list[bytes]) -> BlockIndexEntry:
        """The newest locator entry on the active chain (genesis if none)."""
        for h in locator:
            entry = self.index.get(h)
            if entry is not None and self.on_active_chain(entry):
                return entry
        return self.chain[0]

    def headers_after(self, locator: list[bytes], stop: bytes, limit: int) -> list[BlockHeader]:
        fork = self.find_fork(locator)
        headers = []
        for entry in self.chain[fork.height + 1: fork.height + 1 + limit]:
            headers.append(entry.header)
            if entry.hash == stop:
                break
        return headers

    def chain_tips(self) -> list[dict]:
        """Every branch tip: height, work, branch length, status (Bitcoin: getchaintips)."""
        tips = [e for e in self.index.values() if not self.children.get(e.hash)]
        if self.tip not in tips:
            tips.append(self.tip)
        out = []
        for e in tips:
            fork = e
            while not self.on_active_chain(fork):
                fork = fork.parent
            if e is self.tip:
                status = "active"
            elif e.status == STATUS_INVALID or self._branch_has(e, fork, STATUS_INVALID):
                status = "invalid"
            elif self._branch_has(e, fork, STATUS_HEADER):
                status = "headers-only"
            elif self._branch_has(e, fork, STATUS_DATA):
                status = "valid-headers"
            else:
                status = "valid-fork"
            out.append({"hash": e.hash.hex(), "height": e.height, "work": e.chain_work,
                        "branchlen": e.height - fork.height, "status": status})
        out.sort(key=lambda t: (t["status"] != "active", -t["height"]))
        return out

    @staticmethod
    def _branch_has(tip: BlockIndexEntry, fork: BlockIndexEntry, status: int) -> bool:
        e = tip
        while e is not fork:
            if e.status == status:
                return True
            e = e.parent
        return False


def short(block_hash: bytes) -> str:
    return block_hash.hex()[:16] + "…"
