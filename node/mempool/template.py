"""Choosing a block's transactions: packages by ancestor fee rate (Bitcoin Core's addPackageTxs).

A child that pays for its parent (CPFP) is worth its package: it and the
ancestors not yet in the block, at their combined fee rate.  Taking each
transaction by its own fee rate and dragging its ancestors along (as the pool
did) overpays for cheap parents and, on a long chain, re-walked the chain for
every member.  Here every entry starts in a heap at its ancestor fee rate (the
pool keeps those totals); the best package is taken whole, parents first, and
each in-pool descendant of what was taken gets its package shrunk by it and
pushed again at the new rate ("modified" entries, as in Core).  Heap items
left behind by such an update are stale and skipped when popped (lazy
invalidation).  Packages and descendant sets are bounded by the pool's
package limits (``packages.py``), so a template costs O(n · limit · log n)
for n pool entries.

A package that does not fit in the room left is skipped for good: the room
only shrinks, and so does the package by at most what its ancestors took
from the room.  The pass stops once the room left is below the smallest
entry; unlike Core there is no stop after 1,000 failures in a row near a
full block, which would change the result: the heap keeps the pass
near-linear without it.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping

from node.mempool.entry import MempoolEntry
from node.mempool.packages import descendants_of


def select_packages(
    entries: Mapping[bytes, MempoolEntry], max_bytes: int
) -> tuple[list[MempoolEntry], int]:
    """The entries of the best packages by ancestor fee rate within ``max_bytes``,
    parents before children, and their fees."""
    heap = [(-_ancestor_fee_rate(e), e.txid) for e in entries.values()]
    heapq.heapify(heap)
    # bytes: once the room left is below the smallest entry nothing fits any more
    smallest = min((e.size for e in entries.values()), default=0)
    # txid -> (bytes, fees) of what is left of its package, for an entry some of whose
    # ancestors are in the block already (Core's modified entries)
    modified: dict[bytes, tuple[int, int]] = {}
    included: set[bytes] = set()
    chosen: list[MempoolEntry] = []
    used = 0
    fees = 0
    while heap and max_bytes - used >= smallest:
        rate, txid = heapq.heappop(heap)
        if txid in included:
            continue
        entry = entries[txid]
        if entry.relatives is None:  # most entries: a package of one, nobody to update
            if used + entry.size <= max_bytes:
                chosen.append(entry)
                included.add(txid)
                used += entry.size
                fees += entry.fee
            continue
        if txid in modified:
            size, package_fees = modified[txid]
            if -rate != package_fees / size:
                continue  # stale: pushed again at its new rate when an ancestor was taken
        else:
            size = entry.size_with_ancestors
        if used + size > max_bytes:
            continue  # it never fits again: the room only shrinks faster than the package
        package = _package(entries, entry, included)
        for member in package:
            chosen.append(member)
            included.add(member.txid)
            modified.pop(member.txid, None)
            used += member.size
            fees += member.fee
        _shrink_descendants(entries, package, included, modified, heap)
    return chosen, fees


def _ancestor_fee_rate(entry: MempoolEntry) -> float:
    """Base units per byte of the entry with all its in-pool ancestors."""
    r = entry.relatives
    if r is None:
        return entry.fee / len(entry.raw)
    return (entry.fee + r.ancestors_fees) / (len(entry.raw) + r.ancestors_size)


def _package(
    entries: Mapping[bytes, MempoolEntry], entry: MempoolEntry, included: set[bytes]
) -> list[MempoolEntry]:
    """``entry`` and its ancestors not yet in the block, parents first (an ancestor has
    fewer ancestors than each of its descendants: Core's SortForBlock)."""
    found = {entry.txid: entry}
    todo = list(entry.parents)
    while todo:
        txid = todo.pop()
        if txid in found or txid in included:
            continue
        found[txid] = entries[txid]
        todo.extend(entries[txid].parents)
    return sorted(found.values(), key=lambda e: (e.ancestors_count, e.txid))


def _shrink_descendants(
    entries: Mapping[bytes, MempoolEntry],
    package: list[MempoolEntry],
    included: set[bytes],
    modified: dict[bytes, tuple[int, int]],
    heap: list[tuple[float, bytes]],
) -> None:
    """Take the package just included out of its descendants' packages, and push each
    of them again at its new ancestor fee rate (Core's UpdatePackagesForAdded)."""
    touched: set[bytes] = set()
    for member in package:
        if member.descendants_count == 0:
            continue
        for txid in descendants_of(entries, member.txid):
            if txid in included:
                continue
            descendant = entries[txid]
            size, package_fees = modified.get(
                txid, (descendant.size_with_ancestors, descendant.fees_with_ancestors)
            )
            modified[txid] = (size - member.size, package_fees - member.fee)
            touched.add(txid)
    for txid in touched:
        size, package_fees = modified[txid]
        heapq.heappush(heap, (-package_fees / size, txid))
