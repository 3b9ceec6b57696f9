"""Verification of BIP340 signatures on a thread pool.

A batch is cut into chunks; each chunk is verified in one call that releases
the GIL for the whole chunk (``node.consensus.sigbatch``), so pool threads verify while
the calling thread runs Python.  ``start`` hands a batch to the pool and
returns at once (connecting the next block overlaps the checks of this one);
``VerifyJob.wait`` then verifies whatever chunks are still unclaimed in the
calling thread and waits for the rest.  ``verify`` is both in one call.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from node.consensus.sigbatch import Check, first_invalid
from node.primitives.errors import TxValidationError

MIN_PARALLEL_BATCH = 8  # below this many signatures, verifying inline is cheaper
JOB_CHUNK = 64  # signatures per chunk of a started job (~4 ms): one GIL round trip each
# A verifying thread needs the GIL back after each chunk; while another thread runs
# Python it waits for the switch interval (CPython's default 5 ms, longer than a chunk).
SWITCH_INTERVAL = 0.001  # seconds


class VerifyJob:
    """Chunks of one batch, claimed one at a time by pool threads and by ``wait``."""

    def __init__(self, checks: Sequence[Check], chunk: int) -> None:
        # (offset, chunk) pairs, last first so that pop() hands them out in order
        self._todo = [(i, checks[i : i + chunk]) for i in range(0, len(checks), chunk)][::-1]
        self._lock = threading.Lock()
        self._running = 0  # chunks claimed and not finished
        self._idle = threading.Condition(self._lock)
        self.bad = -1  # offset of an invalid check, once one is found

    def _drain(self) -> None:
        """Verify unclaimed chunks until none is left (or one fails)."""
        while self.bad < 0:
            with self._lock:
                if not self._todo:
                    return
                offset, chunk = self._todo.pop()
                self._running += 1
            bad = -1
            try:
                bad = first_invalid(chunk)
            finally:
                with self._lock:
                    self._running -= 1
                    if bad >= 0 and (self.bad < 0 or offset + bad < self.bad):
                        self.bad = offset + bad
                    self._idle.notify_all()

    def help(self) -> None:
        """Verify this job's unclaimed chunks in the calling thread, without waiting for
        the pool's (call on every pending job before waiting on the first)."""
        self._drain()

    def cancel(self) -> None:
        """Leave unclaimed chunks unverified (the caller no longer needs the answer)."""
        with self._lock:
            self._todo.clear()

    def wait(self) -> None:
        """Help with the remaining chunks, wait for the others; raise if one check failed."""
        self._drain()
        with self._lock:
            if self.bad >= 0:
                self._todo.clear()
            while self._running:
                self._idle.wait()
        if self.bad >= 0:
            raise TxValidationError("bad-txns-signature", f"invalid signature (check {self.bad})")


class SignatureVerifier:
    """Verifies batches of signatures on ``threads`` threads: the caller and a pool of the rest."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or os.cpu_count() or 1
        self._pool = (
            ThreadPoolExecutor(self.threads - 1, thread_name_prefix="sigcheck")
            if self.threads > 1
            else None
        )
        if self._pool is not None and sys.getswitchinterval() > SWITCH_INTERVAL:
            sys.setswitchinterval(SWITCH_INTERVAL)  # process-wide: see SWITCH_INTERVAL

    def start(self, checks: Sequence[Check], chunk: int = JOB_CHUNK) -> VerifyJob:
        """Begin verifying ``checks`` on the pool; ``wait()`` on the job for the outcome."""
        job = VerifyJob(checks, max(1, chunk))
        if self._pool is not None:
            for _ in range(min(self.threads - 1, len(job._todo))):
                self._pool.submit(job._drain)
        return job

    def verify(self, checks: Sequence[Check]) -> None:
        """Raise ``bad-txns-signature`` if any signature in ``checks`` is invalid."""
        if self._pool is None or len(checks) < MIN_PARALLEL_BATCH:
            bad = first_invalid(checks)
            if bad >= 0:
                raise TxValidationError("bad-txns-signature", f"invalid signature (check {bad})")
            return
        # one chunk per thread; the calling thread verifies one itself (it would only wait)
        self.start(checks, -(-len(checks) // self.threads)).wait()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
