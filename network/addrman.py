"""The address book: nodes we may connect to, learned from gossip and config.

Each known listening address (host, port) keeps when it was last seen up,
when we last completed a handshake with it, and how often in a row dialling
it failed.  ``select`` picks the candidate for a free outbound slot: recently
good addresses first, banned and connected ones skipped, failing ones retried
only after an exponential back-off, and dropped after too many failures.
The book is capped in size (the worst entries are evicted) and persisted to
``peers.json`` by ``save()``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .protocol import MAX_PORT, canonical_host, is_ip_literal
from .storage import read_json, write_json_atomic

log = logging.getLogger("obol.net")

PEERS_FILE = "peers.json"  # file name inside the data directory
FILE_FORMAT_VERSION = 1  # "version" field of the JSON file
MAX_ENTRIES = 10_000  # addresses: default size cap of the book
MAX_FAILURES = 10  # consecutive failed dials after which an address is forgotten
RETRY_BASE = 1.0  # seconds: wait after the first failure, doubled per further failure
RETRY_MAX = 3600.0  # seconds: longest wait between retries of a failing address
GOOD_WINDOW = 24 * 3600.0  # seconds: a handshake this recent marks an address "recently good"
GOSSIP_HORIZON = 30 * 24 * 3600.0  # seconds: addresses not seen for this long are not gossiped
GOSSIP_MAX_FAILURES = 3  # addresses failing this often in a row are not gossiped
FUTURE_TOLERANCE = 600.0  # seconds: a last_seen further in the future is clamped to now
SELECT_POOL = 3  # select() picks at random among this many best-scored candidates

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


class AddrBook:
    """Known listening addresses; ``path`` None keeps the book in memory only."""

    def __init__(
        self,
        path: Path | str | None = None,
        max_entries: int = MAX_ENTRIES,
        retry_base: float = RETRY_BASE,
        retry_max: float = RETRY_MAX,
        max_failures: int = MAX_FAILURES,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else None  # JSON file, or None
        self.max_entries = max_entries  # size cap
        self.retry_base = retry_base  # seconds: back-off after one failure
        self.retry_max = retry_max  # seconds: longest back-off
        self.max_failures = max_failures  # failures in a row before an address is dropped
        self._clock = clock  # wall-clock unix seconds
        self._rng = rng or random.Random()  # tie-breaking among the best candidates
        self._entries: dict[Address, KnownAddress] = {}  # (host, port) -> record
        self._dirty = False  # changed since the last save
        self._load()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, address: object) -> bool:
        return isinstance(address, tuple) and self._key(*address) in self._entries

    def get(self, address: Address) -> KnownAddress | None:
        return self._entries.get(self._key(*address))

    def entries(self) -> list[KnownAddress]:
        """Every record, best score first."""
        now = self._clock()
        return sorted(self._entries.values(), key=lambda e: -self.score(e, now))

    def add(self, addresses: Iterable[tuple[str, int, float]], source: str) -> int:
        """Learn (host, port, last_seen) triples told by ``source``; return how many are new.

        Hosts that are not IP literals and port 0 are skipped.  A known
        address only has its last_seen moved forward.
        """
        now = self._clock()
        added = 0
        for host, port, last_seen in addresses:
            if not is_ip_literal(host.strip("[]")) or not 0 < port <= MAX_PORT:
                continue
            key = self._key(host, port)
            seen = float(last_seen)
            if seen > now + FUTURE_TOLERANCE:
                seen = now
            current = self._entries.get(key)
            if current is None:
                self._entries[key] = KnownAddress(
                    host=key[0], port=port, last_seen=seen, source=source
                )
                added += 1
            elif seen > current.last_seen:
                self._entries[key] = replace(current, last_seen=seen)
            else:
                continue
            self._dirty = True
        if len(self._entries) > self.max_entries:
            self._evict(now)
        return added

    def attempt(self, address: Address) -> None:
        """Record that we are dialling ``address`` now."""
        self._update(address, last_attempt=self._clock())

    def good(self, address: Address) -> None:
        """Record a completed handshake with ``address`` (added if unknown)."""
        now = self._clock()
        key = self._key(*address)
        if key not in self._entries:
            self.add([(key[0], key[1], now)], source="local")
        self._update(key, last_seen=now, last_success=now, last_attempt=now, failures=0)

    def failed(self, address: Address) -> None:
        """Record a failed dial; the address is forgotten after max_failures in a row."""
        key = self._key(*address)
        entry = self._entries.get(key)
        if entry is None:
            return
        if entry.failures + 1 >= self.max_failures:
            self.remove(key)
            return
        self._update(key, failures=entry.failures + 1, last_attempt=self._clock())

    def remove(self, address: Address) -> bool:
        """Forget ``address``; False if it was unknown."""
        removed = self._entries.pop(self._key(*address), None)
        if removed is not None:
            self._dirty = True
        return removed is not None

    def retry_at(self, entry: KnownAddress) -> float:
        """Unix seconds from which a failing address may be dialled again."""
        if entry.failures == 0:
            return entry.last_attempt
        delay = min(self.retry_base * 2.0 ** (entry.failures - 1), self.retry_max)
        return entry.last_attempt + delay

    def score(self, entry: KnownAddress, now: float) -> float:
        """Preference for dialling ``entry``: fresh and recently good is best."""
        freshest = max(entry.last_seen, entry.last_success)
        age_hours = max(0.0, now - freshest) / 3600.0
        value = 1.0 / (1.0 + age_hours)
        if entry.last_success and now - entry.last_success < GOOD_WINDOW:
            value += 1.0
        return value / (1 + entry.failures)

    def select(
        self, exclude: Collection[Address] = (), is_banned: Callable[[str], bool] | None = None
    ) -> Address | None:
        """A candidate for an outbound slot, or None if none is due.

        Skips ``exclude`` (connected or being dialled), banned hosts, and
        addresses still in their failure back-off.  Picks at random among the
        SELECT_POOL best-scored candidates.
        """
        now = self._clock()
        excluded = {self._key(*address) for address in exclude}
        candidates = [
            entry
            for key, entry in self._entries.items()
            if key not in excluded
            and (is_banned is None or not is_banned(entry.host))
            and self.retry_at(entry) <= now
        ]
        if not candidates:
            return None
        candidates.sort(key=lambda e: -self.score(e, now))
        return self._rng.choice(candidates[:SELECT_POOL]).address

    def for_gossip(self, limit: int, exclude: Collection[Address] = ()) -> list[KnownAddress]:
        """Up to ``limit`` addresses worth telling others about, freshest first."""
        now = self._clock()
        excluded = {self._key(*address) for address in exclude}
        usable = [
            entry
            for key, entry in self._entries.items()
            if key not in excluded
            and entry.failures < GOSSIP_MAX_FAILURES
            and now - max(entry.last_seen, entry.last_success) < GOSSIP_HORIZON
        ]
        usable.sort(key=lambda e: -max(e.last_seen, e.last_success))
        return usable[:limit]

    def save(self) -> None:
        """Write the book to its file if it changed since the last save."""
        if self.path is None or not self._dirty:
            return
        data = {
            "version": FILE_FORMAT_VERSION,
            "addresses": [entry.to_json() for entry in self._entries.values()],
        }
        try:
            write_json_atomic(self.path, data)
            self._dirty = False
        except OSError as exc:
            log.error("cannot save address book %s: %s", self.path, exc)

    # --- internals ---------------------------------------------------------

    @staticmethod
    def _key(host: str, port: int) -> Address:
        return (canonical_host(host), port)

    def _update(self, address: Address, **changes: Any) -> None:
        key = self._key(*address)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries[key] = replace(entry, **changes)
            self._dirty = True

    def _evict(self, now: float) -> None:
        ranked = sorted(self._entries.values(), key=lambda e: -self.score(e, now))
        for entry in ranked[self.max_entries :]:
            del self._entries[entry.address]
        self._dirty = True

    def _load(self) -> None:
        if self.path is None:
            return
        data = read_json(self.path)
        if data is None:
            return
        try:
            for item in data["addresses"]:
                entry = KnownAddress(
                    host=canonical_host(str(item["host"])),
                    port=int(item["port"]),
                    last_seen=float(item["last_seen"]),
                    last_success=float(item["last_success"]),
                    last_attempt=float(item["last_attempt"]),
                    failures=int(item["failures"]),
                    source=str(item["source"]),
                )
                if is_ip_literal(entry.host) and 0 < entry.port <= MAX_PORT:
                    self._entries[entry.address] = entry
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring malformed address book %s: %s", self.path, exc)
            self._entries.clear()
        if len(self._entries) > self.max_entries:
            self._evict(self._clock())
