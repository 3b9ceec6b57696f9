"""Wallet keys: BIP-39 recovery phrases, BIP-32 derivation, Obol addresses.

Recovery phrase (BIP-39, English word list)
    A phrase of 12 or 24 words (15, 18 and 21 are accepted on restore) encodes
    128 to 256 bits of entropy plus a checksum.  Phrase and optional BIP-39
    passphrase become a 64-byte seed by PBKDF2-HMAC-SHA512 (2048 rounds, salt
    ``"mnemonic" + passphrase``, both NFKD-normalised).  Phrases are
    normalised before use: NFKD, lower case, single spaces between words.

Key tree (BIP-32 on secp256k1)
    The master key is HMAC-SHA512(key=b"Bitcoin seed", seed); children are
    derived with CKDpriv, hardened (index >= 2**31, written ``i'``) or normal.

Derivation path per network::

    m / 86' / COIN' / 0' / CHANGE / INDEX

    COIN    7337 on main; 1 on testnet and regtest (any test network)
    0'      the account; this wallet uses account 0 only
    CHANGE  0 = receive addresses (given to payers), 1 = change addresses
    INDEX   0, 1, 2 ... (non-hardened, below 2**31)

Address of a key
    ``encode_address(hrp, address_hash(xonly))`` where ``xonly`` is the
    32-byte x coordinate of the key's public point (BIP-340), and ``hrp`` is
    the network's human-readable prefix (main ``obol``, testnet ``tobol``,
    regtest ``robol``).  The key signs with ``node.primitives.crypto.SigningKey``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from coincurve import PrivateKey
from mnemonic import Mnemonic

from node.primitives.crypto import SigningKey, address_hash, encode_address

from .errors import BadMnemonicError, BadPathError, InvalidChildKeyError, UnknownNetworkError

# --- BIP-39 ------------------------------------------------------------------

MNEMONIC_WORD_COUNTS = (12, 15, 18, 21, 24)  # accepted phrase lengths, words
GENERATED_WORD_COUNTS = (12, 24)  # phrase lengths this wallet creates, words
BITS_PER_WORD = 11  # bits: each word indexes a 2048-word list
SEED_SIZE = 64  # bytes: BIP-39 seed
PBKDF2_ROUNDS = 2048  # BIP-39 key stretching iterations
PBKDF2_SALT_PREFIX = "mnemonic"  # BIP-39 salt = prefix + passphrase


@lru_cache(maxsize=1)
def _english_words() -> tuple[str, ...]:
    """The 2048-word BIP-39 English list, in order (index = word value)."""
    words = tuple(Mnemonic("english").wordlist)
    assert len(words) == 1 << BITS_PER_WORD
    return words


@lru_cache(maxsize=1)
def _english_index() -> MappingProxyType[str, int]:
    """Word -> its value (its index in the BIP-39 English list)."""
    return MappingProxyType({word: i for i, word in enumerate(_english_words())})


def normalize_mnemonic(mnemonic: str) -> str:
    """NFKD, lower case, words separated by single spaces (no validation)."""
    if not isinstance(mnemonic, str):
        raise BadMnemonicError(message="the recovery phrase must be text")
    return " ".join(unicodedata.normalize("NFKD", mnemonic).lower().split())


def generate_mnemonic(words: int = 24) -> str:
    """A new random recovery phrase of ``words`` (12 or 24) English words."""
    if words not in GENERATED_WORD_COUNTS:
        raise ValueError(f"a new recovery phrase has 12 or 24 words, not {words}")
    entropy_bits = words * BITS_PER_WORD * 32 // 33
    return Mnemonic("english").generate(strength=entropy_bits)


def validate_mnemonic(mnemonic: str) -> str:
    """The normalised phrase, or BadMnemonicError naming what is wrong.

    Checks, in order: the word count, that every word is in the English
    list, and the checksum (the first ENT/32 bits of sha256(entropy)).
    """
    words = normalize_mnemonic(mnemonic).split()
    if len(words) not in MNEMONIC_WORD_COUNTS:
        raise BadMnemonicError(
            message=f"a recovery phrase has 12, 15, 18, 21 or 24 words, this one has {len(words)}"
        )
    index = _english_index()
    # positions only: a mistyped word is most of a secret word, and errors reach logs
    unknown = [str(i + 1) for i, w in enumerate(words) if w not in index]
    if unknown:
        raise BadMnemonicError(
            message=f"word {', '.join(unknown)} of {len(words)} is not in the BIP-39 English "
            "word list (check its spelling)"
        )
    total_bits = len(words) * BITS_PER_WORD
    checksum_bits = total_bits // 33
    entropy_bits = total_bits - checksum_bits
    value = 0
    for word in words:
        value = (value << BITS_PER_WORD) | index[word]
    entropy = (value >> checksum_bits).to_bytes(entropy_bits // 8, "big")
    checksum = value & ((1 << checksum_bits) - 1)
    expected = hashlib.sha256(entropy).digest()[0] >> (8 - checksum_bits)
    if checksum != expected:
        raise BadMnemonicError(
            message="checksum mismatch: a word is wrong or two words are swapped"
        )
    return " ".join(words)


def mnemonic_to_seed(mnemonic: str, passphrase: str = "") -> bytes:
    """The 64-byte BIP-39 seed of a (validated) phrase and optional passphrase."""
    phrase = validate_mnemonic(mnemonic)
    salt = unicodedata.normalize("NFKD", PBKDF2_SALT_PREFIX + passphrase)
    return hashlib.pbkdf2_hmac(
        "sha512", phrase.encode("utf-8"), salt.encode("utf-8"), PBKDF2_ROUNDS, SEED_SIZE
    )


# --- BIP-32 ------------------------------------------------------------------

CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # secp256k1 n
HARDENED = 1 << 31  # child indexes at or above this are hardened
MAX_CHILD_INDEX = (1 << 32) - 1  # child indexes are 32-bit
MASTER_HMAC_KEY = b"Bitcoin seed"  # BIP-32 master key generation
MIN_SEED_SIZE = 16  # bytes (128 bits), BIP-32 lower bound
MAX_SEED_SIZE = 64  # bytes (512 bits), BIP-32 upper bound

_PATH_STEP = re.compile(r"([0-9]+)(['hH]?)")


@dataclass(frozen=True)
class ExtendedPrivateKey:
    """A BIP-32 extended private key: a secret scalar and its chain code."""

    secret: bytes  # 32 bytes: the private key k, 0 < k < CURVE_ORDER, big-endian
    chain_code: bytes  # 32 bytes: extra entropy that keys the child derivations

    def __repr__(self) -> str:  # never print secrets by accident
        return "ExtendedPrivateKey(<secret>)"

    @classmethod
    def from_seed(cls, seed: bytes) -> ExtendedPrivateKey:
        """The master key: I = HMAC-SHA512(b"Bitcoin seed", seed); k = I_L, c = I_R."""
        if not MIN_SEED_SIZE <= len(seed) <= MAX_SEED_SIZE:
            raise ValueError(
                f"a BIP-32 seed is {MIN_SEED_SIZE} to {MAX_SEED_SIZE} bytes, not {len(seed)}"
            )
        digest = hmac.digest(MASTER_HMAC_KEY, seed, "sha512")
        key = int.from_bytes(digest[:32], "big")
        if not 0 < key < CURVE_ORDER:
            raise InvalidChildKeyError(message="seed gives an invalid master key; use another seed")
        return cls(digest[:32], digest[32:])

    @property
    def public_key(self) -> bytes:
        """33-byte compressed public key (SEC1), as used by BIP-32."""
        return PrivateKey(self.secret).public_key.format(compressed=True)

    @property
    def xonly_public_key(self) -> bytes:
        """32-byte x-only public key (BIP-340): the x coordinate of the point."""
        return PrivateKey(self.secret).public_key_xonly.format()

    def child(self, index: int) -> ExtendedPrivateKey:
        """CKDpriv: the child at ``index`` (hardened if index >= 2**31).

        I = HMAC-SHA512(c, 0x00 || k || index)   for a hardened index
        I = HMAC-SHA512(c, point(k) || index)    for a normal index
        child k = (I_L + k) mod n, child c = I_R.
        """
        if not 0 <= index <= MAX_CHILD_INDEX:
            raise ValueError(f"child index {index} is not a 32-bit unsigned integer")
        if index >= HARDENED:
            data = b"\x00" + self.secret + index.to_bytes(4, "big")
        else:
            data = self.public_key + index.to_bytes(4, "big")
        digest = hmac.digest(self.chain_code, data, "sha512")
        tweak = int.from_bytes(digest[:32], "big")
        key = (tweak + int.from_bytes(self.secret, "big")) % CURVE_ORDER
        if tweak >= CURVE_ORDER or key == 0:
            raise InvalidChildKeyError(message=f"child {index} is invalid; use the next index")
        return ExtendedPrivateKey(key.to_bytes(32, "big"), digest[32:])

    def derive(self, path: str | tuple[int, ...]) -> ExtendedPrivateKey:
        """The descendant at ``path`` ("m/86'/1'/0'/0/5" or a tuple of indexes)."""
        key = self
        for index in parse_path(path) if isinstance(path, str) else path:
            key = key.child(index)
        return key


def parse_path(path: str) -> tuple[int, ...]:
    """Child indexes of a path such as "m/86'/1'/0'/0/5" ("m" alone is the master).

    A hardened step is written ``i'``, ``ih`` or ``iH`` with i < 2**31.
    """
    if not isinstance(path, str):
        raise BadPathError(message="a derivation path must be text")
    steps = path.split("/")
    if steps[0] != "m":
        raise BadPathError(message=f"derivation path {path!r} must start with 'm'")
    indexes = []
    for step in steps[1:]:
        match = _PATH_STEP.fullmatch(step)
        if match is None:
            raise BadPathError(message=f"bad step {step!r} in derivation path {path!r}")
        number = int(match.group(1))
        if number >= HARDENED:
            raise BadPathError(message=f"step {step!r} in {path!r} is not below 2**31")
        indexes.append(number + HARDENED if match.group(2) else number)
    return tuple(indexes)


def format_path(indexes: tuple[int, ...]) -> str:
    """Inverse of parse_path, writing hardened steps as ``i'``."""
    return "/".join(["m"] + [f"{i - HARDENED}'" if i >= HARDENED else str(i) for i in indexes])


# --- Obol wallet layout --------------------------------------------------------

PURPOSE = 86  # first path level (the BIP-86 single-key x-only layout)
ACCOUNT = 0  # third path level: the only account this wallet uses
RECEIVE = 0  # CHANGE level value for receive addresses
CHANGE = 1  # CHANGE level value for change addresses
COIN_TYPE_MAIN = 7337  # second path level on the main network
COIN_TYPE_TEST = 1  # second path level on every test network (BIP-44 convention)


@dataclass(frozen=True)
class WalletNetwork:
    """What the wallet needs to know about a network."""

    name: str  # "main", "testnet", "regtest" or a chain spec's name: stored in a keystore
    hrp: str  # bech32m human-readable prefix of its addresses (see node/consensus/params.py)
    coin_type: int  # second (hardened) level of the derivation path


MAIN = WalletNetwork("main", "obol", COIN_TYPE_MAIN)
TESTNET = WalletNetwork("testnet", "tobol", COIN_TYPE_TEST)
REGTEST = WalletNetwork("regtest", "robol", COIN_TYPE_TEST)
NETWORKS = MappingProxyType({n.name: n for n in (MAIN, TESTNET, REGTEST)})  # name -> network


def network_by_name(name: str, spec: WalletNetwork | None = None) -> WalletNetwork:
    """The network called ``name``: a built-in one, or ``spec`` (a chain spec's network,
    given with ``--chain FILE``) if it has that name; else UnknownNetworkError."""
    if spec is not None and spec.name == name:
        return spec
    try:
        return NETWORKS[name]
    except (KeyError, TypeError):
        raise UnknownNetworkError(
            message=f"unknown network {name!r}; expected one of {', '.join(NETWORKS)} "
            "(a private chain's wallet needs --chain FILE)"
        ) from None


def spec_network(name: str, hrp: str) -> WalletNetwork:
    """The wallet's view of a chain spec's network (docs/protocol.md §12.1): its addresses
    use the spec's prefix, its keys the test coin type (a private chain is not main)."""
    return WalletNetwork(name, hrp, COIN_TYPE_TEST)


def derivation_path(coin_type: int, change: int, index: int) -> str:
    """m/86'/COIN'/0'/CHANGE/INDEX as text."""
    return format_path(_path_indexes(coin_type, change, index))


def _path_indexes(coin_type: int, change: int, index: int) -> tuple[int, ...]:
    _check_chain(change, index)
    return (PURPOSE + HARDENED, coin_type + HARDENED, ACCOUNT + HARDENED, change, index)


def _check_chain(change: int, index: int) -> None:
    if change not in (RECEIVE, CHANGE):
        raise ValueError(f"change must be {RECEIVE} (receive) or {CHANGE} (change), not {change}")
    if not isinstance(index, int) or not 0 <= index < HARDENED:
        raise ValueError(f"address index must be in [0, 2**31), not {index!r}")


def key_address(hrp: str, xonly_pubkey: bytes) -> str:
    """The address that pays to a 32-byte x-only public key on network ``hrp``."""
    return encode_address(hrp, address_hash(xonly_pubkey))


class KeyChain:
    """The keys and addresses of one seed on one network, derived on demand.

    Derivation results are cached per instance: the account and chain keys
    once, each (change, index) key and address the first time it is asked.
    """

    def __init__(self, seed: bytes, hrp: str, coin_type: int) -> None:
        account_path = (PURPOSE + HARDENED, coin_type + HARDENED, ACCOUNT + HARDENED)
        account = ExtendedPrivateKey.from_seed(seed).derive(account_path)
        self.hrp = hrp  # bech32m prefix of the addresses made
        self.coin_type = coin_type  # second level of every path
        self._chains = {c: account.child(c) for c in (RECEIVE, CHANGE)}  # m/86'/COIN'/0'/c
        self._keys: dict[tuple[int, int], SigningKey] = {}  # (change, index) -> key
        self._addresses: dict[tuple[int, int], str] = {}  # (change, index) -> address

    def __repr__(self) -> str:
        return f"KeyChain(hrp={self.hrp!r}, coin_type={self.coin_type})"

    @classmethod
    def for_network(cls, seed: bytes, network: WalletNetwork | str) -> KeyChain:
        """The key chain of ``seed`` on a known network (object or name)."""
        if isinstance(network, str):
            network = network_by_name(network)
        return cls(seed, network.hrp, network.coin_type)

    @classmethod
    def from_mnemonic(
        cls, mnemonic: str, passphrase: str, network: WalletNetwork | str
    ) -> KeyChain:
        """The key chain of a recovery phrase (+ BIP-39 passphrase) on a network."""
        return cls.for_network(mnemonic_to_seed(mnemonic, passphrase), network)

    def path(self, change: int, index: int) -> str:
        """The derivation path of the key at (change, index)."""
        return derivation_path(self.coin_type, change, index)

    def key(self, change: int, index: int) -> SigningKey:
        """The signing key at m/86'/COIN'/0'/change/index."""
        _check_chain(change, index)
        slot = (change, index)
        found = self._keys.get(slot)
        if found is None:
            found = SigningKey(self._chains[change].child(index).secret)
            self._keys[slot] = found
        return found

    def address(self, change: int, index: int) -> str:
        """The address of the key at m/86'/COIN'/0'/change/index."""
        slot = (change, index)
        found = self._addresses.get(slot)
        if found is None:
            found = key_address(self.hrp, self.key(change, index).pubkey)
            self._addresses[slot] = found
        return found

    def find(self, address: str, gap: int) -> tuple[int, int] | None:
        """(change, index) of ``address`` among the first ``gap`` of each chain, or None."""
        for index in range(gap):
            for change in (RECEIVE, CHANGE):
                if self.address(change, index) == address:
                    return change, index
        return None
