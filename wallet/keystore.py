"""The wallet file: a recovery phrase and wallet state, encrypted at rest.

File format (JSON, UTF-8)::

    {"format": "obol-keystore", "version": 1,
     "kdf": {"name": "scrypt", "n": 131072, "r": 8, "p": 1, "salt": "<16 bytes hex>"},
     "cipher": {"name": "chacha20-poly1305", "nonce": "<12 bytes hex>"},
     "ciphertext": "<hex: encrypted payload followed by the 16-byte tag>"}

Encryption
    key        = scrypt(NFKD(password), salt, n, r, p) -> 32 bytes
    ciphertext = ChaCha20-Poly1305(key).encrypt(nonce, payload, header)
    ``header`` is the canonical JSON (sorted keys, no spaces) of every field
    but ``ciphertext``: editing the KDF parameters, salt or nonce makes the
    authentication fail.  A fresh random nonce is drawn at every save.

Payload (JSON, before encryption)::

    {"version": 1, "network": "main" | "testnet" | "regtest",
     "mnemonic": "<BIP-39 words>", "bip39_passphrase": "<text>",
     "next_receive_index": int, "next_change_index": int,
     "labels": {str: str}, "metadata": {str: JSON value}, "created": <unix seconds>}

Errors on open
    ``keystore-damaged``      not JSON, a missing or mistyped field, bad hex,
                              wrong sizes, KDF parameters out of bounds
    ``keystore-unsupported``  another format version, KDF or cipher
    ``wrong-passphrase``      authentication failed: the passphrase is wrong,
                              or the file was altered (the two cannot be told
                              apart without the key)

Writes are atomic and private: a temporary file in the same directory is
created with mode 0600, written, fsynced, renamed over the wallet file, and
the directory is fsynced.  A crash leaves the old file or the new one.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from .errors import (
    KeystoreDamagedError,
    KeystoreExistsError,
    KeystoreUnsupportedError,
    WalletError,
    WrongPassphraseError,
)
from .keys import (
    CHANGE,
    RECEIVE,
    KeyChain,
    WalletNetwork,
    mnemonic_to_seed,
    network_by_name,
    validate_mnemonic,
)

FORMAT_NAME = "obol-keystore"  # value of the "format" field
FORMAT_VERSION = 1  # value of the "version" field (file layout)
PAYLOAD_VERSION = 1  # "version" inside the encrypted payload
KDF_NAME = "scrypt"
CIPHER_NAME = "chacha20-poly1305"

SCRYPT_N = 2**17  # default CPU/memory cost (128 * n * r bytes = 128 MiB; OWASP's 2023 floor)
SCRYPT_R = 8  # default block size
SCRYPT_P = 1  # default parallelism
SALT_SIZE = 16  # bytes of random scrypt salt
KEY_SIZE = 32  # bytes: ChaCha20-Poly1305 key
NONCE_SIZE = 12  # bytes: ChaCha20-Poly1305 nonce
TAG_SIZE = 16  # bytes: Poly1305 tag at the end of the ciphertext

# Bounds checked before running scrypt, so an edited file cannot make the
# wallet allocate gigabytes or spin for hours.
SCRYPT_MIN_N = 2**1
SCRYPT_MAX_N = 2**20
SCRYPT_MAX_R = 32
SCRYPT_MAX_P = 16
SCRYPT_MAX_MEMORY = 1 << 30  # bytes: 128 * n * r must not exceed this
MAX_FILE_SIZE = 16 << 20  # bytes: refuse to read a larger "keystore"


@dataclass(frozen=True)
class KdfParams:
    """How the encryption key is derived from the user's password."""

    n: int  # scrypt CPU/memory cost, a power of two
    r: int  # scrypt block size
    p: int  # scrypt parallelism
    salt: bytes  # SALT_SIZE random bytes, fresh for each keystore

    def check(self) -> None:
        """KeystoreDamagedError unless the parameters are within the safe bounds."""
        if not (
            isinstance(self.n, int)
            and SCRYPT_MIN_N <= self.n <= SCRYPT_MAX_N
            and self.n & (self.n - 1) == 0
        ):
            raise KeystoreDamagedError(
                message=f"scrypt n={self.n!r} is not a power of two in [2, 2**20]"
            )
        if not (isinstance(self.r, int) and 1 <= self.r <= SCRYPT_MAX_R):
            raise KeystoreDamagedError(message=f"scrypt r={self.r!r} is not in [1, {SCRYPT_MAX_R}]")
        if not (isinstance(self.p, int) and 1 <= self.p <= SCRYPT_MAX_P):
            raise KeystoreDamagedError(message=f"scrypt p={self.p!r} is not in [1, {SCRYPT_MAX_P}]")
        if 128 * self.n * self.r > SCRYPT_MAX_MEMORY:
            raise KeystoreDamagedError(message="scrypt parameters need more than 1 GiB of memory")
        if len(self.salt) != SALT_SIZE:
            raise KeystoreDamagedError(message=f"salt is {len(self.salt)} bytes, not {SALT_SIZE}")

    def derive_key(self, password: str) -> bytes:
        """scrypt(NFKD(password)) -> a KEY_SIZE-byte key."""
        self.check()
        kdf = Scrypt(salt=self.salt, length=KEY_SIZE, n=self.n, r=self.r, p=self.p)
        return kdf.derive(unicodedata.normalize("NFKD", password).encode("utf-8"))

    def to_json(self) -> dict[str, Any]:
        return {"name": KDF_NAME, "n": self.n, "r": self.r, "p": self.p, "salt": self.salt.hex()}


@dataclass(frozen=True)
class WalletContents:
    """The plaintext payload of a keystore."""

    network: str  # "main", "testnet", "regtest" or a chain spec's name
    mnemonic: str = field(repr=False)  # normalised BIP-39 recovery phrase
    bip39_passphrase: str = field(repr=False)  # optional BIP-39 passphrase ("" if none)
    next_receive_index: int  # next receive address index to give out
    next_change_index: int  # next change address index to use
    labels: Mapping[str, str]  # user labels, keyed by address or txid
    metadata: Mapping[str, Any]  # other JSON-serialisable wallet state
    created: int  # creation time, unix seconds

    def __post_init__(self) -> None:
        # Private read-only copies: the record cannot change behind the keystore's back.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    def to_json(self) -> dict[str, Any]:
        body = {f.name: getattr(self, f.name) for f in fields(self)}
        body["labels"] = dict(self.labels)
        body["metadata"] = dict(self.metadata)
        return {"version": PAYLOAD_VERSION, **body}

    @classmethod
    def from_json(cls, body: Any, spec: WalletNetwork | None = None) -> WalletContents:
        """Parse an authenticated payload; KeystoreDamagedError if it is malformed."""
        if not isinstance(body, dict):
            raise KeystoreDamagedError(message="payload is not a JSON object")
        if type(body.get("version")) is not int or body["version"] != PAYLOAD_VERSION:
            raise KeystoreUnsupportedError(
                message=f"payload version {body.get('version')!r} is not {PAYLOAD_VERSION}"
            )
        kinds = {
            "network": str,
            "mnemonic": str,
            "bip39_passphrase": str,
            "next_receive_index": int,
            "next_change_index": int,
            "labels": dict,
            "metadata": dict,
            "created": int,
        }
        for name, kind in kinds.items():
            _field(body, name, kind, "payload.")
        if body["next_receive_index"] < 0 or body["next_change_index"] < 0:
            raise KeystoreDamagedError(message="payload has a negative address index")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in body["labels"].items()):
            raise KeystoreDamagedError(message="payload labels must map text to text")
        network_by_name(body["network"], spec)  # unknown: a private chain's, without --chain
        try:
            validate_mnemonic(body["mnemonic"])
        except WalletError as exc:
            raise KeystoreDamagedError(message=f"payload: {exc.message}") from None
        return cls(**{name: body[name] for name in kinds})


class Keystore:
    """An open wallet file: decrypted contents plus the key to write them back.

    The password itself is not kept: only the scrypt-derived key, so that
    ``save`` can re-encrypt (with a fresh nonce) without running scrypt again.
    """

    def __init__(
        self,
        path: Path,
        kdf: KdfParams,
        key: bytes,
        contents: WalletContents,
        spec: WalletNetwork | None = None,
    ) -> None:
        self._path = path  # the wallet file
        self._kdf = kdf  # parameters and salt that produced _key
        self._key = key  # KEY_SIZE-byte ChaCha20-Poly1305 key
        self._contents = contents  # decrypted payload, replaced on every change
        self._spec = spec  # a chain spec's network, if the wallet is for one (--chain FILE)
        self._keychain: KeyChain | None = None  # derived on first use

    def __repr__(self) -> str:
        return f"Keystore({str(self._path)!r}, network={self.network_name!r})"

    # --- create / open / save --------------------------------------------------

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        mnemonic: str,
        bip39_passphrase: str,
        network: str,
        password: str,
        *,
        spec: WalletNetwork | None = None,
        kdf_n: int = SCRYPT_N,
        kdf_r: int = SCRYPT_R,
        kdf_p: int = SCRYPT_P,
    ) -> Keystore:
        """Write a new keystore at ``path``; KeystoreExistsError if a file is there."""
        path = Path(path)
        network_by_name(network, spec)
        if not isinstance(bip39_passphrase, str) or not isinstance(password, str):
            raise TypeError("the BIP-39 passphrase and the password are text")
        contents = WalletContents(
            network=network,
            mnemonic=validate_mnemonic(mnemonic),
            bip39_passphrase=bip39_passphrase,
            next_receive_index=0,
            next_change_index=0,
            labels={},
            metadata={},
            created=int(time.time()),
        )
        kdf = KdfParams(kdf_n, kdf_r, kdf_p, secrets.token_bytes(SALT_SIZE))
        try:
            kdf.check()
        except KeystoreDamagedError as exc:
            raise ValueError(exc.message) from None
        store = cls(path, kdf, kdf.derive_key(password), contents, spec)
        store._write(overwrite=False)
        return store

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], password: str, spec: WalletNetwork | None = None
    ) -> Keystore:
        """Read and decrypt the keystore at ``path`` (``spec``: the chain spec's network a
        private chain's wallet is for).

        Raises the keystore errors listed in the module doc, and OSError
        (FileNotFoundError ...) if the file cannot be read.
        """
        path = Path(path)
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_SIZE + 1)
        if len(raw) > MAX_FILE_SIZE:
            raise KeystoreDamagedError(message=f"{path} is larger than any keystore")
        kdf, nonce, ciphertext = _parse_file(raw)
        key = kdf.derive_key(password)
        try:
            plaintext = ChaCha20Poly1305(key).decrypt(nonce, ciphertext, _header(kdf, nonce))
        except InvalidTag:
            raise WrongPassphraseError(
                message="cannot decrypt the keystore: the passphrase is wrong, "
                "or the file has been altered"
            ) from None
        try:
            body = json.loads(plaintext.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise KeystoreDamagedError(message="decrypted payload is not JSON") from None
        return cls(path, kdf, key, WalletContents.from_json(body, spec), spec)

    def save(self) -> None:
        """Re-encrypt the contents with a fresh nonce and replace the file atomically."""
        self._write(overwrite=True)

    def change_password(self, new_password: str, *, kdf_n: int | None = None) -> None:
        """Re-encrypt under ``new_password`` with a fresh salt (and optionally a new n)."""
        kdf = KdfParams(
            kdf_n or self._kdf.n, self._kdf.r, self._kdf.p, secrets.token_bytes(SALT_SIZE)
        )
        previous = self._kdf, self._key
        self._kdf, self._key = kdf, kdf.derive_key(new_password)
        try:
            self.save()
        except BaseException:
            self._kdf, self._key = previous
            raise

    def _write(self, *, overwrite: bool) -> None:
        nonce = secrets.token_bytes(NONCE_SIZE)
        payload = json.dumps(self._contents.to_json(), sort_keys=True).encode("utf-8")
        ciphertext = ChaCha20Poly1305(self._key).encrypt(nonce, payload, _header(self._kdf, nonce))
        document = {**_header_fields(self._kdf, nonce), "ciphertext": ciphertext.hex()}
        data = (json.dumps(document, indent=1) + "\n").encode("utf-8")
        write_private_file(self._path, data, overwrite=overwrite)

    # --- contents -----------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self._path

    @property
    def kdf(self) -> KdfParams:
        return self._kdf

    @property
    def contents(self) -> WalletContents:
        return self._contents

    @property
    def network(self) -> WalletNetwork:
        return network_by_name(self._contents.network, self._spec)

    @property
    def network_name(self) -> str:
        return self._contents.network

    @property
    def mnemonic(self) -> str:
        return self._contents.mnemonic

    @property
    def bip39_passphrase(self) -> str:
        return self._contents.bip39_passphrase

    @property
    def next_receive_index(self) -> int:
        return self._contents.next_receive_index

    @property
    def next_change_index(self) -> int:
        return self._contents.next_change_index

    @property
    def labels(self) -> Mapping[str, str]:
        return dict(self._contents.labels)

    @property
    def metadata(self) -> Mapping[str, Any]:
        return dict(self._contents.metadata)

    @property
    def created(self) -> int:
        return self._contents.created

    @property
    def keychain(self) -> KeyChain:
        """Keys and addresses of this wallet (derived from the phrase once)."""
        if self._keychain is None:
            seed = mnemonic_to_seed(self.mnemonic, self.bip39_passphrase)
            self._keychain = KeyChain.for_network(seed, self.network)
        return self._keychain

    def next_address(self, change: int = RECEIVE) -> str:
        """Give out the next unused address of a chain and save the new index.

        The file is written before the address is returned, so an address
        handed out is never handed out again, even after a crash.
        """
        if change == RECEIVE:
            index = self._contents.next_receive_index
            updated = replace(self._contents, next_receive_index=index + 1)
        elif change == CHANGE:
            index = self._contents.next_change_index
            updated = replace(self._contents, next_change_index=index + 1)
        else:
            raise ValueError(
                f"change must be {RECEIVE} (receive) or {CHANGE} (change), not {change}"
            )
        address = self.keychain.address(change, index)
        self._update(updated)
        return address

    def advance(self, change: int, index: int) -> bool:
        """Make the next index of a chain at least ``index`` and save (never moves back).

        Used after a scan finds addresses in use beyond the stored index
        (a restore, or another copy of the wallet).  True if it changed.
        """
        if not isinstance(index, int) or index < 0:
            raise ValueError(f"address index must be a non-negative integer, not {index!r}")
        if change == RECEIVE:
            if index <= self._contents.next_receive_index:
                return False
            updated = replace(self._contents, next_receive_index=index)
        elif change == CHANGE:
            if index <= self._contents.next_change_index:
                return False
            updated = replace(self._contents, next_change_index=index)
        else:
            raise ValueError(
                f"change must be {RECEIVE} (receive) or {CHANGE} (change), not {change}"
            )
        self._update(updated)
        return True

    def set_label(self, key: str, label: str | None) -> None:
        """Label an address or txid (None removes the label) and save."""
        labels = dict(self._contents.labels)
        if label is None:
            labels.pop(key, None)
        else:
            labels[key] = label
        self._update(replace(self._contents, labels=labels))

    def set_metadata(self, key: str, value: Any) -> None:
        """Store a JSON-serialisable value (None removes it) and save."""
        metadata = dict(self._contents.metadata)
        if value is None:
            metadata.pop(key, None)
        else:
            json.dumps(value)  # TypeError now rather than a half-written state later
            metadata[key] = value
        self._update(replace(self._contents, metadata=metadata))

    def _update(self, contents: WalletContents) -> None:
        """Save ``contents``; the in-memory state changes only if the write succeeds."""
        previous, self._contents = self._contents, contents
        try:
            self.save()
        except BaseException:
            self._contents = previous
            raise


# --- file format -------------------------------------------------------------------


def _header_fields(kdf: KdfParams, nonce: bytes) -> dict[str, Any]:
    return {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "kdf": kdf.to_json(),
        "cipher": {"name": CIPHER_NAME, "nonce": nonce.hex()},
    }


def _header(kdf: KdfParams, nonce: bytes) -> bytes:
    """Associated data: canonical JSON of every field but the ciphertext."""
    return json.dumps(_header_fields(kdf, nonce), sort_keys=True, separators=(",", ":")).encode(
        "utf-8"
    )


def _parse_file(raw: bytes) -> tuple[KdfParams, bytes, bytes]:
    """(kdf parameters, nonce, ciphertext) of a keystore file, or a keystore error."""
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise KeystoreDamagedError(message="the file is not JSON (truncated or edited?)") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT_NAME:
        raise KeystoreDamagedError(message="the file is not an Obol keystore")
    version = document.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise KeystoreUnsupportedError(
            message=f"keystore version {version!r}; this program reads version {FORMAT_VERSION}"
        )
    kdf = _field(document, "kdf", dict)
    cipher = _field(document, "cipher", dict)
    if _field(kdf, "name", str, "kdf.") != KDF_NAME:
        raise KeystoreUnsupportedError(message=f"key derivation {kdf['name']!r} is not {KDF_NAME}")
    if _field(cipher, "name", str, "cipher.") != CIPHER_NAME:
        raise KeystoreUnsupportedError(message=f"cipher {cipher['name']!r} is not {CIPHER_NAME}")
    params = KdfParams(
        n=_field(kdf, "n", int, "kdf."),
        r=_field(kdf, "r", int, "kdf."),
        p=_field(kdf, "p", int, "kdf."),
        salt=_hex_field(kdf, "salt", "kdf."),
    )
    params.check()
    nonce = _hex_field(cipher, "nonce", "cipher.")
    if len(nonce) != NONCE_SIZE:
        raise KeystoreDamagedError(message=f"nonce is {len(nonce)} bytes, not {NONCE_SIZE}")
    ciphertext = _hex_field(document, "ciphertext")
    if len(ciphertext) < TAG_SIZE:
        raise KeystoreDamagedError(message="ciphertext is shorter than its authentication tag")
    return params, nonce, ciphertext


_T = TypeVar("_T")


def _field(obj: Mapping[str, object], name: str, kind: type[_T], prefix: str = "") -> _T:
    """``obj[name]`` if it is a ``kind`` (never a bool where a number is wanted)."""
    value = obj.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise KeystoreDamagedError(
            message=f"field '{prefix}{name}' is missing or not {kind.__name__}"
        )
    return value


def _hex_field(obj: Mapping[str, object], name: str, prefix: str = "") -> bytes:
    text = _field(obj, name, str, prefix)
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise KeystoreDamagedError(message=f"field '{prefix}{name}' is not hex") from None


# --- atomic private writes --------------------------------------------------------


def write_private_file(path: Path, data: bytes, *, overwrite: bool) -> None:
    """Atomically make ``path`` hold ``data``, readable by the owner only (0600).

    The bytes go to a temporary file in the same directory, created 0600,
    fsynced, then renamed into place; the directory is fsynced after.  With
    ``overwrite=False`` an existing ``path`` is never replaced (KeystoreExistsError),
    even by a concurrent writer: the temporary file is hard-linked into place.
    """
    directory = path.parent
    temp = directory / f".{path.name}.{secrets.token_hex(8)}.tmp"
    if not overwrite and os.path.lexists(path):
        raise KeystoreExistsError(message=f"{path} exists; refusing to overwrite a wallet")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if overwrite:
            os.replace(temp, path)
        else:
            _link_new(temp, path)
    finally:
        if os.path.lexists(temp):
            os.unlink(temp)
    _fsync_directory(directory)


def _link_new(temp: Path, path: Path) -> None:
    """Put ``temp`` at ``path`` only if nothing is there (the caller removes temp)."""
    try:
        os.link(temp, path)
    except FileExistsError:
        raise KeystoreExistsError(
            message=f"{path} exists; refusing to overwrite a wallet"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise
        # A file system without hard links: fall back to check-then-rename.
        if os.path.lexists(path):
            raise KeystoreExistsError(
                message=f"{path} exists; refusing to overwrite a wallet"
            ) from None
        os.replace(temp, path)


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
