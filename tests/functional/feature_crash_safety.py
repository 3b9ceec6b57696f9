"""Crash safety: SIGKILL a process that connects blocks (and reorganises) at random
instants; the datadir must always reopen consistent, and the work must be resumable."""

from __future__ import annotations

import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from node.chain.index import BlockStatus
from node.primitives.encoding import decode_stored
from tests.framework.blocktools import make_params
from tests.framework.chains import opened_chain
from tests.framework.crash_worker import worker_key
from tests.framework.programs import killed_at_exit
from tests.framework.replay import assert_matches_replay
from tests.framework.util import REPO_ROOT

WORKER = REPO_ROOT / "tests" / "framework" / "crash_worker.py"
KILLS = 5


def start_worker(datadir: Path, seed: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(datadir), seed, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError("worker printed nothing in time")
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"worker died: rc={proc.wait()} stderr={proc.stderr.read()}")
    return line.strip()


def check_consistent(datadir: Path, replay_dir: Path, params, addr: bytes) -> int:
    """Reopen ``datadir`` and check it against a replay of its own active chain;
    return the height."""
    with opened_chain(datadir, params) as chain:
        assert_matches_replay(chain, replay_dir)  # chain db, stats, UTXO set, address coins
        blocks = [chain.reader.get_block(e.hash) for e in chain.chain[1:]]
        assert all(e.status == BlockStatus.VALID for e in chain.chain)
        # every active block has its undo data and every confirmed tx is indexed; entries
        # left by disconnected blocks point off the active chain and are not counted
        assert all(chain.reader.db_get("undo", e.hash) is not None for e in chain.chain[1:])
        entries = dict(chain.reader.db_items("txindex"))
        entries.update(chain.reader.db_items("txrecent"))  # the newer entry of a txid
        indexed = [decode_stored(v)[0] for v in entries.values()]
        active = {e.hash for e in chain.chain}
        assert sum(1 for h in indexed if h in active) == sum(len(b.txs) for b in blocks)
        for block in blocks:
            for pos, tx in enumerate(block.txs):
                assert chain.reader.get_tx_location(tx.txid) == (block.hash, pos)
        with opened_chain(replay_dir, params) as fresh:
            assert chain.reader.address_history(addr, limit=10**6) == fresh.reader.address_history(
                addr, limit=10**6
            )
        return chain.height


def test_sigkill_at_random_points_leaves_consistent_resumable_state(tmp_path):
    """SIGKILL a block-connecting worker 5 times at random;
    the datadir always reopens consistent and resumable."""
    params = make_params()
    datadir = tmp_path / "data"
    seed = "crash-test"
    addr = worker_key(seed).address_hash
    rng = random.Random()
    heights = []
    for round_ in range(KILLS):
        with killed_at_exit(start_worker(datadir, seed)) as proc:
            started = read_line(proc, timeout=30)
            assert started.startswith("started height=")
            start_height = int(started.split("=")[1])
            assert start_height == (heights[-1] if heights else 0)  # resumed where it was left
            time.sleep(rng.uniform(0.05, 0.4))
            assert proc.poll() is None, proc.stderr.read()
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        heights.append(check_consistent(datadir, tmp_path / f"replay{round_}", params, addr))
    assert heights[-1] > 0 and heights == sorted(heights)
    # a last, uninterrupted run continues from the recovered state and exits cleanly
    proc = start_worker(datadir, seed, "4")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.split()
    assert lines[0] == "started" and lines[1] == f"height={heights[-1]}"
    final = int(lines[-1].split("=")[1])
    assert final >= heights[-1] + 4
    assert check_consistent(datadir, tmp_path / "replay-final", params, addr) == final
