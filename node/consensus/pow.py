"""Proof of work: compact target bits, work, and the ASERT retarget.

A header is valid work when ``int.from_bytes(sha256d(header), "big") <= target``.
The target travels in the header as 32-bit compact "bits" (Bitcoin's nBits):
one exponent byte and a 3-byte mantissa, target = mantissa * 256^(exponent-3).

Difficulty is retargeted at every block by ASERT (aserti3-2d, as Bitcoin Cash
uses it), in integer arithmetic only.  The anchor is the block at height 1,
so a network's clock starts when its first block is mined, not at its genesis
timestamp.  See docs/protocol.md, "Proof of work".
"""

from __future__ import annotations

from node.primitives.errors import BlockValidationError

MAX_TARGET_BITS = 256  # a target is a 256-bit unsigned integer
ASERT_RADIX_BITS = 16  # fixed-point precision of the ASERT exponent


def bits_to_target(bits: int) -> int:
    """Expand compact bits; raise ``bad-diffbits`` if negative, zero or overflowing."""
    exponent = bits >> 24
    mantissa = bits & 0x007FFFFF
    if bits & 0x00800000:
        raise BlockValidationError("bad-diffbits", "negative target")
    if exponent <= 3:
        target = mantissa >> (8 * (3 - exponent))
    else:
        target = mantissa << (8 * (exponent - 3))
    if target == 0:
        raise BlockValidationError("bad-diffbits", "zero target")
    if target.bit_length() > MAX_TARGET_BITS:
        raise BlockValidationError("bad-diffbits", "target overflows 256 bits")
    return target


def target_to_bits(target: int) -> int:
    """Compact form of ``target`` (rounded down to 3 significant bytes)."""
    if target <= 0:
        raise ValueError("target must be positive")
    size = (target.bit_length() + 7) // 8
    if size <= 3:
        mantissa = target << (8 * (3 - size))
    else:
        mantissa = target >> (8 * (size - 3))
    if mantissa & 0x00800000:  # keep the sign bit clear
        mantissa >>= 8
        size += 1
    return (size << 24) | mantissa


def block_work(target: int) -> int:
    """Expected number of hashes to find a block at ``target``: 2^256 // (target + 1)."""
    return (1 << 256) // (target + 1)


def hash_meets_target(block_hash: bytes, target: int) -> bool:
    return int.from_bytes(block_hash, "big") <= target


def asert_target(
    anchor_target: int,
    time_diff: int,
    height_diff: int,
    spacing: int,
    half_life: int,
    pow_limit: int,
) -> int:
    """ASERT: the target of a block whose parent is ``height_diff`` blocks and
    ``time_diff`` seconds after the anchor block (height 1).

    target = anchor_target * 2^((time_diff - spacing * height_diff) / half_life),
    with 2^x approximated by the aserti3-2d cubic polynomial on 16 fractional bits.
    Floor division and arithmetic shifts throughout; the result is clamped to
    [1, pow_limit].
    """
    exponent = ((time_diff - spacing * height_diff) << ASERT_RADIX_BITS) // half_life
    shifts = exponent >> ASERT_RADIX_BITS
    frac = exponent & 0xFFFF
    poly = 195766423245049 * frac + 971821376 * frac * frac + 5127 * frac * frac * frac
    factor = 65536 + ((poly + (1 << 47)) >> 48)
    target = anchor_target * factor
    if shifts < 0:
        target >>= -shifts
    else:
        target <<= shifts
    target >>= ASERT_RADIX_BITS
    if target == 0:
        return 1
    return min(target, pow_limit)
