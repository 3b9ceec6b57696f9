"""Keep the resident part of the LMDB map within a budget.

LMDB reads through a read-only shared memory map of ``data.mdb``.  Each page
fault on it makes the kernel map up to 16 neighbouring pages that are in the
page cache ("fault-around", 64 KB; ``MADV_RANDOM`` does not turn it off), and
the neighbours of a UTXO page are mostly pages of other sub-databases (blocks,
indexes).  Random coin lookups therefore map most of the file: on a 160 MB
chain, filling the mempool added ~110 MB of resident file pages to the node.
Those pages are clean page cache, shared and reclaimable, but they count in
the process's RSS.

``MapBudget.check`` (at most every CHECK_INTERVAL: one read of ``/proc/self/statm``,
~35 µs) drops the map's
page-table entries with ``madvise(MADV_DONTNEED)`` once the file-backed resident
memory has grown by more than the budget since start-up (a larger one while
the node syncs: ``SYNC_MAP_RSS_BUDGET``).  The pages stay in
the page cache, so later reads only take a minor fault, and the contents are
unchanged: for a shared file mapping ``MADV_DONTNEED`` refills from the file.
LMDB writes through ``pwrite`` (no ``MDB_WRITEMAP``), so the map holds no
dirty pages to lose.  Linux only; elsewhere ``check`` does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("obol.store")

MAP_RSS_BUDGET = 8 * 1024**2  # bytes of file-backed resident memory tolerated above start-up
# ... while the node catches up with a peer (initial sync): every trim is followed by
# page faults on the pages the next blocks touch, ~10 % of the sync's speed at 8 MB
SYNC_MAP_RSS_BUDGET = 64 * 1024**2
CHECK_INTERVAL = 0.01  # seconds between two looks at the resident size
MADV_DONTNEED = 4  # <sys/mman.h> on Linux
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class MapBudget:
    """Bounds the resident pages of the memory map of one file (``data.mdb``)."""

    def __init__(
        self,
        data_file: Path,
        budget: int = MAP_RSS_BUDGET,
        syncing: Callable[[], bool] = lambda: False,
        sync_budget: int = SYNC_MAP_RSS_BUDGET,
    ) -> None:
        self.data_file = str(Path(data_file).resolve())
        self.budget = budget
        self.syncing = syncing  # asked at each look: is the node catching up?
        self.sync_budget = sync_budget  # the budget while it is
        self.trims = 0  # how often the map was dropped
        self._madvise = _libc_madvise()
        self._read_statm = _statm_reader()
        self._baseline = _file_resident(self._read_statm)  # libraries, whatever is mapped at start
        self._ranges: list[tuple[int, int]] | None = None
        self._next_check = 0.0  # monotonic seconds

    def check(self, force: bool = False) -> bool:
        """Drop the map's resident pages if over budget; True if it did.  Looks at most
        every CHECK_INTERVAL, unless ``force`` (during a scan of the whole map)."""
        if self._madvise is None or self._baseline is None:
            return False
        now = time.monotonic()
        if now < self._next_check and not force:
            return False
        self._next_check = now + CHECK_INTERVAL
        resident = _file_resident(self._read_statm)
        budget = self.sync_budget if self.syncing() else self.budget
        if resident is None or resident - self._baseline <= budget:
            return False
        if self._ranges is None:
            self._ranges = _mappings_of(self.data_file)
        for start, end in self._ranges:
            self._madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED)
        self.trims += 1
        after = _file_resident(self._read_statm) or 0
        log.debug(
            "dropped %.1f MB of LMDB map pages from memory (trim %d)",
            (resident - after) / 1e6,
            self.trims,
        )
        return True


def _libc_madvise():
    if not os.path.exists("/proc/self/statm"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    madvise = libc.madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    madvise.restype = ctypes.c_int
    return madvise


def _statm_reader() -> Callable[[], bytes | None] | None:
    """A reader of /proc/self/statm through libc called WITH the GIL held (``PyDLL``):
    Python's own file reads release the GIL, and the chain thread, which looks every
    CHECK_INTERVAL, then waits for the event loop to hand it back (docs/design.md)."""
    try:
        libc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None
    c_open, c_read, c_close = libc.open, libc.read, libc.close
    c_open.argtypes, c_open.restype = (ctypes.c_char_p, ctypes.c_int), ctypes.c_int
    c_read.argtypes, c_read.restype = (
        (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t),
        ctypes.c_ssize_t,
    )
    c_close.argtypes, c_close.restype = (ctypes.c_int,), ctypes.c_int

    def read() -> bytes | None:
        buffer = ctypes.create_string_buffer(256)  # one per call: two threads may look at once
        fd = c_open(b"/proc/self/statm", os.O_RDONLY)
        if fd < 0:
            return None
        try:
            got = c_read(fd, buffer, len(buffer))
        finally:
            c_close(fd)
        return buffer.raw[:got] if got > 0 else None

    return read


def _file_resident(read: Callable[[], bytes | None] | None = None) -> int | None:
    """Bytes of this process's resident shared (file-backed) pages, from /proc/self/statm
    (read by ``read`` if given, else by Python)."""
    if read is not None:
        data = read()
    else:
        try:
            with open("/proc/self/statm", "rb") as fh:
                data = fh.read()
        except OSError:
            data = None
    return int(data.split()[2]) * PAGE_SIZE if data else None


def _mappings_of(path: str) -> list[tuple[int, int]]:
    """Address ranges at which ``path`` is mapped into this process."""
    ranges = []
    with open("/proc/self/maps") as fh:
        for line in fh:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == path:
                start, end = (int(x, 16) for x in parts[0].split("-"))
                ranges.append((start, end))
    return ranges
