"""The address book: nodes we may connect to, learned from gossip and config.

Each known listening address (host, port) keeps when it was last seen up,
when we last completed a handshake with it, how often in a row dialling it
failed, and who told us about it.  The book is Bitcoin Core's ``addrman``
(``addrtable.py``): a *new* table of addresses we were told about, bucketed by
the teller's address group, and a *tried* table of those we completed a
handshake with, bucketed by their own group.  A newcomer takes only its own
slot, and only from an occupant that is *terrible* (long unseen, or never
reached after several tries), so no sequence of ``addr`` messages from one
source can push out what other sources told us, and every operation touches a
slot or a bucket, never the whole book.

``select`` picks the candidate for a free outbound slot as Core does: tried or
new at even odds, a random non-empty bucket, a random address in it, accepted
with a chance that falls with its failures; banned, connected and backing-off
addresses are skipped, and addresses failing too often are forgotten.
Addresses are stored only if their source may tell us about them
(``netaddr.may_learn``).  The book is persisted to ``peers.json`` by ``save()``.
"""

from __future__ import annotations

import logging
import random
import secrets
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .addrtable import (
    BucketTable,
    KeyedHash,
    RandomSet,
    Slot,
    Table,
    bucket_position,
    new_bucket,
    tried_bucket,
)
from .netaddr import (
    LOCAL_SOURCE,
    Scope,
    ip_group,
    ip_scope,
    may_learn,
    parse_ip,
    source_scope,
)
from .protocol import MAX_PORT, canonical_host, format_address, is_ip_literal
from .slots import netgroup
from .storage import read_json, write_json_atomic

log = logging.getLogger("obol.net")

PEERS_FILE = "peers.json"  # file name inside the data directory
# "version" field of the JSON file; 2 adds the secret key and each address's table (a
# version 1 file is read, its addresses placed afresh, and written back as version 2)
FILE_FORMAT_VERSION = 2
KEY_BYTES = 32  # bytes of the book's secret bucketing key (Core: nKey)
BUCKET_SIZE = 64  # addresses per bucket (Core: ADDRMAN_BUCKET_SIZE)
NEW_BUCKET_COUNT = 128  # buckets of the new table (Core: 1,024; scaled to a 10,000-address book)
TRIED_BUCKET_COUNT = 32  # buckets of the tried table (Core: 256)
# new buckets one source group reaches: 1/16 of the table, as Core's 64 of 1,024
NEW_BUCKETS_PER_SOURCE_GROUP = 8
TRIED_BUCKETS_PER_GROUP = 4  # tried buckets one address group reaches (Core: 8 of 256)
MAX_ENTRIES = (NEW_BUCKET_COUNT + TRIED_BUCKET_COUNT) * BUCKET_SIZE  # addresses: 10,240
MAX_FAILURES = 10  # consecutive failed dials after which an address is forgotten
RETRY_BASE = 1.0  # seconds: wait after the first failure, doubled per further failure
RETRY_MAX = 3600.0  # seconds: longest wait between retries of a failing address
GOOD_WINDOW = 24 * 3600.0  # seconds: a handshake this recent marks an address "recently good"
HORIZON = 30 * 24 * 3600.0  # seconds unseen after which an address is terrible (ADDRMAN_HORIZON)
NEVER_GOOD_RETRIES = 3  # failures that make a never-reached address terrible (ADDRMAN_RETRIES)
RECENT_TRY = 60.0  # seconds: an address dialled this recently is never terrible
TRIED_REPLACEMENT = 4 * 3600.0  # seconds: a tried address good this recently keeps its slot
GOSSIP_HORIZON = HORIZON  # seconds: addresses not seen for this long are not gossiped
GOSSIP_MAX_FAILURES = NEVER_GOOD_RETRIES  # addresses failing this often in a row: not gossiped
GOSSIP_SAMPLE_FACTOR = 2  # for_gossip looks at most at this many addresses per one it returns
FUTURE_TOLERANCE = 600.0  # seconds: a last_seen further in the future is clamped to now
SELECT_TRIES = 100  # random draws select() makes before giving up (Core: 100 per connection)
SELECT_CHANCE_GROWTH = 1.2  # select(): factor on the acceptance chance after each draw (Core)
FAILURE_CHANCE = 0.66  # select(): factor on the acceptance chance per failure (Core)
MAX_CHANCE_FAILURES = 8  # failures counted by that factor (Core)

Address = tuple[str, int]


@dataclass(frozen=True)
class KnownAddress:
    """What the book knows about one listening address."""

    host: str  # canonical IP literal
    port: int  # TCP port the node listens on
    last_seen: float  # unix seconds the node was last known to be up (gossip or contact)
    last_success: float = 0.0  # unix seconds of our last completed handshake; 0 = never
    last_attempt: float = 0.0  # unix seconds of our last dial; 0 = never
    failures: int = 0  # consecutive failed dials since the last success
    source: str = ""  # host that told us about it; "local" for our own configuration

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def to_json(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "last_seen": self.last_seen,
            "last_success": self.last_success,
            "last_attempt": self.last_attempt,
            "failures": self.failures,
            "source": self.source,
        }


@dataclass(frozen=True)
class Learned:
    """What ``AddrBook.learn`` did with a batch of addresses."""

    new: int  # addresses the book did not know
    changed: list[KnownAddress]  # new ones and those whose last_seen moved forward


class AddrBook:
    """Known listening addresses; ``path`` None keeps the book in memory only."""

    def __init__(
        self,
        path: Path | str | None = None,
        *,
        new_buckets: int = NEW_BUCKET_COUNT,
        tried_buckets: int = TRIED_BUCKET_COUNT,
        bucket_size: int = BUCKET_SIZE,
        retry_base: float = RETRY_BASE,
        retry_max: float = RETRY_MAX,
        max_failures: int = MAX_FAILURES,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        key: bytes | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None  # JSON file, or None
        self.retry_base = retry_base  # seconds: back-off after one failure
        self.retry_max = retry_max  # seconds: longest back-off
        self.max_failures = max_failures  # failures in a row before an address is dropped
        self._clock = clock  # wall-clock unix seconds
        self._rng = rng or random.Random()  # select() and for_gossip() draws
        self._key = key or secrets.token_bytes(KEY_BYTES)  # bucketing secret (from the file)
        self._hash = KeyedHash(self._key)  # keyed with _key
        self._new = BucketTable(new_buckets, bucket_size)  # addresses told about
        self._tried = BucketTable(tried_buckets, bucket_size)  # addresses reached
        self._entries: dict[Address, KnownAddress] = {}  # (host, port) -> record
        self._slots: dict[Address, Slot] = {}  # (host, port) -> where it sits
        self._random: RandomSet[Address] = RandomSet()  # every address, for sampling
        self._dirty = False  # changed since the last save
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, tuple) and self._address_key(*address) in self._entries

    @property
    def max_entries(self) -> int:
        """Addresses the book can hold: every slot of both tables."""
        new, tried = self._new, self._tried
        return new.buckets * new.size + tried.buckets * tried.size

    def get(self, address: Address) -> KnownAddress | None:
        return self._entries.get(self._address_key(*address))

    def table_of(self, address: Address) -> Table | None:
        """The table ``address`` is in, None if unknown."""
        slot = self._slots.get(self._address_key(*address))
        return slot.table if slot is not None else None

    def table_sizes(self) -> dict[Table, int]:
        return {Table.NEW: len(self._new), Table.TRIED: len(self._tried)}

    def entries(self) -> list[KnownAddress]:
        """Every record, best score first (sorts the whole book: for tools and tests)."""
        now = self._clock()
        return sorted(self._entries.values(), key=lambda e: -self.score(e, now))

    def add(self, addresses: Iterable[tuple[str, int, float]], source: str) -> int:
        """Learn (host, port, last_seen) triples told by ``source``; return how many are new."""
        return self.learn(addresses, source).new

    def learn(self, addresses: Iterable[tuple[str, int, float]], source: str) -> Learned:
        """Learn (host, port, last_seen) triples told by ``source``.

        Skipped: hosts that are not IP literals, port 0, addresses ``source`` may not
        tell us about (``netaddr.may_learn``), and new addresses whose slot holds one
        that is not terrible.  A known address only has its last_seen moved forward.
        """
        now = self._clock()
        new = 0
        changed = []
        reach, group = source_scope(source), netgroup(source)
        for host, port, last_seen in addresses:
            learned = self._learn_one(host, port, float(last_seen), source, reach, group, now)
            if learned is not None:
                entry, is_new = learned
                changed.append(entry)
                new += is_new
        return Learned(new, changed)

    def attempt(self, address: Address) -> None:
        """Record that we are dialling ``address`` now."""
        self._update(address, last_attempt=self._clock())

    def good(self, address: Address) -> None:
        """Record a completed handshake with ``address`` (added if unknown) and move it to
        the tried table.  Its tried slot's occupant gives way unless it was good within
        TRIED_REPLACEMENT (Core keeps it after a test connection), in which case this one
        stays in new; the one that gives way goes back to new (forgotten if its slot there
        holds an address that is not terrible)."""
        now = self._clock()
        key = self._address_key(*address)
        entry = self._entries.get(key) or KnownAddress(key[0], key[1], now, source=LOCAL_SOURCE)
        entry = replace(entry, last_seen=now, last_success=now, last_attempt=now, failures=0)
        current = self._slots.get(key)
        if current is not None and current.table is Table.TRIED:
            self._set(key, entry)
            return
        slot = self._tried_slot(key)
        occupant = self._tried.at(slot.bucket, slot.position)
        if occupant is not None and now - self._entries[occupant].last_success < TRIED_REPLACEMENT:
            if current is not None:
                self._set(key, entry)
            else:
                self._place_new(entry, now)
            return
        if current is not None:
            self._drop(key)
        if occupant is not None:
            demoted = self._entries[occupant]
            self._drop(occupant)
            if not self._place_new(demoted, now):
                log.debug("address %s left tried and new", format_address(*occupant))
        self._put(entry, slot)

    def failed(self, address: Address) -> None:
        """Record a failed dial; the address is forgotten after max_failures in a row."""
        key = self._address_key(*address)
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.failures + 1 >= self.max_failures:
            self.remove(key)
            return
        self._update(key, failures=entry.failures + 1, last_attempt=self._clock())

    def remove(self, address: Address) -> bool:
        """Forget ``address``; False if it was unknown."""
        key = self._address_key(*address)
        if key not in self._entries:
            return False
        self._drop(key)
        return True

    def retry_at(self, entry: KnownAddress) -> float:
        """Unix seconds from which a failing address may be dialled again."""
        if entry.failures == 0:
            return entry.last_attempt
        delay = min(self.retry_base * 2.0 ** (entry.failures - 1), self.retry_max)
        return entry.last_attempt + delay

    def score(self, entry: KnownAddress, now: float) -> float:
        """Preference for dialling ``entry``: fresh and recently good is best (``entries``)."""
        freshest = max(entry.last_seen, entry.last_success)
        age_hours = max(0.0, now - freshest) / 3600.0
        value = 1.0 / (1.0 + age_hours)
        if entry.last_success and now - entry.last_success < GOOD_WINDOW:
            value += 1.0
        return value / (1 + entry.failures)

    @staticmethod
    def is_terrible(entry: KnownAddress, now: float) -> bool:
        """Worth giving its slot to a newcomer (Core: ``AddrInfo::IsTerrible``): not dialled
        in the last RECENT_TRY, and unseen for HORIZON or never reached in
        NEVER_GOOD_RETRIES tries."""
        if entry.last_attempt and now - entry.last_attempt < RECENT_TRY:
            return False
        if now - max(entry.last_seen, entry.last_success) > HORIZON:
            return True
        return entry.last_success == 0 and entry.failures >= NEVER_GOOD_RETRIES

    def select(
        self, exclude: Collection[Address] = (), is_banned: Callable[[str], bool] | None = None
    ) -> Address | None:
        """A candidate for an outbound slot, or None if none was found.

        Core's ``Select``: each of at most SELECT_TRIES draws takes the tried or the
        new table at even odds (whichever is not empty), a random non-empty bucket
        and a random address in it; an address in ``exclude`` (connected or being
        dialled), banned, or in its failure back-off is passed over; another is
        accepted with a chance of FAILURE_CHANCE per failure, a chance that grows by
        SELECT_CHANCE_GROWTH with every draw.  Each draw touches one bucket.
        """
        now = self._clock()
        excluded = {self._address_key(*address) for address in exclude}
        tables = [table for table in (self._tried, self._new) if len(table)]
        if not tables:
            return None
        factor = 1.0
        for _ in range(SELECT_TRIES):
            address = self._rng.choice(tables).random_address(self._rng)
            assert address is not None  # the table is not empty
            entry = self._entries[address]
            usable = (
                address not in excluded
                and (is_banned is None or not is_banned(entry.host))
                and self.retry_at(entry) <= now
            )
            chance = FAILURE_CHANCE ** min(entry.failures, MAX_CHANCE_FAILURES)
            if usable and self._rng.random() < factor * chance:
                return address
            factor *= SELECT_CHANCE_GROWTH
        return None

    def for_gossip(
        self, limit: int, exclude: Collection[Address] = (), to: str | None = None
    ) -> list[KnownAddress]:
        """Up to ``limit`` addresses worth telling others about, freshest first.

        A random sample (Core's ``GetAddr``): at most GOSSIP_SAMPLE_FACTOR × ``limit``
        addresses are looked at.  Left out: ``exclude``, addresses failing
        GOSSIP_MAX_FAILURES times in a row or unseen for GOSSIP_HORIZON, and, with
        ``to`` (the asking peer's host), those it may not learn from us.
        """
        now = self._clock()
        excluded = {self._address_key(*address) for address in exclude}
        usable: list[KnownAddress] = []
        for looked, key in enumerate(self._random.sample(self._rng)):
            if len(usable) >= limit or looked >= limit * GOSSIP_SAMPLE_FACTOR:
                break
            entry = self._entries[key]
            if (
                key not in excluded
                and entry.failures < GOSSIP_MAX_FAILURES
                and now - max(entry.last_seen, entry.last_success) < GOSSIP_HORIZON
                and (to is None or may_learn(entry.host, to))
            ):
                usable.append(entry)
        usable.sort(key=lambda e: -max(e.last_seen, e.last_success))
        return usable

    def check(self) -> None:
        """Raise AssertionError unless the tables, the slots and the records agree and every
        address sits in the slot its hash names (Core's ``-checkaddrman``; reads the whole
        book: for tests)."""
        if not len(self._entries) == len(self._slots) == len(self._random):
            raise AssertionError("records, slots and the sampling set differ in size")
        if len(self._new) + len(self._tried) != len(self._entries):
            raise AssertionError("the tables hold another number of addresses than the book")
        for key, slot in self._slots.items():
            entry = self._entries[key]
            expected = (
                self._tried_slot(key)
                if slot.table is Table.TRIED
                else self._new_slot(entry, netgroup(entry.host), netgroup(entry.source))
            )
            if slot != expected or self._table(slot.table).at(slot.bucket, slot.position) != key:
                raise AssertionError(f"{format_address(*key)} is not in its own slot")

    def save(self) -> None:
        """Write the book to its file if it changed since the last save."""
        if self.path is None or not self._dirty:
            return
        data = {
            "version": FILE_FORMAT_VERSION,
            "key": self._key.hex(),
            "addresses": [
                {**entry.to_json(), "tried": self._slots[key].table is Table.TRIED}
                for key, entry in self._entries.items()
            ],
        }
        try:
            write_json_atomic(self.path, data)
            self._dirty = False
        except OSError as exc:
            log.error("cannot save address book %s: %s", self.path, exc)

    # --- internals ---------------------------------------------------------

    @staticmethod
    def _address_key(host: str, port: int) -> Address:
        return (canonical_host(host), port)

    def _learn_one(
        self,
        host: str,
        port: int,
        last_seen: float,
        source: str,
        source_reach: Scope,
        source_group: str,
        now: float,
    ) -> tuple[KnownAddress, bool] | None:
        """The stored record and whether it is new, or None if nothing changed (the source's
        scope and group are worked out once per message)."""
        ip = parse_ip(host)
        if ip is None or not 0 < port <= MAX_PORT:
            return None
        reach = ip_scope(ip)
        if reach is Scope.UNUSABLE or source_reach > reach:  # netaddr.may_learn
            return None
        key = (ip.compressed, port)
        seen = now if last_seen > now + FUTURE_TOLERANCE else last_seen
        current = self._entries.get(key)
        if current is not None:
            if seen <= current.last_seen:
                return None
            updated = replace(current, last_seen=seen)
            self._set(key, updated)
            return updated, False
        entry = KnownAddress(host=key[0], port=port, last_seen=seen, source=source)
        placed = self._place_new(entry, now, ip_group(ip), source_group)
        return (entry, True) if placed else None

    def _new_slot(self, entry: KnownAddress, group: str, source_group: str) -> Slot:
        table, name = self._new, format_address(entry.host, entry.port)
        per_source = min(NEW_BUCKETS_PER_SOURCE_GROUP, table.buckets)
        bucket = new_bucket(self._hash, group, source_group, table.buckets, per_source)
        position = bucket_position(self._hash, Table.NEW, bucket, name, table.size)
        return Slot(Table.NEW, bucket, position)

    def _tried_slot(self, key: Address) -> Slot:
        table, name = self._tried, format_address(*key)
        per_group = min(TRIED_BUCKETS_PER_GROUP, table.buckets)
        bucket = tried_bucket(self._hash, name, netgroup(key[0]), table.buckets, per_group)
        position = bucket_position(self._hash, Table.TRIED, bucket, name, table.size)
        return Slot(Table.TRIED, bucket, position)

    def _table(self, table: Table) -> BucketTable:
        return self._tried if table is Table.TRIED else self._new

    def _place_new(
        self,
        entry: KnownAddress,
        now: float,
        group: str | None = None,
        source_group: str | None = None,
    ) -> bool:
        """Put an address the book does not hold into its new slot, pushing out a terrible
        occupant; False (and nothing stored) if the occupant is not terrible.  The groups
        of the address and its source are worked out unless given."""
        slot = self._new_slot(
            entry,
            netgroup(entry.host) if group is None else group,
            netgroup(entry.source) if source_group is None else source_group,
        )
        occupant = self._new.at(slot.bucket, slot.position)
        if occupant is not None:
            if not self.is_terrible(self._entries[occupant], now):
                return False
            self._drop(occupant)
        self._put(entry, slot)
        return True

    def _put(self, entry: KnownAddress, slot: Slot) -> None:
        key = entry.address
        self._table(slot.table).put(slot.bucket, slot.position, key)
        self._slots[key] = slot
        self._random.add(key)
        self._set(key, entry)

    def _drop(self, key: Address) -> None:
        slot = self._slots.pop(key)
        self._table(slot.table).clear(slot.bucket, slot.position)
        self._random.discard(key)
        del self._entries[key]
        self._dirty = True

    def _set(self, key: Address, entry: KnownAddress) -> None:
        self._entries[key] = entry
        self._dirty = True

    def _update(self, address: Address, **changes: Any) -> None:
        key = self._address_key(*address)
        entry = self._entries.get(key)
        if entry is not None:
            self._set(key, replace(entry, **changes))

    def _load(self) -> None:
        """Read the file: version 2 as written; version 1 (no key, no tables) placed
        afresh, tried if it was ever reached, best-scored first so that a collision keeps
        the better one.  A malformed or unknown file is ignored (logged)."""
        if self.path is None:
            return
        data = read_json(self.path)
        if data is None:
            return
        try:
            version = data["version"]
            if version not in (1, FILE_FORMAT_VERSION):
                log.warning("ignoring address book %s of version %r", self.path, version)
                return
            if version == FILE_FORMAT_VERSION:
                key = bytes.fromhex(str(data["key"]))
                if len(key) != KEY_BYTES:
                    raise ValueError(f"key of {len(key)} bytes")
            items = [(_entry_from_json(item), item.get("tried")) for item in data["addresses"]]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("ignoring malformed address book %s: %s", self.path, exc)
            return
        now = self._clock()
        if version == FILE_FORMAT_VERSION:
            self._key, self._hash = key, KeyedHash(key)
            placed = [(entry, tried is True) for entry, tried in items]
        else:
            placed = [(entry, entry.last_success > 0) for entry, _ in items]
            placed.sort(key=lambda item: -self.score(item[0], now))
        for entry, tried in placed:
            self._restore(entry, tried, now)
        self._dirty = version != FILE_FORMAT_VERSION

    def _restore(self, entry: KnownAddress, tried: bool, now: float) -> None:
        """Place a record read from the file (tried if it was, and its slot is free)."""
        usable = is_ip_literal(entry.host) and 0 < entry.port <= MAX_PORT
        if not usable or entry.address in self._entries or not may_learn(entry.host, entry.source):
            return
        if tried:
            slot = self._tried_slot(entry.address)
            if self._tried.at(slot.bucket, slot.position) is None:
                self._put(entry, slot)
                return
        self._place_new(entry, now)


def _entry_from_json(item: dict[str, Any]) -> KnownAddress:
    return KnownAddress(
        host=canonical_host(str(item["host"])),
        port=int(item["port"]),
        last_seen=float(item["last_seen"]),
        last_success=float(item["last_success"]),
        last_attempt=float(item["last_attempt"]),
        failures=int(item["failures"]),
        source=str(item["source"]),
    )
