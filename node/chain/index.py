"""The block index: every header the node knows, as a tree, and the queries over it.

Bitcoin Core's ``CBlockIndex`` / ``CChain`` and btcd's ``blockindex.go`` / ``chainview.go``.
An entry's header, height, work, parent and anchor never change once it is in the
index; its status and failure do (on the chain thread only).  ``ChainState`` owns
the index and writes it to the ``index`` database; everything here is in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from enum import IntEnum, StrEnum
from typing import Any

from node.consensus.params import MEDIAN_TIME_SPAN, NetworkParams
from node.consensus.pow import asert_target, bits_to_target, target_to_bits
from node.primitives.block import BlockHeader
from node.primitives.encoding import encode

MAX_LOCATOR_ENTRIES = 64  # hashes in a block locator
LOCATOR_DENSE = 10  # the newest locator entries are consecutive; then the step doubles


class BlockStatus(IntEnum):
    """How far a block got (stored as its int in the ``index`` database)."""

    HEADER = 0  # header valid, block data not (yet) stored
    DATA = 1  # block data stored, never connected
    VALID = 2  # connected at least once: fully valid
    INVALID = 3  # the block or one of its ancestors breaks a rule

    @property
    def label(self) -> str:
        """The name the API shows (``GET /block``'s ``status``)."""
        return _STATUS_LABELS[self]


class TipStatus(StrEnum):
    """What a branch tip is (Bitcoin: getchaintips' ``status``)."""

    ACTIVE = "active"  # the tip of the active chain
    INVALID = "invalid"  # the branch holds an invalid block
    HEADERS_ONLY = "headers-only"  # some block of the branch was never stored
    VALID_HEADERS = "valid-headers"  # all stored, some never connected
    VALID_FORK = "valid-fork"  # all connected once: a fully valid side branch


_STATUS_LABELS = {
    BlockStatus.HEADER: "header-only",
    BlockStatus.DATA: "data",
    BlockStatus.VALID: "valid",
    BlockStatus.INVALID: "invalid",
}


class BlockIndexEntry:
    """What the node knows of one header; lives in memory and in the ``index`` db."""

    __slots__ = (
        "header",
        "hash",
        "height",
        "chain_work",
        "status",
        "seq",
        "parent",
        "anchor",
        "failure",
        "have_chain",
    )

    def __init__(
        self,
        header: BlockHeader,
        height: int,
        chain_work: int,
        status: BlockStatus,
        seq: int,
        parent: BlockIndexEntry | None,
        failure: str = "",
    ) -> None:
        self.header = header  # the header itself
        self.hash = header.hash  # its sha256d
        self.height = height  # blocks between it and genesis
        self.chain_work = chain_work  # sum of block_work from genesis to here
        self.status = status  # how far the block got
        self.seq = seq  # arrival order: ties in work go to the first seen
        self.parent = parent  # parent entry (None for genesis)
        self.failure = failure  # reject code if invalid
        # ASERT anchor: the branch's block at height 1 (None below height 1)
        self.anchor: BlockIndexEntry | None = (
            self if height == 1 else (parent.anchor if parent is not None else None)
        )
        # True if this block and all its ancestors have data stored
        self.have_chain = False

    def record(self, status: BlockStatus | None = None) -> bytes:
        """The ``index`` db value; ``status`` overrides the in-memory one (written before
        the commit that makes it true in memory)."""
        return encode(
            [
                self.header.to_list(),
                self.height,
                self.chain_work.to_bytes(32, "big"),
                int(self.status if status is None else status),
                self.seq,
                self.failure,
            ]
        )

    def ancestor(self, height: int) -> BlockIndexEntry:
        """The entry at ``height`` on this entry's branch (``height`` <= its own)."""
        entry = self
        while entry.height > height:
            assert entry.parent is not None
            entry = entry.parent
        return entry


class BlockIndex:
    """Every known header by hash, with each entry's children and the best valid header.

    Lookups are plain dict reads: the event loop may make them while the chain
    thread adds entries (each is atomic under the GIL, docs/design.md)."""

    def __init__(self) -> None:
        self.entries: dict[bytes, BlockIndexEntry] = {}  # hash -> entry
        self.children: dict[bytes, list[BlockIndexEntry]] = {}  # parent hash -> its children
        # valid header with the most work, first seen on ties (Bitcoin: pindexBestHeader)
        self.best_header: BlockIndexEntry | None = None
        self.get = self.entries.get

    def __getitem__(self, block_hash: bytes) -> BlockIndexEntry:
        return self.entries[block_hash]

    def __contains__(self, block_hash: object) -> bool:
        return block_hash in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def values(self) -> Iterator[BlockIndexEntry]:
        return iter(self.entries.values())

    def items(self) -> Iterator[tuple[bytes, BlockIndexEntry]]:
        return iter(self.entries.items())

    def add(self, entry: BlockIndexEntry) -> None:
        self.entries[entry.hash] = entry
        self.children.setdefault(entry.header.prev_hash, []).append(entry)
        best = self.best_header
        if entry.status != BlockStatus.INVALID and (
            best is None or entry.chain_work > best.chain_work
        ):
            self.best_header = entry

    def recompute_best_header(self) -> None:
        """After invalidity changes: the valid header with the most work (first seen on ties)."""
        self.best_header = max(
            (e for e in self.entries.values() if e.status != BlockStatus.INVALID),
            key=lambda e: (e.chain_work, -e.seq),
        )

    def subtree(self, entry: BlockIndexEntry) -> Iterator[BlockIndexEntry]:
        """``entry`` and every entry descending from it (depth first)."""
        todo = [entry]
        while todo:
            e = todo.pop()
            yield e
            todo.extend(self.children.get(e.hash, ()))

    def is_leaf(self, entry: BlockIndexEntry) -> bool:
        return not self.children.get(entry.hash)


# --- consensus context of a new header ------------------------------------------------


def median_time_past(entry: BlockIndexEntry | None) -> int:
    """Median timestamp of the MEDIAN_TIME_SPAN blocks ending at ``entry``."""
    times: list[int] = []
    while entry is not None and len(times) < MEDIAN_TIME_SPAN:
        times.append(entry.header.timestamp)
        entry = entry.parent
    times.sort()
    return times[len(times) // 2]


def next_bits(params: NetworkParams, parent: BlockIndexEntry) -> int:
    """Compact target required of a child of ``parent`` (ASERT, anchored at height 1)."""
    if not params.retarget or parent.height < 1:
        return params.genesis_bits
    anchor = parent.anchor
    assert anchor is not None
    target = asert_target(
        bits_to_target(anchor.header.bits),
        parent.header.timestamp - anchor.header.timestamp,
        parent.height - anchor.height,
        params.target_spacing,
        params.asert_half_life,
        params.pow_limit,
    )
    return target_to_bits(target)


# --- the active chain: locators, forks, headers to serve, tips ------------------------


def on_chain(active: Sequence[BlockIndexEntry], entry: BlockIndexEntry) -> bool:
    """``entry`` is on the active chain ``active`` (entries by height, genesis first)."""
    return entry.height < len(active) and active[entry.height] is entry


def locator(entry: BlockIndexEntry) -> list[bytes]:
    """Hashes going back from ``entry`` with doubling steps, ending at genesis."""
    hashes: list[bytes] = []
    step = 1
    current: BlockIndexEntry = entry
    while len(hashes) < MAX_LOCATOR_ENTRIES - 1:
        hashes.append(current.hash)
        if current.height == 0:
            return hashes
        if len(hashes) >= LOCATOR_DENSE:
            step *= 2
        current = current.ancestor(max(current.height - step, 0))
    hashes.append(entry.ancestor(0).hash)
    return hashes


def find_fork(
    index: BlockIndex, active: Sequence[BlockIndexEntry], locator_hashes: list[bytes]
) -> BlockIndexEntry:
    """The newest locator entry on the active chain (genesis if none)."""
    for h in locator_hashes:
        entry = index.get(h)
        if entry is not None and on_chain(active, entry):
            return entry
    return active[0]


def headers_after(
    index: BlockIndex,
    active: Sequence[BlockIndexEntry],
    locator_hashes: list[bytes],
    stop: bytes,
    limit: int,
) -> list[BlockHeader]:
    """Up to ``limit`` active-chain headers after the fork with ``locator_hashes``, up to
    and including ``stop`` (Bitcoin: the answer to ``getheaders``)."""
    fork = find_fork(index, active, locator_hashes)
    headers = []
    for entry in active[fork.height + 1 : fork.height + 1 + limit]:
        headers.append(entry.header)
        if entry.hash == stop:
            break
    return headers


def chain_tips(index: BlockIndex, active: Sequence[BlockIndexEntry]) -> list[dict[str, Any]]:
    """Every branch tip: height, work, branch length, status (Bitcoin: getchaintips)."""
    tip = active[-1]
    tips = [e for e in index.values() if index.is_leaf(e)]
    if tip not in tips:
        tips.append(tip)
    out: list[dict[str, Any]] = []
    for e in tips:
        fork = e
        while not on_chain(active, fork):
            assert fork.parent is not None
            fork = fork.parent
        if e is tip:
            status = TipStatus.ACTIVE
        elif e.status == BlockStatus.INVALID or _branch_has(e, fork, BlockStatus.INVALID):
            status = TipStatus.INVALID
        elif _branch_has(e, fork, BlockStatus.HEADER):
            status = TipStatus.HEADERS_ONLY
        elif _branch_has(e, fork, BlockStatus.DATA):
            status = TipStatus.VALID_HEADERS
        else:
            status = TipStatus.VALID_FORK
        out.append(
            {
                "hash": e.hash.hex(),
                "height": e.height,
                "work": e.chain_work,
                "branchlen": e.height - fork.height,
                "status": status,
            }
        )
    out.sort(key=lambda t: (t["status"] != TipStatus.ACTIVE, -t["height"]))
    return out


def _branch_has(tip: BlockIndexEntry, fork: BlockIndexEntry, status: BlockStatus) -> bool:
    """Some entry from ``tip`` down to (not including) ``fork`` has ``status``."""
    e: BlockIndexEntry | None = tip
    while e is not None and e is not fork:
        if e.status == status:
            return True
        e = e.parent
    return False
