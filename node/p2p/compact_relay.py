"""Compact block relay (Bitcoin: BIP152): who gets blocks compact, rebuilding them from the
mempool, fetching what is missing, serving ``getblocktxn``; the messages are in
``compact.py``.

* **Negotiation.** On connecting, each side sends ``sendcmpct [0, 1]`` to a peer of
  protocol version COMPACT_VERSION or later; a peer that did gets every block compact
  (``cmpctblock``) instead of whole.  A node asks the HIGH_BANDWIDTH_PEERS peers that
  last gave it a new tip for high-bandwidth mode (``sendcmpct [1, 1]``, and ``[0, 1]`` to
  the one that drops out): those push it a block's compact form before validating it,
  as ``powblock`` is pushed (``early_relay.py``).  Others get it once validated.
* **Rebuilding.** A ``cmpctblock`` whose header is valid on our tip is filled from the
  mempool by short id; what is missing, or matched by two pool transactions, is asked
  for with ``getblocktxn`` and the block is finished by ``blocktxn``.  A block whose
  merkle root then does not match (a short-id collision), or whose short ids repeat, is
  asked for whole with ``getdata``, without punishing anyone.
* **Punishment.** A compact block's sender answers for it as for a ``powblock``: for the
  header and the pre-relay checks, not for what only validation finds (Bitcoin Core
  exempts blocks received compact the same way); a ``blocktxn`` that does not answer
  the request, or a ``getblocktxn`` beyond the block, is punished.
* **Bounds.** At most MAX_PENDING_PER_PEER blocks per peer are being rebuilt, each for
  at most PENDING_TIMEOUT seconds and dropped on disconnect; ``getblocktxn`` is served
  for the MAX_BLOCKTXN_DEPTH newest blocks (deeper ones are sent whole, as Core does).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from network import Misbehaviour
from network.peer import Peer
from node.chain.chainstate import ChainState
from node.chain.index import BlockStatus
from node.consensus import rules
from node.mempool.pool import Mempool
from node.p2p import punish
from node.p2p.compact import (
    COMPACT_ENCODING,
    CompactBlock,
    PartialBlock,
    make_compact,
    parse_getblocktxn,
    parse_sendcmpct,
)
from node.p2p.messages import (
    INV_BLOCK,
    MSG_BLOCK,
    MSG_BLOCKTXN,
    MSG_CMPCTBLOCK,
    MSG_GETBLOCKTXN,
    MSG_GETDATA,
    MSG_NOTFOUND,
    MSG_SENDCMPCT,
    payload_around,
)
from node.p2p.peerstate import PeerState, PeerTable
from node.p2p.ports import NodePort
from node.primitives.block import Block, short_hash
from node.primitives.encoding import encode, encode_array
from node.primitives.errors import BlockValidationError, ValidationError
from node.primitives.tx import Transaction

log = logging.getLogger("obol.relay")

COMPACT_VERSION = 4  # lowest peer protocol version that speaks compact blocks
HIGH_BANDWIDTH_PEERS = 3  # peers asked to push compact blocks before validating them (Core: 3)
MAX_PENDING_PER_PEER = 2  # compact blocks of one peer being rebuilt at once
PENDING_TIMEOUT = 10.0  # seconds a rebuild waits for its ``blocktxn``
MAX_BLOCKTXN_DEPTH = 10  # blocks below the tip still served by getblocktxn (Core: 10)
RECENT_BLOCKS = 16  # blocks kept decoded to serve getblocktxn and compact frames
MATCH_CHUNK = 2_000  # mempool txids matched per turn of the event loop
_STORED = (BlockStatus.DATA, BlockStatus.VALID)  # a block whose data the store holds


@dataclass
class CompactStats:
    """Counters of compact block relay (``GET /metrics``, docs/api.md)."""

    received: int = 0  # cmpctblock messages received
    rebuilt: int = 0  # blocks rebuilt from the mempool alone
    rebuilt_after_request: int = 0  # blocks rebuilt after a getblocktxn
    requests: int = 0  # getblocktxn sent
    txs_requested: int = 0  # transactions asked for by them
    fallbacks: int = 0  # blocks asked for whole after their compact block
    sent: int = 0  # cmpctblock messages sent
    served: int = 0  # getblocktxn answered with blocktxn


@dataclass(frozen=True)
class Pending:
    """A compact block waiting for its ``blocktxn``."""

    partial: PartialBlock  # its slots, the missing ones empty
    timer: asyncio.TimerHandle  # drops it after PENDING_TIMEOUT


class CompactRelay:
    """Compact blocks for one node: negotiation, frames, rebuilding, serving."""

    def __init__(
        self,
        chain: ChainState,
        mempool: Mempool,
        peers: PeerTable,
        port: NodePort,
        request_headers: Callable[[Peer], None],
    ) -> None:
        self.chain = chain
        self.mempool = mempool
        self.peers = peers
        self.port = port
        self.request_headers = request_headers  # learn a block's chain by the usual sync
        self.stats = CompactStats()
        self.pending: dict[int, dict[bytes, Pending]] = {}  # peer id -> block hash -> rebuild
        self.high_bandwidth: list[int] = []  # peer ids asked for high-bandwidth, oldest first
        self.recent: OrderedDict[bytes, Block] = OrderedDict()  # block hash -> block
        self._frames: OrderedDict[bytes, bytes] = OrderedDict()  # block hash -> cmpctblock frame

    # --- negotiation ------------------------------------------------------------------------

    async def on_established(self, peer: Peer) -> None:
        if (peer.protocol_version or 0) >= COMPACT_VERSION:
            peer.send(MSG_SENDCMPCT, [0, COMPACT_ENCODING])

    async def handle_sendcmpct(self, peer: Peer, body: object) -> None:
        high, version = punish.parsed(parse_sendcmpct, body)
        state = self.peers.get(peer)
        if state is None or version != COMPACT_ENCODING:
            return  # another encoding: keep sending it whole blocks
        if (peer.protocol_version or 0) < COMPACT_VERSION:
            return  # its version says it cannot read them: whole blocks, whatever it asks
        state.compact = True
        state.compact_hb = high

    def new_tip_from(self, peer: Peer) -> None:
        """``peer`` gave us a block that became our tip: make it one of our high-bandwidth
        peers (Core: ``MaybeSetPeerAsAnnouncingHeaderAndIDs``)."""
        state = self.peers.get(peer)
        if state is None or not state.compact:
            return
        if peer.id in self.high_bandwidth:
            self.high_bandwidth.remove(peer.id)
            self.high_bandwidth.append(peer.id)
            return
        self.high_bandwidth.append(peer.id)
        peer.send(MSG_SENDCMPCT, [1, COMPACT_ENCODING])
        if len(self.high_bandwidth) > HIGH_BANDWIDTH_PEERS:
            dropped = self.peers.by_id(self.high_bandwidth.pop(0))
            if dropped is not None:
                dropped.peer.send(MSG_SENDCMPCT, [0, COMPACT_ENCODING])

    async def on_disconnected(self, peer: Peer) -> None:
        for pending in self.pending.pop(peer.id, {}).values():
            pending.timer.cancel()
        if peer.id in self.high_bandwidth:
            self.high_bandwidth.remove(peer.id)

    # --- sending ----------------------------------------------------------------------------

    def frame_for(self, block: Block) -> bytes:
        """The ``cmpctblock`` frame of ``block`` (one nonce per block, for every peer)."""
        frame = self._frames.get(block.hash)
        if frame is None:
            compact = make_compact(block, int.from_bytes(os.urandom(8), "big"))
            frame = self.port.frame(payload_around(MSG_CMPCTBLOCK, compact.encoded()))
            self._frames[block.hash] = frame
            if len(self._frames) > RECENT_BLOCKS:
                self._frames.popitem(last=False)
            self.remember(block)
        return frame

    def send(self, state: PeerState, block: Block) -> None:
        state.known.add(block.hash)
        state.peer.send_frame(self.frame_for(block))
        self.stats.sent += 1

    def remember(self, block: Block) -> None:
        self.recent[block.hash] = block
        self.recent.move_to_end(block.hash)
        if len(self.recent) > RECENT_BLOCKS:
            self.recent.popitem(last=False)

    # --- receiving --------------------------------------------------------------------------

    async def rebuild(self, peer: Peer, compact: CompactBlock) -> Block | None:
        """Rebuild a ``cmpctblock`` from the mempool; returns the block if complete, else
        None (asked for what is missing, or whole, or nothing to do).  Raises Misbehaviour
        for a header its sender should have refused."""
        self.stats.received += 1
        state = self.peers.get(peer)
        if state is None:
            return None
        header = compact.header
        state.known.add(header.hash)
        entry = self.chain.index.get(header.hash)
        if entry is not None and entry.status != BlockStatus.HEADER:
            return None  # stored already: being validated, valid or invalid
        parent = self.chain.index.get(header.prev_hash)
        if parent is None:
            # its parent is news to us: sync as usual, and take this block whole (it
            # waits as an orphan); its sender may not announce it again (Core: getheaders)
            self.request_headers(peer)
            self._ask_whole(state, header.hash)
            return None
        try:
            if parent.status == BlockStatus.INVALID:
                raise BlockValidationError("bad-prevblk", "parent is invalid")
            rules.validate_header(header, self.chain.header_context(parent), self.chain.params)
        except ValidationError as exc:
            verdict = punish.for_headers(exc)
            if verdict.score:
                message = f"compact block: {exc.message}"
                raise Misbehaviour(verdict.score, exc.code, message) from None
            return None
        if parent.hash != self.chain.tip.hash:
            # not on our tip (we are behind, or it forks): the mempool is no help, so take
            # it whole, as Core does for a block beyond its tip; a peer that pushed it
            # compact announces it to us no more, so waiting for headers could miss it
            self._ask_whole(state, header.hash)
            return None
        pending = self.pending.setdefault(peer.id, {})
        if header.hash in pending:
            return None
        partial = PartialBlock(compact)
        if partial.duplicate or len(pending) >= MAX_PENDING_PER_PEER:
            self._ask_whole(state, header.hash)
            return None
        await self._match_mempool(partial)
        missing = partial.missing()
        if not missing:
            block = self._finish(state, partial)
            self.stats.rebuilt += block is not None
            return block
        if peer.closed:
            return None
        timer = asyncio.get_running_loop().call_later(
            PENDING_TIMEOUT, self._expire, peer, header.hash
        )
        pending[header.hash] = Pending(partial, timer)
        peer.send(MSG_GETBLOCKTXN, [header.hash, missing])
        log.debug(
            "compact block %s from %s: %d of %d transactions missing, asked for",
            short_hash(header.hash),
            peer.label,
            len(missing),
            compact.tx_count,
        )
        self.stats.requests += 1
        self.stats.txs_requested += len(missing)
        return None

    async def _match_mempool(self, partial: PartialBlock) -> None:
        """Match the mempool's txids, a chunk per turn of the loop.  The keys are copied in
        one call (atomic under the GIL, as the loop's other single reads of the pool); a
        transaction gone before it is placed leaves its slot to ``getblocktxn``."""
        txids = list(self.mempool.entries)
        for start in range(0, len(txids), MATCH_CHUNK):
            if start:
                await asyncio.sleep(0)
            partial.match(txids[start : start + MATCH_CHUNK])
        partial.place(self._pool_tx)

    def _pool_tx(self, txid: bytes) -> Transaction | None:
        return self.mempool.tx(txid)

    def take_blocktxn(self, peer: Peer, block_hash: bytes, txs: list[Transaction]) -> Block | None:
        """The answer to our ``getblocktxn``: the block if it is now complete.  One nobody
        asked for is ignored (Core does the same); one of the wrong count is punished."""
        pending = self.pending.get(peer.id, {}).pop(block_hash, None)
        state = self.peers.get(peer)
        if pending is None or state is None:
            return None
        pending.timer.cancel()
        if not pending.partial.fill_missing(txs):
            raise Misbehaviour(
                punish.MISBEHAVING, "bad-blocktxn", f"{len(txs)} transactions, not as asked"
            )
        block = self._finish(state, pending.partial)
        self.stats.rebuilt_after_request += block is not None
        return block

    def _finish(self, state: PeerState, partial: PartialBlock) -> Block | None:
        block = partial.block()
        if block is None:
            log.info(
                "compact block %s from %s did not rebuild (short-id collision): asked whole",
                short_hash(partial.compact.header.hash),
                state.peer.label,
            )
            self._ask_whole(state, partial.compact.header.hash)
            return None
        self.remember(block)
        return block

    def _ask_whole(self, state: PeerState, block_hash: bytes) -> None:
        state.asked_whole.add(block_hash)
        state.peer.send(MSG_GETDATA, [[INV_BLOCK, block_hash]])
        self.stats.fallbacks += 1

    def _expire(self, peer: Peer, block_hash: bytes) -> None:
        """No ``blocktxn`` in time: forget the rebuild, learn the block by headers."""
        if self.pending.get(peer.id, {}).pop(block_hash, None) is not None and not peer.closed:
            self.request_headers(peer)

    def not_found(self, peer: Peer, block_hashes: list[bytes]) -> None:
        """``peer`` cannot serve these blocks: a rebuild waiting on one of them ends now,
        not at its timeout, and the block is learnt by headers (from any peer)."""
        pending = self.pending.get(peer.id, {})
        for block_hash in block_hashes:
            waiting = pending.pop(block_hash, None)
            if waiting is not None:
                waiting.timer.cancel()
                self.request_headers(peer)

    # --- serving ----------------------------------------------------------------------------

    async def handle_getblocktxn(self, peer: Peer, body: object) -> None:
        """Serve a block we announced compact: from the recent blocks first, whatever its
        validation has reached (we pushed it before validating it to high-bandwidth peers,
        which ask at once; Core serves ``m_most_recent_block`` the same way), else from
        the store if its data is there."""
        block_hash, indexes = punish.parsed(parse_getblocktxn, body)
        entry = self.chain.index.get(block_hash)
        block = self.recent.get(block_hash)
        if entry is not None and entry.status == BlockStatus.INVALID:
            block = None  # never hand on a block known to break a rule
        elif block is None and entry is not None and entry.status in _STORED:
            block = self.chain.reader.get_block(block_hash)
        if block is None:
            log.debug("getblocktxn for %s from %s: not found", short_hash(block_hash), peer.label)
            peer.send(MSG_NOTFOUND, [[INV_BLOCK, block_hash]])
            return
        if indexes and indexes[-1] >= len(block.txs):
            raise Misbehaviour(
                punish.MISBEHAVING,
                "bad-getblocktxn",
                f"index {indexes[-1]} of a block of {len(block.txs)} transactions",
            )
        if entry is not None and self.chain.tip.height - entry.height >= MAX_BLOCKTXN_DEPTH:
            # an old block is sent whole (Core does the same): no peer rebuilds it now
            peer.send_frame(self.port.frame(payload_around(MSG_BLOCK, block.raw)))
            return
        txs = encode_array([block.txs[i].raw for i in indexes])
        peer.send_frame(
            self.port.frame(payload_around(MSG_BLOCKTXN, encode_array([encode(block_hash), txs])))
        )
        self.stats.served += 1
