"""The two tables of the address book and where an address goes in them (Bitcoin Core's
``addrman``: ``vvNew``, ``vvTried``, ``GetNewBucket``, ``GetTriedBucket``, ``GetBucketPosition``).

A table is a fixed number of buckets of a fixed number of slots.  Where an address
goes is a keyed hash (a secret per book), so a peer cannot aim at a slot:

* **new** (addresses we were told about): the bucket is chosen by the *source's*
  address group and the address's group, and one source group reaches only
  ``per_source`` buckets of the table;
* **tried** (addresses we completed a handshake with): the bucket is chosen by the
  address and its group, and one address group reaches only ``per_group`` buckets;
* the slot inside the bucket by the bucket and the address.

So whatever one source sends lands in its own few buckets, and an address can only
ever displace the one occupying its own slot.  Every operation touches one slot or
one bucket, never the whole table.
"""

from __future__ import annotations

import enum
import hashlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

Address = tuple[str, int]
T = TypeVar("T")

HASH_BYTES = 8  # bytes of each keyed hash (a 64-bit number, as Core's CHashWriter.GetCheapHash)


class Table(enum.Enum):
    """Which table of the book an address is in."""

    NEW = "new"  # heard of, never reached (or pushed back out of tried)
    TRIED = "tried"  # a handshake completed


@dataclass(frozen=True)
class Slot:
    """Where an address sits in the book."""

    table: Table  # new or tried
    bucket: int  # bucket index in that table
    position: int  # slot index in that bucket


def keyed_hash(key: bytes, *parts: str | int) -> int:
    """A 64-bit keyed hash of ``parts`` (BLAKE2b keyed with ``key``)."""
    return KeyedHash(key)(*parts)


class KeyedHash:
    """``keyed_hash`` with one key, keyed once (each call copies the keyed state)."""

    def __init__(self, key: bytes) -> None:
        self._keyed = hashlib.blake2b(key=key, digest_size=HASH_BYTES)  # state after the key

    def __call__(self, *parts: str | int) -> int:
        state = self._keyed.copy()
        state.update("\x00".join(map(str, parts)).encode())
        return int.from_bytes(state.digest(), "big")


def new_bucket(h: KeyedHash, group: str, source_group: str, buckets: int, per_source: int) -> int:
    """The new-table bucket of an address of ``group`` told by a source of ``source_group``:
    one of the ``per_source`` buckets that source group can reach."""
    spread = h("new-spread", group, source_group) % per_source
    return h("new-bucket", source_group, spread) % buckets


def tried_bucket(h: KeyedHash, address: str, group: str, buckets: int, per_group: int) -> int:
    """The tried-table bucket of ``address`` (``host:port``): one of the ``per_group``
    buckets its address group can reach."""
    spread = h("tried-spread", address) % per_group
    return h("tried-bucket", group, spread) % buckets


def bucket_position(h: KeyedHash, table: Table, bucket: int, address: str, size: int) -> int:
    """The slot of ``address`` (``host:port``) in ``bucket`` of ``table``."""
    return h("position", table.value, bucket, address) % size


class RandomSet(Generic[T]):
    """A set that also picks a random member in O(1) (Core's ``vRandom``)."""

    def __init__(self) -> None:
        self._items: list[T] = []  # the members, in no particular order
        self._index: dict[T, int] = {}  # member -> its index in _items

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, item: object) -> bool:
        return item in self._index

    def add(self, item: T) -> None:
        if item not in self._index:
            self._index[item] = len(self._items)
            self._items.append(item)

    def discard(self, item: T) -> None:
        index = self._index.pop(item, None)
        if index is None:
            return
        last = self._items.pop()
        if index < len(self._items):
            self._items[index] = last
            self._index[last] = index

    def choice(self, rng: random.Random) -> T:
        return self._items[rng.randrange(len(self._items))]

    def sample(self, rng: random.Random) -> Iterator[T]:
        """Members in random order, drawn one at a time (a partial Fisher-Yates shuffle):
        a caller that stops after k has paid for k.  The set must not change meanwhile."""
        items, index = self._items, self._index
        for i in range(len(items)):
            j = rng.randrange(i, len(items))
            items[i], items[j] = items[j], items[i]
            index[items[i]], index[items[j]] = i, j
            yield items[i]


class BucketTable:
    """``buckets`` buckets of ``size`` slots, each slot empty or holding one address."""

    def __init__(self, buckets: int, size: int) -> None:
        if buckets < 1 or size < 1:
            raise ValueError("a table needs at least one bucket of one slot")
        self.buckets = buckets  # number of buckets
        self.size = size  # slots per bucket
        self._slots: dict[int, dict[int, Address]] = {}  # bucket -> slot -> address (non-empty)
        self._filled: RandomSet[int] = RandomSet()  # buckets holding at least one address
        self._count = 0  # addresses held

    def __len__(self) -> int:
        return self._count

    def at(self, bucket: int, position: int) -> Address | None:
        slots = self._slots.get(bucket)
        return slots.get(position) if slots is not None else None

    def put(self, bucket: int, position: int, address: Address) -> None:
        """Fill an empty slot."""
        slots = self._slots.setdefault(bucket, {})
        if position in slots:
            raise ValueError(f"slot {bucket}/{position} is taken")
        slots[position] = address
        self._filled.add(bucket)
        self._count += 1

    def clear(self, bucket: int, position: int) -> None:
        slots = self._slots.get(bucket)
        if slots is None or slots.pop(position, None) is None:
            return
        self._count -= 1
        if not slots:
            del self._slots[bucket]
            self._filled.discard(bucket)

    def bucket_count(self, bucket: int) -> int:
        """Addresses in ``bucket``."""
        return len(self._slots.get(bucket, ()))

    def random_address(self, rng: random.Random) -> Address | None:
        """An address of a random non-empty bucket (each bucket equally likely, whatever it
        holds: a source that filled its buckets is not picked more for that)."""
        if not self._filled:
            return None
        slots = self._slots[self._filled.choice(rng)]
        return rng.choice(list(slots.values()))
