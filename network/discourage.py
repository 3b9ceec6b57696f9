"""Discouraged addresses: hosts that misbehaved, kept out of the way without a ban.

Bitcoin Core (0.21+) no longer bans for misbehaviour: it *discourages* the
address (``BanMan::Discourage``, a rolling filter of recent offenders).  A
discouraged host may still connect inbound while a slot is free, but it is
refused when inbound slots are full, its connections are the first evicted, and
it is never dialled from the address book.  So one broken or hostile client
behind a shared address (a NAT, a local machine) costs the others nothing while
there is room, and an operator's ban stays a deliberate, persisted decision
(``bans.py``).

The set is exact and bounded: at most ``capacity`` hosts, the oldest entry
dropping out first, each forgotten after ``seconds``.  It is kept in memory only,
as Core's filter is.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import canonical_host

MAX_DISCOURAGED = 50_000  # hosts remembered (Core's filter holds 50,000); about 5 MB at most


@dataclass(frozen=True)
class Discouraged:
    """One discouraged host."""

    host: str  # canonical IP text
    until: float  # unix seconds at which it is forgotten
    reason: str  # the misbehaviour code that discouraged it


class DiscouragedSet:
    """Recently misbehaving hosts, bounded in count and time."""

    def __init__(
        self,
        seconds: float,
        capacity: int = MAX_DISCOURAGED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if seconds <= 0 or capacity <= 0:
            raise ValueError("discouragement needs a positive duration and capacity")
        self.seconds = seconds  # how long a host stays discouraged
        self.capacity = capacity  # most hosts kept; the oldest goes first
        self._clock = clock  # wall-clock unix seconds
        self._hosts: collections.OrderedDict[str, Discouraged] = collections.OrderedDict()

    def discourage(self, host: str, reason: str) -> Discouraged:
        """Discourage ``host`` for ``seconds`` from now (again, if it already was)."""
        key = canonical_host(host)
        entry = Discouraged(key, self._clock() + self.seconds, reason)
        self._hosts.pop(key, None)
        self._hosts[key] = entry
        while len(self._hosts) > self.capacity:
            self._hosts.popitem(last=False)
        return entry

    def __contains__(self, host: object) -> bool:
        if not isinstance(host, str):
            return False
        key = canonical_host(host)
        entry = self._hosts.get(key)
        if entry is None:
            return False
        if entry.until <= self._clock():
            del self._hosts[key]
            return False
        return True

    def get(self, host: str) -> Discouraged | None:
        """The entry of ``host`` if it is discouraged now."""
        return self._hosts.get(canonical_host(host)) if host in self else None

    def clear(self) -> None:
        self._hosts.clear()

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for entry in self._hosts.values() if entry.until > now)
