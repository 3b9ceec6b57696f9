"""Packages: a pool transaction with its in-pool ancestors or descendants, and their limits.

A peer can chain unconfirmed transactions without end, each spending the
last; every walk over such a chain (acceptance, removal, block templates)
would then cost the chain's length, and a template would cost its square.
Bitcoin Core bounds every package instead (``DEFAULT_ANCESTOR_LIMIT`` and
``DEFAULT_DESCENDANT_LIMIT``, 25 transactions and 101 kvB): a transaction
that would make one longer is refused with ``too-long-mempool-chain``, a
policy refusal (mempools differ; the sender is not punished).  Then every
walk below visits at most ``limit`` entries, and the pool can keep each
entry's package totals up to date incrementally.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from node.mempool.entry import MempoolEntry
from node.primitives.errors import PolicyError

TOO_LONG = "too-long-mempool-chain"  # the reject code of every package limit (Bitcoin: same)


@dataclass(frozen=True, slots=True)
class PackageLimits:
    """How far a transaction's in-pool family may reach (Bitcoin Core's defaults)."""

    ancestor_count: int = 25  # transactions: its in-pool ancestors, itself included
    ancestor_size: int = 101_000  # bytes: their encodings (Core: 101 kvB of vsize)
    descendant_count: int = 25  # transactions: any pool entry's descendants, itself included
    descendant_size: int = 101_000  # bytes: their encodings


DEFAULT_LIMITS = PackageLimits()  # immutable, so one instance serves every pool


def ancestors_within_limits(
    entries: Mapping[bytes, MempoolEntry],
    parents: Iterable[bytes],
    size: int,
    limits: PackageLimits,
) -> set[bytes]:
    """The in-pool ancestors of a newcomer of ``size`` bytes spending ``parents``.

    Raises ``too-long-mempool-chain`` as soon as they pass the ancestor limits,
    so the walk never visits more than ``limits.ancestor_count`` entries."""
    found: set[bytes] = set()
    total = size
    todo = list(parents)
    while todo:
        txid = todo.pop()
        if txid in found:
            continue
        found.add(txid)
        entry = entries[txid]
        total += entry.size
        if len(found) + 1 > limits.ancestor_count:
            raise PolicyError(
                TOO_LONG, f"too many unconfirmed ancestors [limit: {limits.ancestor_count}]"
            )
        if total > limits.ancestor_size:
            raise PolicyError(
                TOO_LONG, f"exceeds ancestor size limit [limit: {limits.ancestor_size} bytes]"
            )
        todo.extend(entry.parents)
    return found


def check_descendant_limits(
    entries: Mapping[bytes, MempoolEntry],
    ancestors: set[bytes],
    size: int,
    limits: PackageLimits,
    leaving: Collection[bytes] = (),
) -> None:
    """Refuse a newcomer of ``size`` bytes that would give one of its ``ancestors`` too
    many descendants; ``leaving`` are pool entries it replaces (they no longer count)."""
    gone = _leaving_descendants(entries, ancestors, leaving) if leaving else {}
    for txid in ancestors:
        entry = entries[txid]
        gone_count, gone_size = gone.get(txid, (0, 0))
        if entry.count_with_descendants - gone_count + 1 > limits.descendant_count:
            raise PolicyError(
                TOO_LONG,
                f"too many descendants for tx {txid.hex()} [limit: {limits.descendant_count}]",
            )
        if entry.size_with_descendants - gone_size + size > limits.descendant_size:
            raise PolicyError(
                TOO_LONG,
                f"exceeds descendant size limit for tx {txid.hex()} "
                f"[limit: {limits.descendant_size} bytes]",
            )


def _leaving_descendants(
    entries: Mapping[bytes, MempoolEntry], ancestors: set[bytes], leaving: Collection[bytes]
) -> dict[bytes, tuple[int, int]]:
    """For each of ``ancestors``: how many of its descendants are in ``leaving``, and their
    bytes (each leaving entry's ancestors are walked: at most the ancestor limit each)."""
    gone: dict[bytes, tuple[int, int]] = {}
    for txid in leaving:
        size = entries[txid].size
        for ancestor in ancestors_of(entries, txid) & ancestors:
            count, total = gone.get(ancestor, (0, 0))
            gone[ancestor] = (count + 1, total + size)
    return gone


def ancestors_of(entries: Mapping[bytes, MempoolEntry], txid: bytes) -> set[bytes]:
    """The in-pool ancestors of pool entry ``txid``, itself excluded (bounded by the limits
    it entered under)."""
    return _closure(entries, entries[txid].parents, "parents")


def descendants_of(entries: Mapping[bytes, MempoolEntry], txid: bytes) -> set[bytes]:
    """The in-pool descendants of pool entry ``txid``, itself excluded."""
    return _closure(entries, entries[txid].children, "children")


def _closure(
    entries: Mapping[bytes, MempoolEntry], start: Iterable[bytes], links: str
) -> set[bytes]:
    found: set[bytes] = set()
    todo = list(start)
    while todo:
        txid = todo.pop()
        if txid in found or txid not in entries:
            continue
        found.add(txid)
        todo.extend(getattr(entries[txid], links))
    return found
