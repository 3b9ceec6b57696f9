"""Verify a chunk of BIP340 signatures in one release of the GIL.

``first_invalid(checks)`` is the index of the first invalid check, or -1.  It
uses ``node.consensus._sigbatch`` (a C loop over the libsecp256k1 functions linked into
coincurve, built with the package) when that module could be built, and
coincurve one call per signature otherwise; both give the same answers
(tests/unit/consensus/test_sigbatch.py).  Why the loop exists: docs/design.md, "Signature
checks".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from node.primitives.crypto import verify_schnorr

log = logging.getLogger("obol.sigcheck")

Check = tuple[bytes, bytes, bytes]  # (x-only pubkey, signature, 32-byte message)


def first_invalid_python(checks: Sequence[Check]) -> int:
    """Index of the first invalid signature in ``checks``, or -1: one coincurve call each."""
    for n, (pubkey, sig, msg) in enumerate(checks):
        if not verify_schnorr(pubkey, sig, msg):
            return n
    return -1


def _native() -> Callable[[Sequence[Check]], int] | None:
    """The C loop bound to coincurve's context and functions, or None if it is not built."""
    try:
        from coincurve._libsecp256k1 import ffi, lib
        from coincurve.context import GLOBAL_CONTEXT

        from node.consensus import _sigbatch
    except ImportError as exc:
        log.warning(
            "node.consensus._sigbatch is not built (%s): verifying one signature per call", exc
        )
        return None

    def address(pointer: object) -> int:
        """The address a cffi pointer holds, as the C loop takes it."""
        return int(ffi.cast("uintptr_t", pointer))

    ctx = address(GLOBAL_CONTEXT.ctx)
    parse = address(ffi.addressof(lib, "secp256k1_xonly_pubkey_parse"))
    verify = address(ffi.addressof(lib, "secp256k1_schnorrsig_verify"))
    batch = _sigbatch.verify

    def first_invalid_native(checks: Sequence[Check]) -> int:
        """Index of the first invalid signature in ``checks``, or -1: one C call, GIL released."""
        return batch(ctx, parse, verify, checks)

    return first_invalid_native


NATIVE = _native()  # None if the C loop is not built
first_invalid = NATIVE or first_invalid_python  # what the verifier uses
