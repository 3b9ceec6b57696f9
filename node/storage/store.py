"""The chain's LMDB environment: opening a datadir, its sub-databases, refusing the wrong one.

One environment per datadir (``<datadir>/chain.lmdb``).  Every change to the
chain (connect, disconnect, a whole reorg) is one write transaction, so a
crash at any instant leaves either the old or the new state on disk.  The
sub-databases, their keys and values are in ``schema``; a datadir of an older
schema is brought up to date by ``upgrade`` in the transaction that opens it.
"""

from __future__ import annotations

from pathlib import Path

import lmdb

from node.primitives.encoding import decode, encode
from node.storage.schema import DB_NAMES, DROPPED_DBS, SCHEMA_VERSION
from node.storage.upgrade import upgrade

MAP_SIZE = 64 * 1024**3  # bytes of address space reserved for the database (sparse)


class StoreError(Exception):
    """The datadir cannot be used (locked, another network, newer schema)."""


class Store:
    """The LMDB environment and its named sub-databases."""

    def __init__(self, path: Path, network: str, readonly: bool = False, sync: bool = True) -> None:
        path.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.readonly = readonly
        self.closed = False
        self.sync = sync  # each commit waits for the disk (False: synced at close only)
        # metasync=False: one fdatasync per commit (the data pages), the meta page is
        # flushed by the next commit or the OS; LMDB keeps the database intact, and only
        # an OS crash (never a process crash) can lose the last commit (docs/design.md).
        # sync=False (regtest): no fdatasync per commit; the OS writes the pages back
        self.env = lmdb.open(
            str(path / "chain.lmdb"),
            map_size=MAP_SIZE,
            max_dbs=len(DB_NAMES) + len(DROPPED_DBS),
            subdir=True,
            sync=sync,
            metasync=False,
            readahead=False,
            max_readers=256,
            readonly=readonly,
        )
        try:
            if readonly:  # an older schema may lack sub-databases: refuse before opening them
                with self.env.begin() as txn:
                    raw = txn.get(b"schema", db=self.env.open_db(b"meta", txn=txn, create=False))
                if raw is not None and decode(raw) < SCHEMA_VERSION:
                    raise StoreError(
                        f"datadir {path} has schema {decode(raw)}, older than "
                        f"{SCHEMA_VERSION}: open it once read-write to upgrade it"
                    )
            self.db = {name: self.env.open_db(name.encode()) for name in DB_NAMES}
            with self.env.begin(write=not readonly) as txn:
                found = txn.get(b"network", db=self.db["meta"])
                if found is None and not readonly:
                    txn.put(b"network", network.encode(), db=self.db["meta"])
                    txn.put(b"schema", encode(SCHEMA_VERSION), db=self.db["meta"])
                elif found is not None and found.decode() != network:
                    raise StoreError(
                        f"datadir {path} holds the '{found.decode()}' network, not '{network}'"
                    )
                raw_schema = txn.get(b"schema", db=self.db["meta"])
                schema = decode(raw_schema) if raw_schema is not None else SCHEMA_VERSION
                if schema > SCHEMA_VERSION:
                    raise StoreError(
                        f"datadir {path} has schema {schema}, newer than {SCHEMA_VERSION}"
                    )
                if schema < SCHEMA_VERSION:
                    upgrade(self.env, self.db, txn, schema)
        except BaseException:
            # a refused datadir must not stay open: a second environment on the same
            # files in this process would share (and on close drop) LMDB's locks
            self.env.close()
            raise

    def close(self) -> None:
        """Close the environment (again: a no-op); unsynced commits reach the disk first."""
        if not self.sync and not self.readonly and not self.closed:
            self.env.sync(True)
        self.closed = True
        self.env.close()


def hot_copy(datadir: Path, dest: Path) -> int:
    """Copy the chain of ``datadir`` to ``dest`` (a new datadir) while a node may be using
    it: one LMDB read transaction sees one committed state, compacted on the way (Bitcoin
    Core's ``backupwallet`` spirit, LMDB's ``mdb_copy -c``).  Returns the bytes written.
    Only the chain is copied: the address book, bans and mempool are rebuilt by a node."""
    source = datadir / "chain.lmdb"
    if not (source / "data.mdb").exists():
        raise StoreError(f"{datadir} holds no chain (no chain.lmdb/data.mdb)")
    target = dest / "chain.lmdb"
    if target.exists():
        raise StoreError(f"{target} exists: back up into a new directory")
    target.mkdir(parents=True)
    env = lmdb.open(
        str(source),
        map_size=MAP_SIZE,
        max_dbs=len(DB_NAMES) + len(DROPPED_DBS),
        readonly=True,
        max_readers=256,
    )
    try:
        env.copy(str(target), compact=True)
    finally:
        env.close()
    return (target / "data.mdb").stat().st_size
