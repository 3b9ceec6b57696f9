"""node.consensus.sigbatch (one GIL release per chunk) and node.sigcheck (jobs on the pool)."""

from __future__ import annotations

import hashlib
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.consensus.sigbatch import NATIVE, first_invalid, first_invalid_python
from node.consensus.sigcheck import SignatureVerifier
from node.primitives.crypto import SigningKey
from node.primitives.errors import TxValidationError
from tests.unit.primitives.test_crypto import BIP340_VECTORS

KEYS = [SigningKey(hashlib.sha256(bytes([i])).digest()) for i in range(4)]


def good_check(n: int) -> tuple[bytes, bytes, bytes]:
    key = KEYS[n % len(KEYS)]
    msg = hashlib.sha256(n.to_bytes(4, "big")).digest()
    return key.pubkey, key.sign(msg), msg


GOOD = [good_check(n) for n in range(40)]


def test_the_c_loop_is_built_and_used():
    """make test installs the package with its extension: the fast path must be there."""
    assert NATIVE is not None
    assert first_invalid is NATIVE


@pytest.mark.parametrize("vector", BIP340_VECTORS, ids=lambda v: f"bip340-{v[0]}")
def test_bip340_vectors_give_the_same_answer_both_ways(vector):
    _, _, pubkey, _, msg, sig, expected = vector
    check = (bytes.fromhex(pubkey), bytes.fromhex(sig), bytes.fromhex(msg))
    want = -1 if expected else 0
    assert first_invalid_python([check]) == want
    assert NATIVE([check]) == want


def _broken(check, how: int):
    pubkey, sig, msg = check
    return [
        (pubkey, bytes([sig[0] ^ 1]) + sig[1:], msg),  # wrong signature
        (pubkey, sig, bytes([msg[0] ^ 1]) + msg[1:]),  # wrong message
        (KEYS[1].pubkey if pubkey == KEYS[0].pubkey else KEYS[0].pubkey, sig, msg),  # other key
        (pubkey[:31], sig, msg),  # short key
        (pubkey, sig + b"\0", msg),  # long signature
        (pubkey, sig, msg[:16]),  # short message
        (bytearray(pubkey), sig, msg),  # not bytes
        (b"\xff" * 32, sig, msg),  # not a curve point
        [pubkey, sig, msg],  # not a tuple
        (pubkey, sig),  # two fields
    ][how]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(-1, 9)), max_size=30))
def test_the_c_loop_agrees_with_coincurve_on_any_mix(plan):
    """Valid, invalid and malformed checks in any order: the same first invalid index."""
    checks = [GOOD[i] if how < 0 else _broken(GOOD[i], how) for i, how in plan]
    expected = next((n for n, (_, how) in enumerate(plan) if how >= 0), -1)
    assert NATIVE(checks) == expected
    if all(isinstance(c, tuple) and len(c) == 3 for c in checks):
        assert first_invalid_python(checks) == expected


def test_a_non_sequence_is_a_type_error():
    with pytest.raises(TypeError):
        NATIVE(42)


@pytest.fixture
def verifier():
    v = SignatureVerifier(threads=3)
    yield v
    v.close()


def test_started_job_of_valid_checks_waits_clean(verifier):
    job = verifier.start(GOOD, chunk=4)
    job.wait()
    assert job.bad == -1


@pytest.mark.parametrize("bad_at", [0, 13, 39])
def test_started_job_reports_the_invalid_check(verifier, bad_at):
    checks = list(GOOD)
    checks[bad_at] = _broken(checks[bad_at], 0)
    job = verifier.start(checks, chunk=4)
    with pytest.raises(TxValidationError) as err:
        job.wait()
    assert err.value.code == "bad-txns-signature"
    assert job.bad >= 0 and checks[job.bad] is not GOOD[job.bad]


def test_verify_finds_a_bad_signature_in_every_position(verifier):
    for bad_at in range(0, len(GOOD), 7):
        checks = list(GOOD)
        checks[bad_at] = _broken(checks[bad_at], 1)
        with pytest.raises(TxValidationError, match=f"check {bad_at}"):
            verifier.verify(checks)
    verifier.verify(GOOD)


def test_cancelled_job_leaves_unclaimed_chunks_and_wait_returns(verifier):
    """A cancelled job (an abandoned switch) verifies no more chunks; wait does not hang."""
    job = verifier.start(GOOD * 20, chunk=1)
    job.cancel()
    job.wait()


def test_jobs_overlap_with_python_in_the_calling_thread(verifier):
    """The pool verifies a started job while this thread keeps running Python."""
    job = verifier.start(GOOD, chunk=8)
    done = threading.Event()
    spins = 0
    while not done.is_set() and spins < 10_000_000:
        spins += 1
        if not job._todo and not job._running:
            done.set()
    assert done.is_set(), "the pool did not finish the job while the caller was busy"
    job.wait()
