"""Headers-first block download.

On every new connection both sides send ``getheaders`` with a block locator.
Headers are validated and stored as they come (``ChainState.accept_headers``),
those of a chain with too little work only after a presync (``chain/presync.py``);
a full batch (MAX_HEADERS) asks for the next one.  Blocks on the branch with
the most work are then downloaded from every peer that has them, at most
MAX_BLOCKS_IN_FLIGHT per peer, within a moving window of DOWNLOAD_WINDOW
blocks above the tip.  A peer that has not delivered a requested block within
STALL_TIMEOUT seconds is disconnected (not banned: slow is not malicious) and
its requests go to other peers.

Scheduling costs O(1) per block: each peer keeps a cursor into the branch it
can serve, at the first block it never considered requesting.  A block whose
request came to nothing (its peer stalled, left or answered ``notfound``, or
the body did not match the header) is *released* and asked of the next peer
that has it, before anything new.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from itertools import pairwise

from network import Misbehaviour
from network.peer import Peer
from node.chain.chainstate import ChainState
from node.chain.index import BlockIndexEntry, BlockStatus, headers_after, locator
from node.chain.presync import HeadersPresync, Phase, anti_dos_work, headers_work
from node.p2p import punish
from node.p2p.messages import (
    INV_BLOCK,
    MAX_HEADERS,
    MSG_GETDATA,
    MSG_GETHEADERS,
    MSG_HEADERS,
    NO_STOP,
    InvItem,
    inv_body,
    parse_getheaders,
    parse_headers,
)
from node.p2p.peerstate import PeerState, PeerTable
from node.p2p.ports import NodePort
from node.primitives.block import BlockHeader, short_hash
from node.primitives.errors import DecodeError, ValidationError

log = logging.getLogger("obol.sync")

MAX_BLOCKS_IN_FLIGHT = 32  # blocks requested from one peer and not yet received
# blocks above the tip that may be requested (Bitcoin: BLOCK_DOWNLOAD_WINDOW)
DOWNLOAD_WINDOW = 1024
STALL_TIMEOUT = 10.0  # seconds a requested block may take before its peer is replaced
PROGRESS_INTERVAL = 5.0  # seconds between sync progress log lines
MAX_PRESYNCS = 8  # peers whose low-work header chains are checked at once (presync.py)
PRESYNC_TIMEOUT = 60.0  # seconds a presync may wait for its next batch before it is dropped


class BlockSync:
    """Header exchange, block download scheduling, stall handling, progress."""

    def __init__(
        self,
        chain: ChainState,
        peers: PeerTable,
        port: NodePort,
        stall_timeout: float = STALL_TIMEOUT,
        max_presyncs: int = MAX_PRESYNCS,
    ) -> None:
        self.chain = chain
        self.max_presyncs = max_presyncs  # peers presyncing headers at once
        self.peers = peers
        self.port = port
        self.stall_timeout = stall_timeout
        self.in_flight: dict[bytes, int] = {}  # block hash -> peer id it was asked of
        self.validating: set[bytes] = set()  # arrived, queued for validation: not asked again
        # requests that came to nothing (stall, disconnect, notfound, mutated body): ask again first
        self.released: dict[bytes, BlockIndexEntry] = {}
        self._progress_at = 0.0
        self._progress_height = 0
        self._task: asyncio.Task | None = None

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="sync-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def on_established(self, peer: Peer) -> None:
        self.peers.add(peer)
        # Start from our best header's parent so the reply holds at least that header
        # if the peer has it: it tells us the peer can serve our best branch (as Bitcoin).
        best = self.chain.best_header
        self.request_headers(peer, best.parent or best)

    async def on_disconnected(self, peer: Peer) -> None:
        state = self.peers.remove(peer)
        if state is not None:
            for h in list(state.in_flight):
                self._release(h, f"{peer.label} disconnected")
            if state.in_flight:
                self.schedule()

    # --- headers -------------------------------------------------------------------------

    @property
    def syncing(self) -> bool:
        """True while some peer has announced headers with more work than the tip."""
        tip_work = self.chain.tip.chain_work
        return any(
            s.best_known is not None and s.best_known.chain_work > tip_work
            for s in self.peers.values()
        )

    def request_headers(self, peer: Peer, start: BlockIndexEntry | None = None) -> None:
        peer.send(MSG_GETHEADERS, [locator(start or self.chain.best_header), NO_STOP])

    async def handle_getheaders(self, peer: Peer, body: object) -> None:
        try:
            locator_hashes, stop = parse_getheaders(body)
        except DecodeError as exc:
            raise punish.malformed(exc) from None
        headers = headers_after(
            self.chain.index, self.chain.chain, locator_hashes, stop, MAX_HEADERS
        )
        peer.send(MSG_HEADERS, [h.to_list() for h in headers])

    async def handle_headers(self, peer: Peer, body: object) -> None:
        # ~10 µs a header (2,000 in a batch): parsed on the chain thread, off the loop
        headers = await self.port.in_chain(_parse_chain, body)
        state = self.peers.get(peer)
        if not headers or state is None:
            return
        more = len(headers) == MAX_HEADERS
        if state.presync is not None and headers[0].prev_hash == state.presync.expects:
            await self._presync(state, headers, more)
            return
        fork = self.chain.index.get(headers[0].prev_hash)
        if fork is None:
            # Not connecting to what we know: ask from our best header (Bitcoin does the same).
            self.request_headers(peer)
            return
        if headers[-1].hash not in self.chain.index and not self._enough_work(fork, headers):
            await self._low_work(state, fork, headers, more)
            return
        await self._store_headers(state, headers, more)

    def _enough_work(self, fork: BlockIndexEntry, headers: list[BlockHeader]) -> bool:
        """The chain ``fork`` + ``headers`` reaches the anti-DoS work (bits checked later)."""
        try:
            work = headers_work(headers)
        except ValidationError:
            return True  # malformed bits: let validation refuse (and punish) it
        return fork.chain_work + work >= anti_dos_work(self.chain.params, self.chain.tip)

    async def _low_work(
        self, state: PeerState, fork: BlockIndexEntry, headers: list[BlockHeader], more: bool
    ) -> None:
        """Headers whose chain has too little work to be stored: a full batch starts a
        presync (``presync.py``), a last batch is dropped."""
        peer = state.peer
        if not more:
            log.info(
                "headers from %s ignored: low-work chain (%d headers after height %d)",
                peer.label,
                len(headers),
                fork.height,
            )
            return
        if self._presyncs() >= self.max_presyncs:
            log.info(
                "headers from %s ignored: %d peers presync already", peer.label, self.max_presyncs
            )
            return
        required = anti_dos_work(self.chain.params, self.chain.tip)
        state.presync = HeadersPresync(self.chain.params, fork, required, int(time.time()))
        log.info(
            "presync of headers from %s: low-work chain after height %d, counting its work",
            peer.label,
            fork.height,
        )
        await self._presync(state, headers, more)

    def _presyncs(self) -> int:
        return sum(1 for s in self.peers.values() if s.presync is not None)

    async def _presync(self, state: PeerState, headers: list[BlockHeader], more: bool) -> None:
        """Feed a batch to the peer's presync; store what it releases, ask for what it needs."""
        presync, peer = state.presync, state.peer
        assert presync is not None
        state.presync_progress = time.monotonic()
        phase = presync.phase
        try:
            step = await self.port.in_chain(presync.feed, headers, more, int(time.time()))
        except ValidationError as exc:
            state.presync = None
            verdict = punish.for_headers(exc)
            if not verdict.score:
                log.info("presync of headers from %s ended: %s", peer.label, exc)
                return
            raise Misbehaviour(verdict.score, exc.code, exc.message) from None
        if presync.phase is not phase:
            log.info(
                "presync of headers from %s: %s at height %d",
                peer.label,
                step.outcome or "chain reaches the anti-DoS work, redownloading",
                presync.presync_height,
            )
        if presync.phase is Phase.DONE:
            state.presync = None
        if step.release:
            # once all is released, ask for what follows (the batch may go on past it)
            await self._store_headers(state, step.release, more=presync.phase is Phase.DONE)
        if step.locator is not None:
            peer.send(MSG_GETHEADERS, [step.locator, NO_STOP])

    async def _store_headers(
        self, state: PeerState, headers: list[BlockHeader], more: bool
    ) -> None:
        """Validate and store headers that connect to the index; ask for more if ``more``."""
        peer = state.peer
        try:
            entries = await self.port.in_chain(self.chain.accept_headers, headers)
        except ValidationError as exc:
            verdict = punish.for_headers(exc)
            if not verdict.score:
                log.info("headers from %s not accepted: %s (%s)", peer.label, exc, verdict.reason)
                return
            raise Misbehaviour(verdict.score, exc.code, exc.message) from None
        last = entries[-1]
        if state.best_known is None or last.chain_work > state.best_known.chain_work:
            state.best_known = last
        peer.best_height = max(peer.best_height, last.height)
        if more:
            self.request_headers(peer, last)
        self.schedule()

    def saw_block(self, peer: Peer, entry: BlockIndexEntry) -> None:
        """``peer`` has the block of ``entry`` (it sent or announced it)."""
        state = self.peers.get(peer)
        if state is not None and (
            state.best_known is None or entry.chain_work > state.best_known.chain_work
        ):
            state.best_known = entry
            peer.best_height = max(peer.best_height, entry.height)

    # --- block download ---------------------------------------------------------------------

    def block_arrived(self, peer: Peer, block_hash: bytes) -> bool:
        """Forget the request for ``block_hash`` (it is being validated until
        ``block_validated``); True if it had been requested from ``peer``."""
        self.validating.add(block_hash)
        owner = self.in_flight.pop(block_hash, None)
        owner_state = self.peers.by_id(owner) if owner is not None else None
        if owner_state is not None:
            owner_state.in_flight.pop(block_hash, None)
        return owner == peer.id

    def block_validated(self, block_hash: bytes) -> None:
        """The block's validation ended (stored, or refused): if we still lack its data
        (the body did not match its header), it is asked for again."""
        self.validating.discard(block_hash)
        entry = self.chain.index.get(block_hash)
        if entry is not None and entry.status == BlockStatus.HEADER:
            log.debug(
                "block %s: body did not match its header; asking for it again",
                short_hash(block_hash),
            )
            self.released[block_hash] = entry

    def not_found(self, peer: Peer, hashes: list[bytes]) -> None:
        state = self.peers.get(peer)
        for h in hashes:
            if state is not None and h in state.in_flight:
                state.lacks.add(h)
                self._release(h, f"{peer.label} does not have it")
        self.schedule()

    def _release(self, block_hash: bytes, why: str) -> None:
        """A request came to nothing: forget it and ask the next peer that has the block."""
        owner = self.in_flight.pop(block_hash, None)
        owner_state = self.peers.by_id(owner) if owner is not None else None
        if owner_state is not None:
            owner_state.in_flight.pop(block_hash, None)
        entry = self.chain.index.get(block_hash)
        if entry is not None:
            log.debug(
                "block %s: request came to nothing (%s); asking another peer",
                short_hash(block_hash),
                why,
            )
            self.released[block_hash] = entry

    def schedule(self) -> None:
        """Ask every peer for the blocks it can give us, within the window and caps."""
        tip = self.chain.tip
        for state in list(self.peers.values()):
            best = state.best_known
            if (
                best is None
                or best.chain_work <= tip.chain_work
                or best.status == BlockStatus.INVALID
            ):
                continue
            room = MAX_BLOCKS_IN_FLIGHT - len(state.in_flight)
            if room <= 0:
                continue
            wanted = self._next_blocks(state, room, tip.height + DOWNLOAD_WINDOW)
            if not wanted:
                continue
            now = time.monotonic()
            for entry in wanted:
                state.in_flight[entry.hash] = now
                self.in_flight[entry.hash] = state.peer.id
            state.peer.send(MSG_GETDATA, inv_body([InvItem(INV_BLOCK, e.hash) for e in wanted]))
        if self.released:
            self._forget_unservable()

    def _forget_unservable(self) -> None:
        """Drop released blocks on no peer's branch: a peer that later has them gets a new
        branch whose cursor starts at its beginning, and finds them there."""
        for h, entry in list(self.released.items()):
            if not any(_on_path(s.path, entry) for s in self.peers.values()):
                del self.released[h]

    def _wanted(self, entry: BlockIndexEntry) -> bool:
        """We lack the block and nobody is fetching or validating it."""
        return (
            entry.status == BlockStatus.HEADER
            and entry.hash not in self.in_flight
            and entry.hash not in self.validating
        )

    def _next_blocks(self, state: PeerState, room: int, max_height: int) -> list[BlockIndexEntry]:
        """Up to ``room`` blocks to ask ``state``'s peer for, lowest first: released
        requests it can serve, then new blocks from its cursor on."""
        path = self._path(state)
        wanted = self._released_for(state, path, room, max_height) if self.released else []
        while state.cursor < len(path) and len(wanted) < room:
            entry = path[state.cursor]
            if entry.height > max_height:
                break
            state.cursor += 1
            if self._wanted(entry):
                wanted.append(entry)
        return wanted

    def _path(self, state: PeerState) -> list[BlockIndexEntry]:
        """The peer's branch from the fork with the active chain to its best block.

        When the peer's best block extends the branch computed before, the branch
        is extended and the cursor kept; otherwise it is computed afresh."""
        if state.path_for is not state.best_known:
            new = []
            entry = state.best_known
            while (
                entry is not None
                and entry is not state.path_for
                and not self.chain.on_active_chain(entry)
            ):
                new.append(entry)
                entry = entry.parent
            new.reverse()
            if (
                entry is not None
                and entry is state.path_for
                and not self.chain.on_active_chain(entry)
            ):
                state.path.extend(new)
            else:  # a new branch, or the old one is all connected: start afresh at the fork
                state.path, state.cursor = new, 0
            state.path_for = state.best_known
        return state.path

    def _released_for(
        self, state: PeerState, path: list[BlockIndexEntry], room: int, max_height: int
    ) -> list[BlockIndexEntry]:
        """Released blocks on ``path`` that the peer did not say it lacks, lowest first
        (taken out of ``released``); released blocks no longer needed are dropped."""
        wanted: list[BlockIndexEntry] = []
        for entry in sorted(self.released.values(), key=lambda e: e.height):
            if len(wanted) >= room or entry.height > max_height:
                break
            if not self._wanted(entry):
                del self.released[entry.hash]  # arrived meanwhile, or no longer needed
            elif _on_path(path, entry) and entry.hash not in state.lacks:
                del self.released[entry.hash]
                wanted.append(entry)
        return wanted

    # --- stalls and progress ------------------------------------------------------------------

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for state in list(self.peers.values()):
                stalled = [h for h, t in state.in_flight.items() if now - t > self.stall_timeout]
                if stalled:
                    log.info(
                        "peer %s stalled on %d block(s): disconnecting",
                        state.peer.label,
                        len(stalled),
                    )
                    state.peer.close("stalling")
                    await self.on_disconnected(state.peer)
                elif state.presync is not None and now - state.presync_progress > PRESYNC_TIMEOUT:
                    log.info(
                        "presync of headers from %s dropped: no batch for %.0f s",
                        state.peer.label,
                        PRESYNC_TIMEOUT,
                    )
                    state.presync = None
            self.schedule()
            self._log_progress(now)

    def _log_progress(self, now: float) -> None:
        if not self.syncing or now - self._progress_at < PROGRESS_INTERVAL:
            return
        target = max(s.best_known.height for s in self.peers.values() if s.best_known is not None)
        height = self.chain.height
        rate = (
            (height - self._progress_height) / (now - self._progress_at)
            if self._progress_at
            else 0.0
        )
        log.info(
            "sync: height=%d of %d (%.1f%%) %.0f blocks/s, %d in flight",
            height,
            target,
            100.0 * height / max(target, 1),
            rate,
            len(self.in_flight),
        )
        self._progress_at, self._progress_height = now, height


def _parse_chain(body: object) -> list[BlockHeader]:
    """The headers of a ``headers`` body, each the child of the one before."""
    try:
        headers = parse_headers(body)
    except DecodeError as exc:
        raise punish.malformed(exc) from None
    for prev, header in pairwise(headers):
        if header.prev_hash != prev.hash:
            raise Misbehaviour(
                punish.MISBEHAVING, "non-continuous-headers", "headers do not form a chain"
            )
    return headers


def _on_path(path: list[BlockIndexEntry], entry: BlockIndexEntry) -> bool:
    """``entry`` is on ``path`` (a branch: one entry per height, consecutive)."""
    index = entry.height - path[0].height if path else -1
    return 0 <= index < len(path) and path[index] is entry
