"""The encrypted wallet file (wallet/keystore.py)."""

from __future__ import annotations

import json
import os
import stat

import pytest

from wallet.errors import (
    BadMnemonicError,
    KeystoreDamagedError,
    KeystoreExistsError,
    KeystoreUnsupportedError,
    UnknownNetworkError,
    WrongPassphraseError,
)
from wallet.keys import CHANGE, RECEIVE, KeyChain, mnemonic_to_seed
from wallet.keystore import SCRYPT_N, Keystore

PHRASE = (
    "legal winner thank year wave sausage worth useful legal winner thank year "
    "wave sausage worth useful legal winner thank year wave sausage worth title"
)
PASSWORD = "correct horse battery staple"
FAST_N = 2**10  # scrypt cost for tests; the default is SCRYPT_N


@pytest.fixture
def wallet_path(tmp_path):
    return tmp_path / "wallet.json"


@pytest.fixture
def store(wallet_path) -> Keystore:
    return Keystore.create(wallet_path, PHRASE, "extra words", "testnet", PASSWORD, kdf_n=FAST_N)


def rewrite(path, edit) -> None:
    """Apply ``edit`` to the parsed JSON document of the file at ``path``."""
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))


def test_default_cost_is_the_real_one():
    """2**17: current guidance for scrypt (OWASP, 2023) with r = 8, p = 1."""
    assert SCRYPT_N == 2**17


def test_roundtrip(store, wallet_path):
    store.set_label("tobol1xyz", "rent")
    store.set_metadata("synced_height", 1200)
    first = store.next_address(RECEIVE)
    second = store.next_address(RECEIVE)
    change = store.next_address(CHANGE)
    opened = Keystore.open(wallet_path, PASSWORD)
    assert opened.network_name == "testnet"
    assert opened.network.hrp == "tobol"
    assert opened.mnemonic == PHRASE
    assert opened.bip39_passphrase == "extra words"
    assert opened.next_receive_index == 2
    assert opened.next_change_index == 1
    assert opened.labels == {"tobol1xyz": "rent"}
    assert opened.metadata == {"synced_height": 1200}
    assert opened.created == store.created
    assert opened.kdf == store.kdf
    assert opened.contents == store.contents
    chain = KeyChain.from_mnemonic(PHRASE, "extra words", "testnet")
    assert [first, second, change] == [
        chain.address(RECEIVE, 0),
        chain.address(RECEIVE, 1),
        chain.address(CHANGE, 0),
    ]
    assert opened.next_address() == chain.address(RECEIVE, 2)


def test_file_format(store, wallet_path):
    document = json.loads(wallet_path.read_text())
    assert set(document) == {"format", "version", "kdf", "cipher", "ciphertext"}
    assert document["format"] == "obol-keystore" and document["version"] == 1
    assert document["kdf"]["name"] == "scrypt"
    assert (document["kdf"]["n"], document["kdf"]["r"], document["kdf"]["p"]) == (FAST_N, 8, 1)
    assert len(bytes.fromhex(document["kdf"]["salt"])) == 16
    assert document["cipher"]["name"] == "chacha20-poly1305"
    assert len(bytes.fromhex(document["cipher"]["nonce"])) == 12


def test_save_uses_a_fresh_nonce(store, wallet_path):
    before = json.loads(wallet_path.read_text())
    store.save()
    after = json.loads(wallet_path.read_text())
    assert after["cipher"]["nonce"] != before["cipher"]["nonce"]
    assert after["kdf"] == before["kdf"]
    assert Keystore.open(wallet_path, PASSWORD).contents == store.contents


def test_wrong_passphrase_changes_nothing(store, wallet_path):
    before = wallet_path.read_bytes()
    with pytest.raises(WrongPassphraseError) as info:
        Keystore.open(wallet_path, PASSWORD + "!")
    assert info.value.code == "wrong-passphrase"
    assert "passphrase is wrong" in info.value.message and "altered" in info.value.message
    assert wallet_path.read_bytes() == before
    assert Keystore.open(wallet_path, PASSWORD).mnemonic == PHRASE


@pytest.mark.parametrize("keep", [0, 1, 40, 0.5, -3], ids=["empty", "1", "40", "half", "no-brace"])
def test_truncated_file_is_damaged(store, wallet_path, keep):
    data = wallet_path.read_bytes()
    wallet_path.write_bytes(data[: int(len(data) * keep) if isinstance(keep, float) else keep])
    with pytest.raises(KeystoreDamagedError) as info:
        Keystore.open(wallet_path, PASSWORD)
    assert info.value.code == "keystore-damaged"


def test_flipped_ciphertext_byte_fails_authentication(store, wallet_path):
    def flip(document):
        raw = bytearray(bytes.fromhex(document["ciphertext"]))
        raw[len(raw) // 2] ^= 0x01
        document["ciphertext"] = raw.hex()

    rewrite(wallet_path, flip)
    with pytest.raises(WrongPassphraseError, match="altered"):
        Keystore.open(wallet_path, PASSWORD)


def test_truncated_ciphertext_fails_authentication(store, wallet_path):
    rewrite(wallet_path, lambda d: d.update(ciphertext=d["ciphertext"][:-2]))
    with pytest.raises(WrongPassphraseError):
        Keystore.open(wallet_path, PASSWORD)


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d["kdf"].update(n=2**11),
        lambda d: d["kdf"].update(r=7),
        lambda d: d["kdf"].update(p=2),
        lambda d: d["kdf"].update(salt="00" * 16),
        lambda d: d["cipher"].update(nonce="00" * 12),
    ],
    ids=["n", "r", "p", "salt", "nonce"],
)
def test_edited_header_fails_authentication(store, wallet_path, edit):
    rewrite(wallet_path, edit)
    with pytest.raises(WrongPassphraseError):
        Keystore.open(wallet_path, PASSWORD)


def test_header_is_authenticated_even_with_the_right_key(store, wallet_path):
    """The header is associated data: the right key under another header fails."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

    from wallet.keystore import _header

    document = json.loads(wallet_path.read_text())
    key = store.kdf.derive_key(PASSWORD)
    nonce = bytes.fromhex(document["cipher"]["nonce"])
    ciphertext = bytes.fromhex(document["ciphertext"])
    ChaCha20Poly1305(key).decrypt(nonce, ciphertext, _header(store.kdf, nonce))  # as written
    with pytest.raises(InvalidTag):
        ChaCha20Poly1305(key).decrypt(nonce, ciphertext, _header(store.kdf, nonce)[:-1] + b" ")


@pytest.mark.parametrize(
    "edit,problem",
    [
        (lambda d: d.pop("kdf"), "'kdf'"),
        (lambda d: d["kdf"].pop("salt"), "'kdf.salt'"),
        (lambda d: d["kdf"].update(salt="zz" * 16), "not hex"),
        (lambda d: d["kdf"].update(salt="00" * 8), "salt is 8 bytes"),
        (lambda d: d["kdf"].update(n="1024"), "'kdf.n'"),
        (lambda d: d["kdf"].update(n=1000), "power of two"),
        (lambda d: d["kdf"].update(n=2**40), "power of two"),  # refused before scrypt runs
        (lambda d: d["kdf"].update(r=10**6), "scrypt r"),
        (lambda d: d["cipher"].update(nonce="00" * 11), "nonce is 11 bytes"),
        (lambda d: d.update(ciphertext="abc"), "not hex"),
        (lambda d: d.update(ciphertext="00" * 15), "shorter"),
        (lambda d: d.update(format="something-else"), "not an Obol keystore"),
    ],
    ids=[
        "no-kdf",
        "no-salt",
        "salt-hex",
        "salt-size",
        "n-type",
        "n-pow2",
        "n-huge",
        "r-huge",
        "nonce-size",
        "ct-hex",
        "ct-short",
        "format",
    ],
)
def test_malformed_file_is_damaged(store, wallet_path, edit, problem):
    rewrite(wallet_path, edit)
    with pytest.raises(KeystoreDamagedError) as info:
        Keystore.open(wallet_path, PASSWORD)
    assert problem in info.value.message


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.update(version=2),
        lambda d: d["kdf"].update(name="argon2id"),
        lambda d: d["cipher"].update(name="aes-256-gcm"),
    ],
)
def test_unknown_versions_are_unsupported(store, wallet_path, edit):
    rewrite(wallet_path, edit)
    with pytest.raises(KeystoreUnsupportedError):
        Keystore.open(wallet_path, PASSWORD)


def test_file_mode_is_0600(store, wallet_path):
    assert stat.S_IMODE(os.stat(wallet_path).st_mode) == 0o600
    store.next_address()
    assert stat.S_IMODE(os.stat(wallet_path).st_mode) == 0o600


def test_mode_0600_even_with_a_permissive_umask(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "w.json"
        Keystore.create(path, PHRASE, "", "regtest", PASSWORD, kdf_n=FAST_N)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_no_secrets_in_the_clear(store, wallet_path):
    for _ in range(3):
        store.next_address(RECEIVE)
        store.next_address(CHANGE)
    data = wallet_path.read_bytes().lower()
    for word in set(PHRASE.split()):
        assert word.encode() not in data
    assert b"extra words" not in data
    assert PASSWORD.encode() not in data
    seed = mnemonic_to_seed(PHRASE, "extra words")
    chain = KeyChain.for_network(seed, "testnet")
    secrets = [seed] + [chain.key(c, i).secret for c in (RECEIVE, CHANGE) for i in range(5)]
    for secret in secrets:
        assert secret.hex().encode() not in data
        assert secret not in data


def test_atomic_write_leaves_no_temp_file(store, wallet_path):
    store.save()
    store.next_address()
    store.set_label("a", "b")
    assert sorted(os.listdir(wallet_path.parent)) == [wallet_path.name]


def test_failed_write_keeps_old_file_and_state(store, wallet_path, monkeypatch):
    before = wallet_path.read_bytes()

    def failing_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", failing_fsync)
    with pytest.raises(OSError):
        store.next_address()
    monkeypatch.undo()
    assert wallet_path.read_bytes() == before
    assert store.next_receive_index == 0
    assert sorted(os.listdir(wallet_path.parent)) == [wallet_path.name]


def test_create_refuses_to_overwrite(store, wallet_path):
    before = wallet_path.read_bytes()
    with pytest.raises(KeystoreExistsError) as info:
        Keystore.create(wallet_path, PHRASE, "", "main", "other", kdf_n=FAST_N)
    assert info.value.code == "keystore-exists"
    assert wallet_path.read_bytes() == before
    assert sorted(os.listdir(wallet_path.parent)) == [wallet_path.name]


def test_create_validates_its_inputs(wallet_path):
    with pytest.raises(BadMnemonicError):
        Keystore.create(wallet_path, "abandon " * 12, "", "main", PASSWORD, kdf_n=FAST_N)
    with pytest.raises(UnknownNetworkError):
        Keystore.create(wallet_path, PHRASE, "", "mainnet", PASSWORD, kdf_n=FAST_N)
    with pytest.raises(ValueError):
        Keystore.create(wallet_path, PHRASE, "", "main", PASSWORD, kdf_n=1000)
    assert not wallet_path.exists()


def test_change_password(store, wallet_path):
    old_salt = store.kdf.salt
    store.change_password("new secret")
    assert store.kdf.salt != old_salt
    with pytest.raises(WrongPassphraseError):
        Keystore.open(wallet_path, PASSWORD)
    assert Keystore.open(wallet_path, "new secret").mnemonic == PHRASE


def test_password_is_normalised(wallet_path):
    Keystore.create(wallet_path, PHRASE, "", "main", "caf\u00e9", kdf_n=FAST_N)
    assert Keystore.open(wallet_path, "cafe\u0301").network_name == "main"


def test_labels_cannot_be_changed_behind_its_back(store, wallet_path):
    store.labels["x"] = "y"  # a copy
    with pytest.raises(TypeError):
        store.contents.labels["x"] = "y"  # read-only
    assert Keystore.open(wallet_path, PASSWORD).labels == {}


def test_default_parameters(wallet_path):
    """One wallet at the real default cost (n = 2**17, about 0.4 s per derivation)."""
    Keystore.create(wallet_path, PHRASE, "", "main", PASSWORD)
    opened = Keystore.open(wallet_path, PASSWORD)
    assert (opened.kdf.n, opened.kdf.r, opened.kdf.p) == (2**17, 8, 1)
    assert opened.next_address().startswith("obol1")


def test_create_without_hard_links(wallet_path, monkeypatch):
    """On a file system without hard links, create falls back to check-then-rename."""
    import errno

    def no_links(src, dst):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    Keystore.create(wallet_path, PHRASE, "", "regtest", PASSWORD, kdf_n=FAST_N)
    with pytest.raises(KeystoreExistsError):
        Keystore.create(wallet_path, PHRASE, "", "regtest", PASSWORD, kdf_n=FAST_N)
    assert sorted(os.listdir(wallet_path.parent)) == [wallet_path.name]
    assert stat.S_IMODE(os.stat(wallet_path).st_mode) == 0o600
    assert Keystore.open(wallet_path, PASSWORD).network_name == "regtest"


def test_reprs_hide_secrets(store):
    for text in (repr(store), repr(store.contents)):
        assert "legal" not in text and "extra words" not in text
