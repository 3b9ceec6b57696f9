"""The next block's template, kept warm on the chain thread between requests.

A template is the mempool's selection, a coinbase paying it, and a header on
the tip.  The selection is the costly part (the package heap, then decoding
each chosen transaction) and changes only when the mempool does, so it is
kept until the mempool's ``revision`` moves; a rebuild reuses the decoded
transactions of the last selection.  The tip's median time past and next
target are kept until the tip moves.  Only the coinbase (address, extra
nonce), the merkle root and the header are built per request.

A tip change that confirms or returns transactions changes the mempool
(``Mempool.update_for_chain``), so it moves the revision too; an empty block
leaves the selection as it was, and it is still right: what the pool
accepted for the old tip stays valid on a longer chain (finality and
maturity only grow with height).  Every block built here is still accepted
through ``ChainState.accept_blocks`` like any other.

A ``WarmTemplate`` is used on the chain thread only, like the chain and the
mempool it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from node.chain.chainstate import ChainState
from node.chain.index import BlockIndexEntry
from node.consensus.params import BLOCK_VERSION
from node.mempool.pool import Mempool
from node.mempool.template import select_packages
from node.primitives.block import MAX_BLOCK_SIZE, Block, BlockHeader, merkle_root
from node.primitives.tx import Transaction, TxOut, make_coinbase

NONCE_START = 1 << 32  # first nonce tried: from here on a nonce encodes as 9 bytes
COINBASE_RESERVE = 1_000  # bytes of the block kept free for the coinbase and header
TEMPLATE_BYTES = MAX_BLOCK_SIZE - COINBASE_RESERVE  # bytes of transactions a template takes


@dataclass(frozen=True)
class Selection:
    """The transactions a template takes from the mempool, at one revision of it."""

    revision: int  # the mempool's revision they were chosen at
    txs: tuple[Transaction, ...]  # the chosen transactions, each after its pool parents
    fees: int  # base units they pay


@dataclass(frozen=True)
class TipContext:
    """What a header on ``tip`` needs from the chain, computed once per tip."""

    tip: BlockIndexEntry  # the block the template builds on
    median_time_past: int  # unix seconds; the new block's timestamp must exceed it
    bits: int  # compact target the new block must meet


class WarmTemplate:
    """Builds templates on the tip, reusing the selection until the mempool changes."""

    def __init__(self, chain: ChainState, mempool: Mempool | None) -> None:
        self.chain = chain
        self.mempool = mempool  # None: templates hold only the coinbase
        self._selection: Selection | None = None  # the last selection, maybe stale
        self._context: TipContext | None = None  # the last tip's context, maybe stale
        self.rebuilds = 0  # selections made (tests and benchmarks count them)

    def selection(self) -> Selection:
        """The mempool's best transactions for the next block, rebuilt if it changed."""
        pool = self.mempool
        if pool is None:
            return Selection(0, (), 0)
        last = self._selection
        if last is not None and last.revision == pool.revision:
            return last
        chosen, fees = select_packages(pool.entries, TEMPLATE_BYTES)
        decoded = {tx.txid: tx for tx in last.txs} if last is not None else {}
        txs = tuple(decoded.get(e.txid) or pool.tx(e.txid) or e.tx for e in chosen)
        self._selection = Selection(pool.revision, txs, fees)
        self.rebuilds += 1
        return self._selection

    def tip_context(self) -> TipContext:
        """The current tip's median time past and next target."""
        tip = self.chain.tip
        context = self._context
        if context is None or context.tip is not tip:
            chain = self.chain
            context = TipContext(tip, chain.median_time_past(tip), chain.next_bits(tip))
            self._context = context
        return context

    def block(self, addr_hash: bytes, extra: bytes = b"", now: float | None = None) -> Block:
        """An unsolved block on the current tip paying subsidy + fees to ``addr_hash``."""
        chain = self.chain
        context = self.tip_context()
        selection = self.selection()
        height = context.tip.height + 1
        reward = chain.params.subsidy(height) + selection.fees
        coinbase = make_coinbase(height, [TxOut(reward, addr_hash)], extra)
        txs = [coinbase, *selection.txs]
        clock = now if now is not None else chain.clock()
        header = BlockHeader.create(
            BLOCK_VERSION,
            context.tip.hash,
            merkle_root([t.txid for t in txs]),
            max(int(clock), context.median_time_past + 1),
            context.bits,
            NONCE_START,
        )
        return Block.create(header, txs)
