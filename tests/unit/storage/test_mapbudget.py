"""MapBudget drops the LMDB map's resident pages when they exceed the budget,
and reads after a drop still see the same data."""

from __future__ import annotations

import os
import sys

import lmdb
import pytest

from node.storage import mapbudget
from node.storage.mapbudget import MapBudget

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")


def _fill(path, count: int = 4000) -> lmdb.Environment:
    """An LMDB environment holding ``count`` records of 1000 bytes (close it: ``with``)."""
    env = lmdb.open(str(path), map_size=256 * 1024**2, readahead=False)
    with env.begin(write=True) as txn:
        for i in range(count):
            txn.put(i.to_bytes(4, "big"), os.urandom(1000))
    return env


def _read_all(env: lmdb.Environment) -> dict[bytes, bytes]:
    with env.begin() as txn:
        return {bytes(k): bytes(v) for k, v in txn.cursor()}


def test_over_budget_drops_the_map_and_data_reads_back(tmp_path):
    with _fill(tmp_path / "db") as env:
        budget = MapBudget(tmp_path / "db" / "data.mdb", budget=1024**2)
        before = _read_all(env)  # ~4 MB of the map now resident
        grown = mapbudget._file_resident() - budget._baseline
        assert grown > 2 * 1024**2
        assert budget.check() is True and budget.trims == 1
        assert mapbudget._file_resident() - budget._baseline < grown / 2
        assert _read_all(env) == before  # refilled from the file, unchanged


def test_under_budget_or_too_soon_does_nothing(tmp_path):
    with _fill(tmp_path / "db", count=100) as env:
        budget = MapBudget(tmp_path / "db" / "data.mdb", budget=64 * 1024**2)
        _read_all(env)
        assert budget.check() is False and budget.trims == 0  # 100 KB: under budget
        budget.budget = 0
        # checked less than CHECK_INTERVAL ago
        assert budget.check() is False
        assert budget.check(force=True) is True and budget.trims == 1  # a scan looks at once


def test_while_syncing_the_larger_budget_applies(tmp_path):
    """Over the normal budget but under the sync budget: nothing is dropped while the
    node syncs, and the next look after the sync trims."""
    syncing = [True]
    with _fill(tmp_path / "db") as env:
        budget = MapBudget(
            tmp_path / "db" / "data.mdb",
            budget=1024**2,
            syncing=lambda: syncing[0],
            sync_budget=256 * 1024**2,
        )
        _read_all(env)  # ~4 MB resident: over 1 MB
        assert budget.check() is False and budget.trims == 0
        syncing[0] = False
        budget._next_check = 0.0
        assert budget.check() is True and budget.trims == 1


def test_the_libc_statm_reader_agrees_with_python():
    read = mapbudget._statm_reader()
    assert read is not None
    fields = read().split()
    assert len(fields) == 7 and all(f.isdigit() for f in fields)
    ours, python = mapbudget._file_resident(read), mapbudget._file_resident()
    assert abs(ours - python) <= 64 * mapbudget.PAGE_SIZE  # the same counter, a moment apart
