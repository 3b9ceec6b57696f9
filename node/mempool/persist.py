"""The mempool across restarts: saved on a clean stop, loaded at start (Bitcoin: mempool.dat).

The file is ``<datadir>/mempool.dat``, canonical msgpack like every other
byte the node writes::

    [MEMPOOL_FORMAT, [[transaction bytes, arrival time in unix ms], ...]]

parents before their children.  It is written to a temporary file, synced and
renamed over the old one, so a crash while saving leaves the previous file or
the new one, never half of one.  Loading sends every transaction through the
pool's normal validation (strict decoding, consensus rules, policy, signatures)
against the chain as it is now: the file is trusted for nothing.  A transaction
that no longer fits (confirmed meanwhile, conflicting, expired) is dropped; the
others keep their arrival time, so expiry counts from when they first came.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from node.mempool.pool import Mempool
from node.primitives.encoding import decode, encode
from node.primitives.errors import ObolError
from node.primitives.tx import Transaction

log = logging.getLogger("obol.mempool")

MEMPOOL_FILE = "mempool.dat"
MEMPOOL_FORMAT = 1  # the file's first field: its layout
LOAD_BATCH = 1024  # transactions validated together (one signature batch) when loading
MS = 1000  # milliseconds per second (times are stored as integer ms)


def save_mempool(pool: Mempool, path: Path) -> int:
    """Write every pool transaction to ``path`` atomically; return how many."""
    order = _parents_first(pool)
    records = [[pool.entries[txid].raw, int(pool.entries[txid].time * MS)] for txid in order]
    data = encode([MEMPOOL_FORMAT, records])
    tmp = path.with_name(path.name + ".new")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _sync_dir(path.parent)
    return len(records)


def load_mempool(pool: Mempool, path: Path) -> tuple[int, int]:
    """Validate the transactions saved at ``path`` into ``pool``; return (accepted, dropped).

    A missing file loads nothing; an unreadable or malformed one is logged and ignored
    (the node starts with an empty pool, as after an unclean stop)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return 0, 0
    except OSError as exc:
        log.warning("cannot read %s (%s): starting with an empty mempool", path, exc)
        return 0, 0
    try:
        records = _parse(raw)
    except (ObolError, ValueError) as exc:
        log.warning("%s is malformed (%s): starting with an empty mempool", path, exc)
        return 0, 0
    cutoff = pool.clock() - pool.expiry
    fresh = [(tx, ms / MS) for tx, ms in records if ms / MS >= cutoff]
    accepted = 0
    for start in range(0, len(fresh), LOAD_BATCH):
        batch = fresh[start : start + LOAD_BATCH]
        outcomes = pool.accept_many([tx for tx, _ in batch])
        for (tx, arrived), outcome in zip(batch, outcomes, strict=True):
            entry = pool.entries.get(tx.txid)
            if not isinstance(outcome, BaseException) and entry is not None:
                entry.time = arrived
                accepted += 1
    return accepted, len(records) - accepted


def _parse(raw: bytes) -> list[tuple[Transaction, int]]:
    """The (transaction, arrival ms) records of a mempool file, strictly decoded."""
    doc = decode(raw)
    if not isinstance(doc, list) or len(doc) != 2 or doc[0] != MEMPOOL_FORMAT:
        raise ValueError(f"not a mempool file of format {MEMPOOL_FORMAT}")
    if not isinstance(doc[1], list):
        raise ValueError("its records are not a list")
    records = []
    for record in doc[1]:
        if (
            not isinstance(record, list)
            or len(record) != 2
            or not isinstance(record[0], bytes)
            or not isinstance(record[1], int)
            or record[1] < 0
        ):
            raise ValueError("a record is not [transaction bytes, arrival ms]")
        records.append((Transaction.from_bytes(record[0]), record[1]))
    return records


def _parents_first(pool: Mempool) -> list[bytes]:
    """Every txid of the pool, oldest first, each after the pool parents it spends."""
    placed: set[bytes] = set()
    order: list[bytes] = []
    for root in sorted(pool.entries, key=lambda t: pool.entries[t].time):
        todo = [(root, False)]
        while todo:
            txid, expanded = todo.pop()
            if txid in placed:
                continue
            if expanded:
                placed.add(txid)
                order.append(txid)
                continue
            todo.append((txid, True))
            todo.extend(
                (p, False)
                for p in pool.entries[txid].parents
                if p in pool.entries and p not in placed
            )
    return order


def _sync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
