"""Batch verification of BIP340 signatures on a thread pool.

libsecp256k1 (through coincurve) releases the GIL, so verifying on N threads
is close to N times faster (see ../shared/machine-limits.md).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

from .crypto import verify_schnorr
from .errors import TxValidationError

MIN_PARALLEL_BATCH = 8      # below this many signatures, verifying inline is cheaper
Check = tuple[bytes, bytes, bytes]  # (x-only pubkey, signature, 32-byte message)


def _verify_chunk(checks: Sequence[Check]) -> int:
    """Index of the first invalid signature in ``checks``, or -1."""
    for n, (pubkey, sig, msg) in enumerate(checks):
        if not verify_schnorr(pubkey, sig, msg):
            return n
    return -1


class SignatureVerifier:
    """Verifies batches of signatures on ``threads`` threads: the caller and a pool of the rest."""

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or os.cpu_count() or 1
        self._pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="sigcheck") \
            if self.threads > 1 else None

    def verify(self, checks: Sequence[Check]) -> None:
        """Raise ``bad-txns-signature`` if any signature in ``checks`` is invalid."""
        if self._pool is None or len(checks) < MIN_PARALLEL_BATCH:
            bad = _verify_chunk(checks)
            if bad >= 0:
                raise TxValidationError("bad-txns-signature", f"invalid signature (check {bad})")
            return
        # one chunk per thread; the calling thread verifies the first itself (it would only wait)
        size = -(-len(checks) // self.threads)
        starts = range(0, len(checks), size)
        futures = [self._pool.submit(_verify_chunk, checks[i:i + size]) for i in starts[1:]]
        outcomes = [_verify_chunk(checks[:size])] + [f.result() for f in futures]
        for start, bad in zip(starts, outcomes):
            if bad >= 0:
                raise TxValidationError("bad-txns-signature", f"invalid signature (check {start + bad})")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
