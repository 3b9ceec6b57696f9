"""The pool of valid unconfirmed transactions.

A transaction enters only if it is valid against the UTXO set plus the pool
(unconfirmed parents allowed), pays at least the minimum fee rate, keeps every
package within Bitcoin Core's limits (25 transactions and 101 kB of ancestors,
the same of descendants: ``packages.py``) and spends nothing another pool
transaction spends, unless it replaces those transactions with a strictly
higher fee rate and a higher total fee (replace-by-fee).  The pool is capped
by its estimated memory use (as Bitcoin Core's ``-maxmempool``): the lowest
fee rates are evicted first, with their descendants, and the fee rate a
newcomer must pay rises above the evicted rate, decaying back by half every
ROLLING_FEE_HALFLIFE (faster while the pool is less than half full), so a
full pool is not churned by one eviction scan per cheap transaction.  Entries
expire after a time.  Entries are compact (``entry.py``) and carry their
package totals, kept up to date as entries come and go; block templates take
packages by ancestor fee rate (``template.py``).

Fee rates are in base units per byte of the transaction's encoding.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import cast

from node.chain.chainstate import ChainState
from node.consensus import rules
from node.consensus.sigcheck import JOB_CHUNK, SignatureVerifier, VerifyJob
from node.mempool.entry import MempoolEntry, decoded_usage, outpoint_key
from node.mempool.packages import (
    DEFAULT_LIMITS,
    PackageLimits,
    ancestors_of,
    ancestors_within_limits,
    check_descendant_limits,
    descendants_of,
)
from node.mempool.template import select_packages
from node.primitives.block import Block
from node.primitives.errors import (
    MempoolConflictError,
    MissingInputsError,
    ObolError,
    PolicyError,
    TxValidationError,
)
from node.primitives.tx import Coin, OutPoint, Transaction

log = logging.getLogger("obol.mempool")

# base units per byte a tx must pay to enter (Bitcoin: minrelaytxfee)
MIN_FEE_RATE = 1
MAX_MEMPOOL_USAGE = 32_000_000  # bytes of memory the pool may use (Bitcoin: maxmempool, 300 MB)
# bytes of heap (estimated) for the newest entries kept decoded too, beside the pool's own
# cap: rebuilding a compact block or a template then decodes none of them again
DECODED_MAX_BYTES = 16_000_000
# seconds before an unconfirmed tx is dropped (Bitcoin: mempoolexpiry)
MEMPOOL_EXPIRY = 14 * 24 * 3600
# seconds for the post-eviction fee floor to halve (Bitcoin: same)
ROLLING_FEE_HALFLIFE = 12 * 3600


class Mempool:
    """Unconfirmed transactions, checked against a ``ChainState``."""

    def __init__(
        self,
        chain: ChainState,
        verifier: SignatureVerifier | None = None,
        min_fee_rate: int = MIN_FEE_RATE,
        max_usage: int = MAX_MEMPOOL_USAGE,
        expiry: int = MEMPOOL_EXPIRY,
        clock: Callable[[], float] = time.time,
        after_read: Callable[[], object] | None = None,
        limits: PackageLimits = DEFAULT_LIMITS,
        decoded_max_bytes: int = DECODED_MAX_BYTES,
    ) -> None:
        self.chain = chain
        self.params = chain.params
        self.verifier = verifier or chain.verifier
        self.min_fee_rate = min_fee_rate
        self.max_usage = max_usage
        self.expiry = expiry
        self.limits = limits
        self.clock = clock
        self.after_read = after_read or (lambda: None)  # called after each tx's UTXO reads
        self.entries: dict[bytes, MempoolEntry] = {}
        # txid -> decoded transaction, for the newest entries (``tx``), within
        # ``decoded_max_bytes`` of estimated heap (``decoded_bytes``; not in ``usage``)
        self._decoded: OrderedDict[bytes, Transaction] = OrderedDict()
        self.decoded_max_bytes = decoded_max_bytes
        self.decoded_bytes = 0
        self.spenders: dict[bytes, bytes] = {}  # outpoint_key -> txid of the pool tx spending it
        self._tip_time: tuple = (None, 0)  # (tip entry, its median time past), see _prepare
        self.rolling_fee_rate = 0.0  # floor raised by evictions (base units/byte)
        self.rolling_updated = clock()  # unix seconds when it was last decayed
        self.bytes = 0  # sum of the entries' encoded sizes
        # bumped at every change of the entries: a block template selected at an older
        # revision is stale (``mining.warm.WarmTemplate``)
        self.revision = 0
        # estimated heap bytes of the entries (the cap's measure)
        self.usage = 0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, txid: bytes) -> bool:
        return txid in self.entries

    def get(self, txid: bytes) -> MempoolEntry | None:
        return self.entries.get(txid)

    def tx(self, txid: bytes) -> Transaction | None:
        """The pool's transaction ``txid``, decoded (kept so for the newest entries)."""
        tx = self._decoded.get(txid)
        if tx is not None:
            return tx
        entry = self.entries.get(txid)
        return entry.tx if entry is not None else None

    def spender(self, outpoint: OutPoint) -> bytes | None:
        """The txid of the pool transaction spending ``outpoint``, if any."""
        return self.spenders.get(outpoint_key(outpoint.txid, outpoint.index))

    # --- acceptance --------------------------------------------------------------------

    def accept(self, tx: Transaction, test_only: bool = False) -> MempoolEntry:
        """Validate ``tx`` and add it (unless ``test_only``); raise with a reject code otherwise."""
        entry, checks, replaced, ancestors = self._prepare(tx)
        self.verifier.verify(checks)
        self.chain.verified.add([tx.txid])
        if test_only:
            return entry
        self._remove_set(replaced)
        self._add(entry, tx, ancestors)
        if replaced:
            log.info("tx %s replaced %d transaction(s)", tx.txid.hex()[:16], len(replaced))
        self._trim()
        if tx.txid not in self.entries:
            raise PolicyError("mempool-full", "fee rate too low to enter the full mempool")
        return entry

    def accept_many(self, txs: list[Transaction]) -> list[MempoolEntry | ObolError]:
        """Accept several transactions, verifying their signatures as ONE parallel batch.

        Each gets its entry or the error it raised.  A transaction is added
        before its signatures are checked (so a child later in the batch finds
        its parent) and taken out again, with its descendants, if they fail.
        Replacements (RBF) are checked at once instead: they evict others.
        A transaction refused as a conflict while the batch held one whose
        signatures then failed is judged again once that one is gone: a forged
        spend must not shut out the real one behind it.
        """
        outcomes: list[MempoolEntry | ObolError] = []
        pending: list[tuple[int, MempoolEntry, list]] = []
        jobs: list[VerifyJob] = []  # verifying on the pool while the rest is prepared
        unstarted: list = []  # checks not yet handed to a job
        with self.chain.reader.reading() as txn:  # one snapshot for the batch's coin reads
            for tx in txs:
                try:
                    entry, checks, replaced, ancestors = self._prepare(tx, txn)
                    if replaced:
                        outcomes.append(self.accept(tx))
                        continue
                except ObolError as exc:
                    outcomes.append(exc)
                    continue
                self._add(entry, tx, ancestors)
                pending.append((len(outcomes), entry, checks))
                outcomes.append(entry)
                unstarted.extend(checks)
                if len(unstarted) >= JOB_CHUNK:
                    jobs.append(self.verifier.start(unstarted))
                    unstarted = []
        try:
            self.verifier.verify(unstarted)
            for job in jobs:
                job.help()
            for job in jobs:
                job.wait()
            self.chain.verified.add([entry.txid for _, entry, _ in pending])
        except TxValidationError:
            for job in jobs:
                job.cancel()
            orphaned: set[bytes] = set()  # children of a transaction whose signature failed
            for i, entry, checks in pending:
                if entry.txid in orphaned:
                    outcomes[i] = MissingInputsError(
                        message="spends a transaction refused in the same batch"
                    )
                    continue
                try:
                    self.verifier.verify(checks)
                except TxValidationError as exc:
                    outcomes[i] = exc
                    orphaned.update(tx.txid for tx in self.remove_with_descendants([entry.txid]))
                else:
                    self.chain.verified.add([entry.txid])
            self._retry_conflicts(txs, outcomes)
        self._trim()
        for i, entry, _ in pending:
            if outcomes[i] is entry and entry.txid not in self.entries:
                outcomes[i] = PolicyError(
                    "mempool-full", "fee rate too low to enter the full mempool"
                )
        return outcomes

    def _retry_conflicts(
        self, txs: list[Transaction], outcomes: list[MempoolEntry | ObolError]
    ) -> None:
        """After a batch lost transactions to bad signatures: judge again, in order, each
        one refused as a conflict (its conflict may have been one of those)."""
        for i, (tx, outcome) in enumerate(zip(txs, outcomes, strict=True)):
            if isinstance(outcome, MempoolConflictError):
                try:
                    outcomes[i] = self.accept(tx)
                except ObolError as exc:
                    outcomes[i] = exc

    def _prepare(
        self, tx: Transaction, txn=None
    ) -> tuple[MempoolEntry, list, set[bytes], set[bytes]]:
        """Every check but the signatures: the entry, its signature checks, the txids
        it would replace and its in-pool ancestors; coins are read in ``txn`` if given.
        Raises with a reject code."""
        if tx.txid in self.entries:
            raise PolicyError("txn-already-in-mempool", "transaction already in the mempool")
        rules.check_transaction(tx)
        if tx.is_coinbase:
            raise TxValidationError("coinbase", "a coinbase cannot be relayed")
        tip, median_time = self._tip_and_median_time()
        next_height = tip.height + 1
        rules.check_tx_final(tx, next_height, median_time)
        conflicts: set[bytes] = set()
        parents: set[bytes] = set()
        coins: list[Coin | None] = []
        outpoints = [txin.outpoint for txin in tx.inputs]
        chain_coins = self.chain.reader.get_coins(outpoints, txn)
        self.after_read()
        for outpoint, chain_coin in zip(outpoints, chain_coins, strict=True):
            spender = self.spenders.get(outpoint_key(outpoint.txid, outpoint.index))
            if spender is not None:
                conflicts.add(spender)
            parent = self.entries.get(outpoint.txid)
            if parent is not None:
                parents.add(outpoint.txid)
                coins.append(self._pool_coin(parent, outpoint.index, next_height))
            else:
                coins.append(chain_coin)
        # A confirmed transaction's inputs are spent (by itself): only then is the
        # transaction index worth a look, off the path of every new transaction.
        if None in coins and self.chain.reader.get_tx_location(tx.txid) is not None:
            raise PolicyError("txn-already-known", "transaction already confirmed")
        fee = rules.check_tx_inputs(tx, coins, next_height, self.params)
        if fee < self.min_fee_rate * tx.size:
            raise PolicyError(
                "min-fee-not-met", f"fee {fee} < {self.min_fee_rate} per byte × {tx.size} bytes"
            )
        floor = self.current_min_fee_rate()
        if fee < floor * tx.size:
            raise PolicyError(
                "mempool-min-fee-not-met",
                f"the pool is full: fee {fee} < {floor:.3f} per byte × {tx.size} bytes",
            )
        replaced = self._check_replacement(tx, fee, conflicts, parents) if conflicts else set()
        # Package limits once the replaced entries are gone (they are never its ancestors:
        # it spends none of them, and they take their descendants with them).
        ancestors = ancestors_within_limits(self.entries, parents, tx.size, self.limits)
        check_descendant_limits(self.entries, ancestors, tx.size, self.limits, replaced)
        found = cast(list[Coin], coins)  # check_tx_inputs raised if one was missing
        checks = rules.signature_checks(tx, found, self.params.network_id)
        entry = MempoolEntry.create(tx, fee, found, self.clock(), parents)
        return entry, checks, replaced, ancestors

    def _tip_and_median_time(self):
        """The tip and its median time past, computed once per tip (not per transaction)."""
        tip = self.chain.tip
        if self._tip_time[0] is not tip:
            self._tip_time = (tip, self.chain.median_time_past(tip))
        return self._tip_time

    @staticmethod
    def _pool_coin(parent: MempoolEntry, index: int, next_height: int) -> Coin | None:
        """Output ``index`` of a pool transaction as the coin a child spends (None if absent)."""
        out = parent.output(index)
        return Coin(out.amount, out.addr_hash, next_height, False) if out is not None else None

    def _check_replacement(
        self, tx: Transaction, fee: int, conflicts: set[bytes], parents: set[bytes]
    ) -> set[bytes]:
        """The txids ``tx`` evicts by replace-by-fee, or raise txn-mempool-conflict."""
        replaced = self._with_descendants(conflicts)
        if replaced & parents:
            raise MempoolConflictError(message="spends an output of a transaction it replaces")
        rate = fee / tx.size
        for txid in conflicts:
            if rate <= self.entries[txid].fee_rate:
                raise MempoolConflictError(
                    message=f"conflicts with {txid.hex()} and does not pay a higher fee rate"
                )
        replaced_fees = sum(self.entries[t].fee for t in replaced)
        if fee < replaced_fees + self.min_fee_rate * tx.size:
            raise MempoolConflictError(message="replacement does not pay for the fees it replaces")
        return replaced

    def _add(self, entry: MempoolEntry, tx: Transaction, ancestors: set[bytes]) -> None:
        """Put ``entry`` in the pool, with its package totals and its ``ancestors``'."""
        txid = entry.txid
        for ancestor in ancestors:
            self._update_descendants(self.entries[ancestor], 1, entry.size)
        if ancestors:
            size = sum(self.entries[a].size for a in ancestors)
            fees = sum(self.entries[a].fee for a in ancestors)
            entry.add_to_relatives(len(ancestors), size, fees, 0, 0)
        self.entries[txid] = entry
        self._keep_decoded(tx)
        self.revision += 1
        for txin in tx.inputs:
            self.spenders[outpoint_key(txin.prev_txid, txin.prev_index)] = txid
        for parent in entry.parents:
            self._link(self.entries[parent], "child_set", txid, add=True)
        self.bytes += entry.size
        self.usage += entry.usage()

    def _keep_decoded(self, tx: Transaction) -> None:
        """Keep ``tx`` decoded, forgetting the oldest decodings beyond the byte bound."""
        cost = decoded_usage(tx)
        if cost > self.decoded_max_bytes:
            return
        self._decoded[tx.txid] = tx
        self.decoded_bytes += cost
        while self.decoded_bytes > self.decoded_max_bytes:
            self.decoded_bytes -= decoded_usage(self._decoded.popitem(last=False)[1])

    def _update_descendants(self, entry: MempoolEntry, count: int, size: int) -> None:
        """Add to ``entry``'s descendant totals, keeping the pool's usage right."""
        self.usage -= entry.usage()
        entry.add_to_relatives(0, 0, 0, count, size)
        self.usage += entry.usage()

    def _update_ancestors(self, entry: MempoolEntry, count: int, size: int, fees: int) -> None:
        """Add to ``entry``'s ancestor totals, keeping the pool's usage right."""
        self.usage -= entry.usage()
        entry.add_to_relatives(count, size, fees, 0, 0)
        self.usage += entry.usage()

    def _remove_set(self, txids: set[bytes]) -> list[MempoolEntry]:
        """Take out ``txids``, which hold all their pool descendants (evicted, expired,
        replaced, conflicting, or refused in a batch): only the ancestors left behind
        lose descendants, each found while the links still stand (Core's RemoveStaged)."""
        for txid in txids:
            entry = self.entries[txid]
            for ancestor in ancestors_of(self.entries, txid) - txids:
                self._update_descendants(self.entries[ancestor], -1, -entry.size)
        return [self._unlink(txid) for txid in txids]

    def _remove_confirmed(self, txid: bytes, tx: Transaction) -> MempoolEntry | None:
        """Take out ``txid``, just confirmed: its pool descendants stay, one ancestor fewer.
        Its own pool ancestors were confirmed before it (a block orders parents first)."""
        entry = self.entries.get(txid)
        if entry is None:
            return None
        for descendant in descendants_of(self.entries, txid):
            self._update_ancestors(self.entries[descendant], -1, -entry.size, -entry.fee)
        for ancestor in ancestors_of(self.entries, txid):  # none when blocks come in order
            self._update_descendants(self.entries[ancestor], -1, -entry.size)
        return self._unlink(txid, tx)

    def _unlink(self, txid: bytes, tx: Transaction | None = None) -> MempoolEntry:
        """Take ``txid`` out of the pool's maps and its relatives' links (its package totals
        and theirs are the caller's); ``tx`` (its decoding) spares decoding it again."""
        entry = self.entries[txid]
        self.usage -= entry.usage()
        del self.entries[txid]
        if (decoded := self._decoded.pop(txid, None)) is not None:
            self.decoded_bytes -= decoded_usage(decoded)
        self.revision += 1
        keys = (
            entry.input_keys()
            if tx is None
            else [outpoint_key(i.prev_txid, i.prev_index) for i in tx.inputs]
        )
        for key in keys:
            if self.spenders.get(key) == txid:
                del self.spenders[key]
        for parent in entry.parents:
            if parent in self.entries:
                self._link(self.entries[parent], "child_set", txid, add=False)
        for child in entry.children:
            if child in self.entries:
                self._link(self.entries[child], "parent_set", txid, add=False)
        self.bytes -= entry.size
        return entry

    def _link(self, entry: MempoolEntry, which: str, txid: bytes, add: bool) -> None:
        """Add ``txid`` to (or drop it from) ``entry``'s parent or child set, keeping the
        pool's usage right; an empty set is dropped (most entries have none)."""
        self.usage -= entry.usage()
        members = getattr(entry, which)
        if add:
            if members is None:
                members = set()
                setattr(entry, which, members)
            members.add(txid)
        elif members is not None:
            members.discard(txid)
            if not members:
                setattr(entry, which, None)
        self.usage += entry.usage()

    def _with_descendants(self, txids: Iterable[bytes]) -> set[bytes]:
        result: set[bytes] = set()
        todo = list(txids)
        while todo:
            txid = todo.pop()
            if txid in result or txid not in self.entries:
                continue
            result.add(txid)
            todo.extend(self.entries[txid].children)
        return result

    def remove_with_descendants(self, txids: Iterable[bytes]) -> list[Transaction]:
        return [entry.tx for entry in self._remove_set(self._with_descendants(txids))]

    def _trim(self) -> None:
        """Evict the lowest fee rates (with their descendants) until under ``max_usage``;
        newcomers must then pay more than the evicted rate (the rolling floor)."""
        while self.usage > self.max_usage and self.entries:
            worst = min(self.entries.values(), key=lambda e: e.fee_rate)
            removed = self.remove_with_descendants([worst.txid])
            self.current_min_fee_rate()  # decay first, then raise
            self.rolling_fee_rate = max(self.rolling_fee_rate, worst.fee_rate + self.min_fee_rate)
            log.info(
                "mempool full: evicted %d tx(s) at fee rate %.2f; new ones must pay %.2f",
                len(removed),
                worst.fee_rate,
                self.rolling_fee_rate,
            )

    def current_min_fee_rate(self) -> float:
        """The fee rate (base units/byte) a new transaction must pay: the minimum, or the
        floor the last evictions raised, halving every ROLLING_FEE_HALFLIFE (every half or
        quarter of it while the pool is under a half or a quarter of its cap)."""
        now = self.clock()
        if self.rolling_fee_rate > 0:
            halflife: float = ROLLING_FEE_HALFLIFE
            if self.usage < self.max_usage / 4:
                halflife /= 4
            elif self.usage < self.max_usage / 2:
                halflife /= 2
            self.rolling_fee_rate *= 0.5 ** ((now - self.rolling_updated) / halflife)
            if self.rolling_fee_rate < self.min_fee_rate / 2:
                self.rolling_fee_rate = 0.0
        self.rolling_updated = now
        return max(float(self.min_fee_rate), self.rolling_fee_rate)

    def expire(self) -> list[Transaction]:
        """Drop transactions older than ``expiry`` seconds (with their descendants)."""
        cutoff = self.clock() - self.expiry
        return self.remove_with_descendants([t for t, e in self.entries.items() if e.time < cutoff])

    # --- following the chain -----------------------------------------------------------

    def block_connected(self, block: Block) -> None:
        """Remove the block's transactions and every pool transaction that now conflicts."""
        conflicts = []
        for tx in block.txs:
            entry = self._remove_confirmed(tx.txid, tx)
            if entry is None and not tx.is_coinbase:
                for txin in tx.inputs:
                    spender = self.spenders.get(outpoint_key(txin.prev_txid, txin.prev_index))
                    if spender is not None:
                        conflicts.append(spender)
        if conflicts:
            removed = self.remove_with_descendants(conflicts)
            log.info(
                "dropped %d mempool tx(s) conflicting with block %s",
                len(removed),
                block.hash.hex()[:16],
            )

    def update_for_chain(self, connected: list[Block], disconnected: list[Block]) -> None:
        """Follow a tip change: blocks connected and (in a reorg) disconnected, tip first."""
        if not disconnected:
            for block in connected:
                self.block_connected(block)
            return
        # A reorg: the transactions of disconnected blocks come back, oldest block first,
        # then everything is re-checked against the new chain.
        previous = sorted(self.entries.values(), key=lambda e: e.time)
        returning = [tx for block in reversed(disconnected) for tx in block.txs[1:]]
        previous_txs = [self.tx(e.txid) or e.tx for e in previous]
        self.entries.clear()
        self._decoded.clear()
        self.decoded_bytes = 0
        self.revision += 1
        self.spenders.clear()
        self.bytes = self.usage = 0
        arrived = {e.txid: e.time for e in previous}
        dropped = 0
        floor, self.rolling_fee_rate = self.rolling_fee_rate, 0.0  # they were here before it rose
        for tx in returning + previous_txs:
            try:
                entry = self.accept(tx)
            except (TxValidationError, PolicyError, MissingInputsError):
                dropped += 1
                continue
            if tx.txid in arrived:  # keep the arrival time: expiry counts from it
                entry.time = arrived[tx.txid]
        self.rolling_fee_rate = max(self.rolling_fee_rate, floor)
        log.info("mempool after reorg: %d tx(s), %d dropped", len(self.entries), dropped)

    # --- block template ------------------------------------------------------------------

    def select_for_block(self, max_bytes: int) -> tuple[list[Transaction], int]:
        """The best packages by ancestor fee rate within ``max_bytes``, each transaction
        after its pool parents; and their fees (``template.py``)."""
        chosen, fees = select_packages(self.entries, max_bytes)
        return [self._decoded.get(entry.txid) or entry.tx for entry in chosen], fees

    # --- views ---------------------------------------------------------------------------

    def touching(self, addr_hash: bytes) -> list[tuple[MempoolEntry, Transaction, list[Coin]]]:
        """Pool transactions paying or spending from ``addr_hash``, newest first, decoded
        with the coins they spend (a byte search picks the few worth decoding)."""
        found = []
        for entry in sorted(
            (e for e in self.entries.values() if e.may_touch(addr_hash)),
            key=lambda e: e.time,
            reverse=True,
        ):
            tx, spent = entry.tx, entry.spent
            if any(o.addr_hash == addr_hash for o in tx.outputs) or any(
                c.addr_hash == addr_hash for c in spent
            ):
                found.append((entry, tx, spent))
        return found

    # --- statistics ----------------------------------------------------------------------

    def fee_rate_histogram(
        self, edges: tuple[int, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
    ) -> list[dict]:
        buckets = [{"from": lo, "count": 0, "bytes": 0} for lo in (0,) + edges]
        for e in self.entries.values():
            i = sum(1 for edge in edges if e.fee_rate >= edge)
            buckets[i]["count"] += 1
            buckets[i]["bytes"] += e.size
        return buckets
