"""Hashes, BIP340 Schnorr keys and signatures, bech32m addresses.

* ``sha256d`` names blocks and transactions.
* ``tagged_hash`` (BIP340 style: sha256(sha256(tag) || sha256(tag) || data))
  separates every other use of sha256 by domain.
* Keys are secp256k1 keys used through libsecp256k1 (``coincurve``); a public
  key is its 32-byte x-only form (BIP340) and a signature is 64 bytes.
* An address is the bech32m (BIP350) encoding of a 20-byte hash of the x-only
  public key, behind a human-readable prefix that names the network.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache

from coincurve import PrivateKey, PublicKeyXOnly

from node.primitives.errors import AddressError

PUBKEY_SIZE = 32  # bytes: BIP340 x-only public key
SIGNATURE_SIZE = 64  # bytes: BIP340 signature
ADDR_HASH_SIZE = 20  # bytes: hash of a public key that an output pays to
ADDRESS_VERSION = 0  # first 5-bit group of the address payload


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def sha256d(data: bytes) -> bytes:
    """Double sha256: the id of blocks (of their header) and transactions."""
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


@cache
def _tag_prefix(tag: str) -> bytes:
    tag_hash = hashlib.sha256(tag.encode()).digest()
    return tag_hash + tag_hash


@cache
def _tag_midstate(tag: str) -> hashlib._Hash:
    """sha256 after the tag prefix (one compression): only ever copied, never updated."""
    return hashlib.sha256(_tag_prefix(tag))


def tagged_hash(tag: str, data: bytes) -> bytes:
    """BIP340 tagged hash: a sha256 whose domain is fixed by ``tag``."""
    h = _tag_midstate(tag).copy()
    h.update(data)
    return h.digest()


def address_hash(pubkey: bytes) -> bytes:
    """The 20-byte hash an output pays to, of a 32-byte x-only public key."""
    return tagged_hash("Obol/address", pubkey)[:ADDR_HASH_SIZE]


# --- keys and signatures ------------------------------------------------------


class SigningKey:
    """A secp256k1 private key that signs with BIP340 Schnorr."""

    __slots__ = ("_key", "pubkey")

    def __init__(self, secret: bytes) -> None:
        self._key = PrivateKey(secret)
        self.pubkey: bytes = self._key.public_key_xonly.format()  # 32-byte x-only key

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(os.urandom(32))

    @property
    def secret(self) -> bytes:
        return self._key.secret

    @property
    def address_hash(self) -> bytes:
        return address_hash(self.pubkey)

    def sign(self, msg32: bytes) -> bytes:
        """BIP340 signature of a 32-byte message, with fresh auxiliary randomness."""
        return self._key.sign_schnorr(msg32, os.urandom(32))


def verify_schnorr(pubkey: bytes, signature: bytes, msg32: bytes) -> bool:
    """True if ``signature`` is a valid BIP340 signature of ``msg32`` by ``pubkey``.

    Never raises: a malformed key or signature is simply not valid.
    libsecp256k1 releases the GIL, so this scales across threads.
    """
    if len(pubkey) != PUBKEY_SIZE or len(signature) != SIGNATURE_SIZE or len(msg32) != 32:
        return False
    try:
        return PublicKeyXOnly(pubkey).verify(signature, msg32)
    except (ValueError, TypeError):
        return False


# --- bech32m (BIP350) ---------------------------------------------------------

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_CHARSET_REV = {c: i for i, c in enumerate(_CHARSET)}
BECH32M_CONST = 0x2BC830A3
BECH32_CONST = 1
MAX_BECH32_LENGTH = 90  # characters, as BIP173


def _polymod(values: list[int]) -> int:
    generator = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for value in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ value
        for i in range(5):
            chk ^= generator[i] if ((top >> i) & 1) else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp]


def bech32_create_checksum(hrp: str, data: list[int], const: int = BECH32M_CONST) -> list[int]:
    polymod = _polymod(_hrp_expand(hrp) + data + [0] * 6) ^ const
    return [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]


def bech32_encode(hrp: str, data: list[int], const: int = BECH32M_CONST) -> str:
    combined = data + bech32_create_checksum(hrp, data, const)
    return hrp + "1" + "".join(_CHARSET[d] for d in combined)


def bech32_decode(text: str) -> tuple[str, list[int], int]:
    """Split and checksum a bech32 or bech32m string.

    Returns (hrp, data without checksum, constant found) or raises AddressError.
    """
    if any(ord(c) < 33 or ord(c) > 126 for c in text):
        raise AddressError(message="invalid character")
    if text.lower() != text and text.upper() != text:
        raise AddressError(message="mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text) or len(text) > MAX_BECH32_LENGTH:
        raise AddressError(message="bad separator position or length")
    if not all(c in _CHARSET_REV for c in text[pos + 1 :]):
        raise AddressError(message="invalid data character")
    hrp = text[:pos]
    data = [_CHARSET_REV[c] for c in text[pos + 1 :]]
    const = _polymod(_hrp_expand(hrp) + data)
    if const not in (BECH32_CONST, BECH32M_CONST):
        raise AddressError(message="checksum mismatch (typo?)")
    return hrp, data[:-6], const


def convertbits(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    ret: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        if value < 0 or value >> frombits:
            raise AddressError(message="bad data value")
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            ret.append((acc >> bits) & maxv)
    if pad:
        if bits:
            ret.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise AddressError(message="bad padding")
    return ret


def encode_address(hrp: str, addr_hash: bytes) -> str:
    """bech32m address of a 20-byte public-key hash on the network ``hrp``."""
    if len(addr_hash) != ADDR_HASH_SIZE:
        raise AddressError(message=f"address hash must be {ADDR_HASH_SIZE} bytes")
    return bech32_encode(hrp, [ADDRESS_VERSION] + convertbits(addr_hash, 8, 5, True))


def decode_address(hrp: str, address: str) -> bytes:
    """The 20-byte hash inside ``address``; AddressError if it is not for ``hrp``."""
    if not isinstance(address, str) or not address:
        raise AddressError(message="address must be a non-empty string")
    found_hrp, data, const = bech32_decode(address)
    if found_hrp != hrp:
        raise AddressError(
            "wrong-network", f"address is for '{found_hrp}', this network uses '{hrp}'"
        )
    if const != BECH32M_CONST:
        raise AddressError(message="bech32 checksum where bech32m is required")
    if not data or data[0] != ADDRESS_VERSION:
        raise AddressError(message="unknown address version")
    payload = bytes(convertbits(data[1:], 5, 8, False))
    if len(payload) != ADDR_HASH_SIZE:
        raise AddressError(message=f"payload is {len(payload)} bytes, expected {ADDR_HASH_SIZE}")
    return payload
