"""The ban list: hosts refused for a while, persisted in the data directory.

A ban covers a host (IP address), every port of it.  Bans expire by
themselves; expired entries drop out on the next look-up.  The list is saved
to ``bans.json`` after every change (bans are rare; each write is atomic).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .protocol import canonical_host
from .storage import read_json, write_json_atomic

log = logging.getLogger("obol.net")

BANS_FILE = "bans.json"  # file name inside the data directory
FILE_FORMAT_VERSION = 1  # "version" field of the JSON file


@dataclass(frozen=True)
class Ban:
    """One banned host."""

    host: str  # canonical IP text (or lower-cased host name); every port is banned
    until: float  # unix seconds at which the ban expires
    reason: str  # why: a misbehaviour code (e.g. "bad-checksum") or operator text

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "until": self.until, "reason": self.reason}


class BanList:
    """Banned hosts with expiry; ``path`` None keeps the list in memory only."""

    def __init__(
        self, path: Path | str | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path) if path is not None else None  # JSON file, or None
        self._clock = clock  # wall-clock unix seconds
        self._bans: dict[str, Ban] = {}  # canonical host -> ban
        self._load()

    def ban(self, host: str, seconds: float, reason: str) -> Ban:
        """Ban ``host`` for ``seconds`` (an existing longer ban is kept)."""
        if seconds <= 0:
            raise ValueError("ban duration must be positive")
        key = canonical_host(host)
        until = self._clock() + seconds
        current = self._bans.get(key)
        if current is not None and current.until > until:
            until = current.until
        entry = Ban(host=key, until=until, reason=reason)
        self._bans[key] = entry
        self._save()
        return entry

    def is_banned(self, host: str) -> bool:
        """True if ``host`` is under a ban that has not expired."""
        key = canonical_host(host)
        entry = self._bans.get(key)
        if entry is None:
            return False
        if entry.until <= self._clock():
            del self._bans[key]
            self._save()
            return False
        return True

    def unban(self, host: str) -> bool:
        """Lift the ban on ``host``; False if it was not banned."""
        removed = self._bans.pop(canonical_host(host), None)
        if removed is not None:
            self._save()
        return removed is not None

    def clear(self) -> None:
        """Lift every ban."""
        self._bans.clear()
        self._save()

    def list(self) -> list[Ban]:
        """Active bans, soonest expiry first."""
        self._expire()
        return sorted(self._bans.values(), key=lambda b: (b.until, b.host))

    def __len__(self) -> int:
        self._expire()
        return len(self._bans)

    def _expire(self) -> None:
        now = self._clock()
        expired = [host for host, entry in self._bans.items() if entry.until <= now]
        for host in expired:
            del self._bans[host]
        if expired:
            self._save()

    def _load(self) -> None:
        if self.path is None:
            return
        data = read_json(self.path)
        if data is None:
            return
        try:
            for item in data["bans"]:
                entry = Ban(
                    host=canonical_host(str(item["host"])),
                    until=float(item["until"]),
                    reason=str(item["reason"]),
                )
                self._bans[entry.host] = entry
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("ignoring malformed ban list %s: %s", self.path, exc)
            self._bans.clear()
        self._expire()

    def _save(self) -> None:
        if self.path is None:
            return
        data = {
            "version": FILE_FORMAT_VERSION,
            "bans": [entry.to_json() for entry in self._bans.values()],
        }
        try:
            write_json_atomic(self.path, data)
        except OSError as exc:
            log.error("cannot save ban list %s: %s", self.path, exc)
