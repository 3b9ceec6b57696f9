"""Types of the C extension built from _sigbatch.c (optional: sigbatch.py verifies one
signature per coincurve call when it is not built)."""

from collections.abc import Sequence

def verify(
    ctx: int, parse: int, verify: int, checks: Sequence[tuple[bytes, bytes, bytes]], /
) -> int:
    """Index of the first invalid (pubkey, signature, message) check, or -1.

    ``ctx``, ``parse``, ``verify``: addresses of coincurve's context and of
    secp256k1_xonly_pubkey_parse and secp256k1_schnorrsig_verify.
    """
