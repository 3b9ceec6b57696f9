"""What ``inv``, ``getdata``, ``notfound``, ``tx``, ``block``, ``powblock`` mean; gossip policy.

* Transactions are relayed only once validated: announced by ``inv`` to peers
  not known to have them, in batches on each peer's Poisson timer (``trickle.py``),
  and sent on ``getdata``.
* A block that joins the active chain is pushed whole, at once, to every peer
  not known to have it (saving the inv/getdata round trip); peers may also
  fetch any stored block with ``getdata``.
* A new block that extends the tip is pushed on as ``powblock`` before it is
  validated, once its header and context-free checks hold (``early_relay.py``).
* A peer that sends something invalid under consensus rules, or malformed, is
  punished (``Misbehaviour``); one whose data merely arrives late, whose
  transaction conflicts with our mempool, or whose ``powblock`` failed only
  checks its sender could not make before relaying it, is not.
"""

from __future__ import annotations

import asyncio
import logging
import time

from network.peer import Peer
from network.permissions import PermissionFlag
from network.protocol import GRANTS_VERSION
from node.chain.chainstate import AcceptResult, AcceptStatus, ChainState
from node.chain.index import BlockStatus
from node.mempool.orphans import OrphanTxPool
from node.mempool.pool import Mempool
from node.p2p import punish
from node.p2p.compact import parse_blocktxn, parse_cmpctblock
from node.p2p.compact_relay import CompactRelay
from node.p2p.early_relay import EarlyRelay
from node.p2p.frames import FrameCache
from node.p2p.messages import (
    INV_BLOCK,
    INV_TX,
    MAX_INV,
    MSG_BLOCK,
    MSG_GETDATA,
    MSG_INV,
    MSG_MEMPOOL,
    MSG_NOTFOUND,
    MSG_TX,
    InvItem,
    inv_body,
    parse_block,
    parse_empty,
    parse_inv,
    parse_tx,
    payload_around,
)
from node.p2p.peerstate import BoundedSet, PeerTable
from node.p2p.ports import STAGE_DECODE, STAGE_EARLY_RELAY, NodePort, Punisher
from node.p2p.sync import BlockSync
from node.p2p.trickle import TxTrickle
from node.primitives.block import Block, short_hash
from node.primitives.crypto import sha256d
from node.primitives.errors import MissingInputsError, ObolError, ValidationError
from node.primitives.tx import Transaction

log = logging.getLogger("obol.relay")

# parents of one orphan asked for at once (Core: MAX_PEER_TX_REQUEST_IN_FLIGHT)
MAX_PARENTS_ASKED = 100
RECENT_REJECTS = 20_000  # txids remembered as invalid, not fetched again
# blocks pushed at once after a tip change (Bitcoin: MAX_BLOCKS_TO_ANNOUNCE)
MAX_BLOCKS_ANNOUNCED = 8
# bytes queued to a peer above which getdata waits (Core: 5 MB)
GETDATA_SEND_PAUSE = 4 * 1024 * 1024
# seconds a getdata is served before other tasks get a turn (as session.MAX_LOOP_HOLD)
GETDATA_TURN = 0.001


def block_payload(raw_block: bytes) -> bytes:
    """The ``block`` message payload built from stored bytes, without re-encoding."""
    return payload_around(MSG_BLOCK, raw_block)


class Relay:
    """Transaction and block gossip for one node."""

    def __init__(
        self,
        chain: ChainState,
        mempool: Mempool,
        peers: PeerTable,
        sync: BlockSync,
        early: EarlyRelay,
        compact: CompactRelay,
        trickle: TxTrickle,
        port: NodePort,
        punisher: Punisher,
    ) -> None:
        self.chain = chain
        self.mempool = mempool
        self.peers = peers
        self.sync = sync
        self.early = early
        self.compact = compact
        self.trickle = trickle
        self.port = port
        self.punisher = punisher
        self.rejects = BoundedSet(RECENT_REJECTS)  # invalid: never fetched again
        # refused at this tip (Core: m_recent_rejects)
        self.recent_rejects = BoundedSet(RECENT_REJECTS)
        # an orphan pushed out or expired is refused until the tip moves, not validated again
        self.orphans = OrphanTxPool(on_evict=self.recent_rejects.add)
        self.validating: set[bytes] = set()  # txids queued for the mempool, not yet decided
        self.frames = FrameCache()

    # --- inbound ---------------------------------------------------------------------------

    async def handle_inv(self, peer: Peer, body: object) -> None:
        items = _parse(parse_inv, body)
        state = self.peers.get(peer)
        if state is None:
            return
        wanted = []
        unknown_block = False
        for item in items:
            state.known.add(item.hash)
            if item.kind == INV_TX:
                if not self._tx_known(item.hash):
                    wanted.append(item)
            else:
                entry = self.chain.index.get(item.hash)
                if entry is None:
                    unknown_block = True
                else:
                    self.sync.saw_block(peer, entry)
        if wanted:
            peer.send(MSG_GETDATA, inv_body(wanted))
        if unknown_block:
            self.sync.request_headers(peer)
        else:
            self.sync.schedule()

    async def handle_getdata(self, peer: Peer, body: object) -> None:
        """Serve a ``getdata`` incrementally (Bitcoin Core: ``ProcessGetData``): for at most
        GETDATA_TURN seconds per turn of the event loop, so that every peer gets the same
        share of it whatever it asks; waiting while the peer's send queue holds
        GETDATA_SEND_PAUSE bytes or more, and stopping as soon as the peer is gone.  The
        peer's next message is read only once this one is served, as in Core."""
        items = _parse(parse_inv, body)
        missing = []
        clock = asyncio.get_running_loop().time
        turn_ends = clock() + GETDATA_TURN
        for item in items:
            if peer.closed:
                return
            if clock() >= turn_ends:
                await asyncio.sleep(0)  # the loop serves everyone else
                turn_ends = clock() + GETDATA_TURN
            await peer.wait_send_below(GETDATA_SEND_PAUSE)
            if item.kind == INV_BLOCK:
                frame = self._block_frame(item.hash)
                if frame is None:
                    missing.append(item)
                else:
                    peer.send_frame(frame)
                continue
            entry = self.mempool.get(item.hash)
            if entry is None:
                missing.append(item)
            # the pool keeps the checked bytes: send them as they are
            else:
                peer.send_frame(self.port.frame(payload_around(MSG_TX, entry.raw)))
        if missing and not peer.closed:
            peer.send(MSG_NOTFOUND, inv_body(missing))

    def _block_frame(self, block_hash: bytes) -> bytes | None:
        """The frame of a stored block to serve, from the cache of recent frames; None if
        it is not stored or known to break a rule (never hand such a block on)."""
        index_entry = self.chain.index.get(block_hash)
        if index_entry is not None and index_entry.status == BlockStatus.INVALID:
            return None

        def make() -> bytes | None:
            raw = self.chain.reader.get_block_raw(block_hash)
            if raw is None and (recent := self.compact.recent.get(block_hash)) is not None:
                # announced compact before we validated it (Core serves its most recent
                # block the same way); a peer asking for it whole after that is not
                # entitled to take it as validated (``handle_block``)
                raw = recent.raw
            return self.port.frame(block_payload(raw)) if raw is not None else None

        return self.frames.get(block_hash, make)

    async def handle_notfound(self, peer: Peer, body: object) -> None:
        items = _parse(parse_inv, body)
        blocks = [i.hash for i in items if i.kind == INV_BLOCK]
        self.compact.not_found(peer, blocks)
        self.sync.not_found(peer, blocks)

    async def handle_tx(self, peer: Peer, body: object, raw: bytes | None = None) -> None:
        # The id of the bytes as they came: a known transaction is not parsed again (a
        # 100 kB one takes ~1 ms).  Bytes that are not canonical cannot have a known id.
        if raw is not None and self._tx_known(txid := sha256d(raw)):
            self._peer_has(peer, txid)
            return
        tx = _parse(parse_tx, body, raw)
        self._peer_has(peer, tx.txid)
        if not self._tx_known(tx.txid):
            self._validate_tx(tx, peer)

    def _peer_has(self, peer: Peer, item: bytes) -> None:
        state = self.peers.get(peer)
        if state is not None:
            state.known.add(item)

    def _tx_known(self, txid: bytes) -> bool:
        """Seen before: in the pool, refused (for good, or since the tip last changed), or
        waiting for a parent.  Such a transaction is neither fetched nor validated again."""
        return (
            txid in self.mempool
            or txid in self.validating
            or txid in self.rejects
            or txid in self.recent_rejects
            or txid in self.orphans
        )

    def _validate_tx(self, tx: Transaction, peer: Peer) -> None:
        # Validated without holding the peer's next message, so a stream of
        # transactions is checked in batches (signatures in parallel).
        self.validating.add(tx.txid)
        self.port.queue_tx(tx, peer, lambda outcome: self._tx_outcome(peer, tx, outcome))

    def _tx_outcome(self, peer: Peer, tx: Transaction, outcome: object) -> None:
        self.validating.discard(tx.txid)
        if not isinstance(outcome, BaseException):
            return
        exc = outcome
        if not isinstance(exc, ObolError):
            log.error("tx %s from %s: internal error: %r", tx.txid.hex()[:16], peer.label, exc)
            return
        if isinstance(exc, MissingInputsError):
            self._keep_orphan(tx, peer)
            return
        verdict = punish.for_tx(exc)
        if not verdict.score:
            log.debug(
                "tx %s from %s not accepted: %s (%s)",
                tx.txid.hex()[:16],
                peer.label,
                exc,
                verdict.reason,
            )
            self.recent_rejects.add(tx.txid)
            return
        self.rejects.add(tx.txid)
        self.punisher.misbehaving(
            peer, verdict.score, exc.code, f"invalid tx {tx.txid.hex()}: {exc.message}"
        )

    def _keep_orphan(self, tx: Transaction, peer: Peer) -> None:
        """A transaction whose inputs are unknown: keep it for a while and ask its sender
        for the parents we lack (Bitcoin Core does the same)."""
        if peer.closed:
            return
        self.orphans.expire(time.monotonic())
        if not self.orphans.add(tx, peer.id, time.monotonic()):
            return
        wanted: list[InvItem] = []
        for parent in dict.fromkeys(txin.prev_txid for txin in tx.inputs):
            if len(wanted) == MAX_PARENTS_ASKED:
                break  # the rest once these came (the orphan is offered again, and asks on)
            if not self._tx_known(parent):
                wanted.append(InvItem(INV_TX, parent))
        log.debug(
            "tx %s from %s is an orphan (%d orphans); asking for %d parent(s)",
            tx.txid.hex()[:16],
            peer.label,
            len(self.orphans),
            len(wanted),
        )
        if wanted:
            peer.send(MSG_GETDATA, inv_body(wanted))

    def tx_accepted(self, tx: Transaction, source: Peer | None) -> None:
        """A transaction entered the mempool: announce it, and offer the orphans that spend
        it to the mempool again."""
        if source is not None:
            source.last_tx_time = time.monotonic()  # inbound eviction protects such peers
        self.announce_tx(tx, exclude=source)
        self._revisit_orphans([tx.txid])

    def tip_changed(self, connected: list[Block]) -> None:
        """The tip moved: what was refused against the old tip may be valid now, what a
        block confirmed is no orphan, and an orphan whose parent it confirmed may fit."""
        self.recent_rejects.clear()
        if not self.orphans:  # the usual case, and every block of a sync: nothing to look up
            return
        txids = [tx.txid for block in connected for tx in block.txs]
        self.orphans.forget(txids)
        self._revisit_orphans(txids)

    def _revisit_orphans(self, parents: list[bytes]) -> None:
        if not self.orphans:
            return
        for parent in parents:
            for orphan in self.orphans.children_of(parent):
                state = self.peers.by_id(orphan.peer)
                if state is not None:  # its sender still answers for it
                    self._validate_tx(orphan.tx, state.peer)

    async def on_disconnected(self, peer: Peer) -> None:
        """Forget a peer's orphans: nobody would answer for them."""
        self.orphans.peer_gone(peer.id)

    async def handle_block(self, peer: Peer, body: object, raw: bytes | None = None) -> None:
        """A block its sender validated (or that we asked for): any invalidity is its fault,
        unless we asked for it because its compact form did not rebuild (then it answers
        as for the compact block)."""
        block = self._parse_block(body, raw)
        state = self.peers.get(peer)
        after_compact = state is not None and block.hash in state.asked_whole
        await self._receive_block(peer, block, sender_validated=not after_compact)

    async def handle_cmpctblock(self, peer: Peer, body: object, raw: bytes | None = None) -> None:
        """A compact block (``compact_relay.py``): rebuilt from the mempool, it is received
        as a ``powblock`` (its sender may not have validated it)."""
        started = time.perf_counter()
        block = await self.compact.rebuild(peer, _parse(parse_cmpctblock, body, raw))
        if block is not None:
            self.port.block_stage(STAGE_DECODE, time.perf_counter() - started)
            await self._receive_block(peer, block, sender_validated=False)

    async def handle_blocktxn(self, peer: Peer, body: object, raw: bytes | None = None) -> None:
        started = time.perf_counter()
        block_hash, txs = _parse(parse_blocktxn, body, raw)
        block = self.compact.take_blocktxn(peer, block_hash, txs)
        if block is not None:
            self.port.block_stage(STAGE_DECODE, time.perf_counter() - started)
            await self._receive_block(peer, block, sender_validated=False)

    def relay_early(self, block: Block) -> None:
        """A block we mined, being validated now: push it to the peers that take blocks
        before validation (``early_relay.py``), with the same pre-relay checks."""
        self.early.on_block(block, sender_validated=True)

    async def handle_powblock(self, peer: Peer, body: object, raw: bytes | None = None) -> None:
        """A block relayed to us before its sender validated it (``early_relay.py``)."""
        await self._receive_block(peer, self._parse_block(body, raw), sender_validated=False)

    def _parse_block(self, body: object, raw: bytes | None) -> Block:
        started = time.perf_counter()
        block = _parse(parse_block, body, raw)
        self.port.block_stage(STAGE_DECODE, time.perf_counter() - started)
        return block

    async def _receive_block(self, peer: Peer, block: Block, sender_validated: bool) -> None:
        sync = self.sync
        asked = block.hash in sync.in_flight  # of any peer (Core: IsBlockRequested)
        requested = sync.block_arrived(peer, block.hash)
        state = self.peers.get(peer)
        if state is not None:
            state.known.add(block.hash)
        started = time.perf_counter()
        excused = self.early.on_block(block, sender_validated)
        self.port.block_stage(STAGE_EARLY_RELAY, time.perf_counter() - started)
        validated = self.port.queue_block(block, requested=asked)
        validated.add_done_callback(lambda done: self._block_outcome(peer, block, excused, done))
        if requested:
            # A download: don't hold this peer's next message until it is validated, so
            # blocks arriving meanwhile are accepted together in one batch.
            sync.schedule()
        else:
            await asyncio.wait([validated])

    def _block_outcome(
        self, peer: Peer, block: Block, excused: bool, done: asyncio.Future[AcceptResult]
    ) -> None:
        """The validation of ``block`` from ``peer`` ended: punish the peer if the block is
        invalid, unless it is ``excused`` (relayed early, and failed only what its sender
        could not check before relaying); else learn what the peer has."""
        sync = self.sync
        sync.block_validated(block.hash)
        sync.schedule()
        if done.cancelled() or isinstance(done.exception(), asyncio.CancelledError):
            return  # the node is stopping
        exc = done.exception()
        if isinstance(exc, ValidationError):
            verdict = punish.for_block(exc, relayed_early=excused)
            if verdict.score:
                self.punisher.misbehaving(
                    peer,
                    verdict.score,
                    exc.code,
                    f"invalid block {block.hash.hex()}: {exc.message}",
                )
            else:
                log.info(
                    "block %s from %s not accepted: %s (peer not punished: %s)",
                    short_hash(block.hash),
                    peer.label,
                    exc,
                    verdict.reason,
                )
            return
        if exc is not None:
            log.error(
                "block %s from %s: internal error: %r", short_hash(block.hash), peer.label, exc
            )
            return
        entry = self.chain.index.get(block.hash)
        if entry is not None:
            sync.saw_block(peer, entry)
        status = done.result().status
        if status == AcceptStatus.CONNECTED:
            peer.last_block_time = time.monotonic()  # inbound eviction protects such peers
            state = self.peers.get(peer)
            if state is not None:
                state.last_new_block = time.monotonic()  # early relay prefers such peers
            self.compact.new_tip_from(peer)
        elif status == AcceptStatus.ORPHAN:
            sync.request_headers(peer)

    # --- outbound ---------------------------------------------------------------------------

    def announce_blocks(self, blocks: list[Block]) -> None:
        """Push newly connected blocks to every peer that does not have them: compact to
        those that asked for compact blocks, whole to the others."""
        for block in blocks[-MAX_BLOCKS_ANNOUNCED:]:
            frame = None  # the whole block's, built for the first peer that needs it
            for state in self.peers.values():
                if block.hash in state.known:
                    continue
                if state.compact:
                    self.compact.send(state, block)
                    continue
                if frame is None:
                    frame = self.port.frame(block_payload(block.raw))
                    self.frames.put(block.hash, frame)  # the peers that lacked it may ask again
                state.known.add(block.hash)
                state.peer.send_frame(frame)

    async def on_established(self, peer: Peer) -> None:
        """Ask a new peer what its mempool holds, if it lets us (pools meet again after a
        partition): its `version` says so in ``grants``."""
        if peer.granted(PermissionFlag.MEMPOOL):
            peer.send(MSG_MEMPOOL, [])

    def request_mempools(self) -> None:
        """After catching up with the chain: ask every peer that lets us for its mempool
        again (transactions offered while we were behind could not be checked then)."""
        for state in self.peers.values():
            if state.peer.granted(PermissionFlag.MEMPOOL):
                state.peer.send(MSG_MEMPOOL, [])

    async def handle_mempool(self, peer: Peer, body: object) -> None:
        """Answer ``mempool`` with ``inv`` of every transaction in ours (Bitcoin: BIP35), to
        a peer with the MEMPOOL permission only: 22 bytes must not buy the whole pool's
        inventory.  Another peer asking is disconnected, not punished (Core does the same
        without ``-peerbloomfilters``); one older than GRANTS_VERSION, which asks every
        peer on connect, is only not answered."""
        _parse(parse_empty, body)
        if not peer.has_permission(PermissionFlag.MEMPOOL):
            if (peer.protocol_version or 0) < GRANTS_VERSION:
                return
            log.info("peer %s disconnected: mempool request without permission", peer.label)
            peer.close("mempool-not-permitted")
            return
        txids = list(self.mempool.entries)
        state = self.peers.get(peer)
        for start in range(0, len(txids), MAX_INV):
            chunk = txids[start : start + MAX_INV]
            if state is not None:
                for txid in chunk:
                    state.known.add(txid)
            peer.send(MSG_INV, inv_body([InvItem(INV_TX, t) for t in chunk]))

    def announce_tx(self, tx: Transaction, exclude: Peer | None = None) -> None:
        """Queue ``tx`` for the next ``inv`` to every peer but ``exclude`` (``trickle.py``)."""
        self.trickle.queue(tx.txid, exclude)


_parse = punish.parsed
