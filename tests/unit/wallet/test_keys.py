"""BIP-39 phrases, BIP-32 derivation and the Obol address layout (wallet/keys.py)."""

from __future__ import annotations

import hashlib

import pytest

from node.primitives.crypto import decode_address, verify_schnorr
from wallet.errors import BadMnemonicError, BadPathError, UnknownNetworkError
from wallet.keys import (
    CHANGE,
    HARDENED,
    MAIN,
    NETWORKS,
    RECEIVE,
    REGTEST,
    TESTNET,
    ExtendedPrivateKey,
    KeyChain,
    derivation_path,
    format_path,
    generate_mnemonic,
    mnemonic_to_seed,
    network_by_name,
    parse_path,
    validate_mnemonic,
)

# --- base58check and xprv serialisation (only to compare with the BIP-32 vectors) ----

B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
XPRV_VERSION = bytes.fromhex("0488ade4")  # mainnet private extended key


def base58check(payload: bytes) -> str:
    data = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    number = int.from_bytes(data, "big")
    text = ""
    while number:
        number, digit = divmod(number, 58)
        text = B58_ALPHABET[digit] + text
    leading_zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * leading_zeros + text


def hash160(data: bytes) -> bytes:
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def xprv(seed: bytes, path: str) -> str:
    """BIP-32 serialisation of the private key at ``path``."""
    indexes = parse_path(path)
    master = ExtendedPrivateKey.from_seed(seed)
    key = master.derive(indexes)
    if indexes:
        parent_fingerprint = hash160(master.derive(indexes[:-1]).public_key)[:4]
        child_number = indexes[-1]
    else:
        parent_fingerprint, child_number = b"\0" * 4, 0
    return base58check(
        XPRV_VERSION
        + bytes([len(indexes)])
        + parent_fingerprint
        + child_number.to_bytes(4, "big")
        + key.chain_code
        + b"\0"
        + key.secret
    )


def test_base58check_helper():
    assert base58check(b"") == "3QJmnh"
    assert base58check(b"\0\0\x01").startswith("11")  # a leading zero byte is a '1'
    assert not base58check(b"\x01").startswith("1")


# --- BIP-32 test vectors 1 and 2 (bip-0032.mediawiki) --------------------------------

VECTOR_1 = (
    "000102030405060708090a0b0c0d0e0f",
    [
        (
            "m",
            "xprv9s21ZrQH143K3QTDL4LXw2F7HEK3wJUD2nW2nRk4stbPy6cq3jPPqjiChkVvvNKmPGJxWUtg6LnF5kejMRNNU3TGtRBeJgk33yuGBxrMPHi",
        ),
        (
            "m/0'",
            "xprv9uHRZZhk6KAJC1avXpDAp4MDc3sQKNxDiPvvkX8Br5ngLNv1TxvUxt4cV1rGL5hj6KCesnDYUhd7oWgT11eZG7XnxHrnYeSvkzY7d2bhkJ7",
        ),
        (
            "m/0'/1",
            "xprv9wTYmMFdV23N2TdNG573QoEsfRrWKQgWeibmLntzniatZvR9BmLnvSxqu53Kw1UmYPxLgboyZQaXwTCg8MSY3H2EU4pWcQDnRnrVA1xe8fs",
        ),
        (
            "m/0'/1/2'",
            "xprv9z4pot5VBttmtdRTWfWQmoH1taj2axGVzFqSb8C9xaxKymcFzXBDptWmT7FwuEzG3ryjH4ktypQSAewRiNMjANTtpgP4mLTj34bhnZX7UiM",
        ),
        (
            "m/0'/1/2'/2",
            "xprvA2JDeKCSNNZky6uBCviVfJSKyQ1mDYahRjijr5idH2WwLsEd4Hsb2Tyh8RfQMuPh7f7RtyzTtdrbdqqsunu5Mm3wDvUAKRHSC34sJ7in334",
        ),
        (
            "m/0'/1/2'/2/1000000000",
            "xprvA41z7zogVVwxVSgdKUHDy1SKmdb533PjDz7J6N6mV6uS3ze1ai8FHa8kmHScGpWmj4WggLyQjgPie1rFSruoUihUZREPSL39UNdE3BBDu76",
        ),
    ],
)

VECTOR_2 = (
    "fffcf9f6f3f0edeae7e4e1dedbd8d5d2cfccc9c6c3c0bdbab7b4b1aeaba8a5a29f9c999693908d8a8784817e7b7875726f6c696663605d5a5754514e4b484542",
    [
        (
            "m",
            "xprv9s21ZrQH143K31xYSDQpPDxsXRTUcvj2iNHm5NUtrGiGG5e2DtALGdso3pGz6ssrdK4PFmM8NSpSBHNqPqm55Qn3LqFtT2emdEXVYsCzC2U",
        ),
        (
            "m/0",
            "xprv9vHkqa6EV4sPZHYqZznhT2NPtPCjKuDKGY38FBWLvgaDx45zo9WQRUT3dKYnjwih2yJD9mkrocEZXo1ex8G81dwSM1fwqWpWkeS3v86pgKt",
        ),
        (
            "m/0/2147483647'",
            "xprv9wSp6B7kry3Vj9m1zSnLvN3xH8RdsPP1Mh7fAaR7aRLcQMKTR2vidYEeEg2mUCTAwCd6vnxVrcjfy2kRgVsFawNzmjuHc2YmYRmagcEPdU9",
        ),
        (
            "m/0/2147483647'/1",
            "xprv9zFnWC6h2cLgpmSA46vutJzBcfJ8yaJGg8cX1e5StJh45BBciYTRXSd25UEPVuesF9yog62tGAQtHjXajPPdbRCHuWS6T8XA2ECKADdw4Ef",
        ),
        (
            "m/0/2147483647'/1/2147483646'",
            "xprvA1RpRA33e1JQ7ifknakTFpgNXPmW2YvmhqLQYMmrj4xJXXWYpDPS3xz7iAxn8L39njGVyuoseXzU6rcxFLJ8HFsTjSyQbLYnMpCqE2VbFWc",
        ),
        (
            "m/0/2147483647'/1/2147483646'/2",
            "xprvA2nrNbFZABcdryreWet9Ea4LvTJcGsqrMzxHx98MMrotbir7yrKCEXw7nadnHM8Dq38EGfSh6dqA9QWTyefMLEcBYJUuekgW4BYPJcr9E7j",
        ),
    ],
)


@pytest.mark.parametrize("seed_hex,chain", [VECTOR_1, VECTOR_2], ids=["vector1", "vector2"])
def test_bip32_vectors(seed_hex, chain):
    seed = bytes.fromhex(seed_hex)
    for path, expected in chain:
        assert xprv(seed, path) == expected, path


def test_bip32_master_key_of_vector_1():
    master = ExtendedPrivateKey.from_seed(bytes.fromhex(VECTOR_1[0]))
    assert master.secret.hex() == "e8f32e723decf4051aefac8e2c93c9c5b214313817cdb01a1494b917c8436b35"
    assert (
        master.chain_code.hex()
        == "873dff81c02f525623fd1fe5167eac3a55a049de3d314bb42ee227ffed37d508"
    )
    assert "e8f32e" not in repr(master)


def test_bip32_seed_size_bounds():
    with pytest.raises(ValueError):
        ExtendedPrivateKey.from_seed(b"\1" * 15)
    with pytest.raises(ValueError):
        ExtendedPrivateKey.from_seed(b"\1" * 65)


# --- paths -----------------------------------------------------------------------------


def test_parse_path():
    assert parse_path("m") == ()
    assert parse_path("m/86'/1'/0'/0/5") == (86 + HARDENED, 1 + HARDENED, HARDENED, 0, 5)
    assert parse_path("m/0h/1H/2") == (HARDENED, 1 + HARDENED, 2)
    assert parse_path("m/2147483647'") == (2**32 - 1,)
    assert format_path(parse_path("m/86'/7337'/0'/1/42")) == "m/86'/7337'/0'/1/42"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "M/0",
        "0/1",
        "m/",
        "m//1",
        "m/-1",
        "m/+1",
        "m/ 1",
        "m/1''",
        "m/x",
        "m/2147483648",
        "m/2147483648'",
        "m/1_0",
        "m/\u0661",
    ],
)
def test_parse_path_rejects(bad):
    with pytest.raises(BadPathError):
        parse_path(bad)


def test_derivation_path_per_network():
    assert derivation_path(MAIN.coin_type, RECEIVE, 5) == "m/86'/7337'/0'/0/5"
    assert derivation_path(TESTNET.coin_type, CHANGE, 0) == "m/86'/1'/0'/1/0"
    assert derivation_path(REGTEST.coin_type, RECEIVE, 3) == "m/86'/1'/0'/0/3"
    with pytest.raises(ValueError):
        derivation_path(1, 2, 0)
    with pytest.raises(ValueError):
        derivation_path(1, 0, HARDENED)


def test_networks():
    assert {n: (v.hrp, v.coin_type) for n, v in NETWORKS.items()} == {
        "main": ("obol", 7337),
        "testnet": ("tobol", 1),
        "regtest": ("robol", 1),
    }
    assert network_by_name("testnet") is TESTNET
    with pytest.raises(UnknownNetworkError):
        network_by_name("mainnet")


# --- BIP-39 (Trezor english vectors, passphrase "TREZOR") --------------------------------

TREZOR_VECTORS = [
    (
        "abandon abandon abandon abandon abandon abandon "
        "abandon abandon abandon abandon abandon about",
        "c55257c360c07c72029aebc1b53c05ed0362ada38ead3e3e9efa3708e53495531f09a6987599d18264c1e1c92f2cf141630c7a3c4ab7c81b2f001698e7463b04",
        "xprv9s21ZrQH143K3h3fDYiay8mocZ3afhfULfb5GX8kCBdno77K4HiA15Tg23wpbeF1pLfs1c5SPmYHrEpTuuRhxMwvKDwqdKiGJS9XFKzUsAF",
    ),
    (
        "legal winner thank year wave sausage worth useful legal winner thank yellow",
        "2e8905819b8723fe2c1d161860e5ee1830318dbf49a83bd451cfb8440c28bd6fa457fe1296106559a3c80937a1c1069be3a3a5bd381ee6260e8d9739fce1f607",
        "xprv9s21ZrQH143K2gA81bYFHqU68xz1cX2APaSq5tt6MFSLeXnCKV1RVUJt9FWNTbrrryem4ZckN8k4Ls1H6nwdvDTvnV7zEXs2HgPezuVccsq",
    ),
    (
        "zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo zoo wrong",
        "ac27495480225222079d7be181583751e86f571027b0497b5b5d11218e0a8a13332572917f0f8e5a589620c6f15b11c61dee327651a14c34e18231052e48c069",
        "xprv9s21ZrQH143K2V4oox4M8Zmhi2Fjx5XK4Lf7GKRvPSgydU3mjZuKGCTg7UPiBUD7ydVPvSLtg9hjp7MQTYsW67rZHAXeccqYqrsx8LcXnyd",
    ),
    (
        "gravity machine north sort system female filter attitude volume "
        "fold club stay feature office ecology stable narrow fog",
        "628c3827a8823298ee685db84f55caa34b5cc195a778e52d45f59bcf75aba68e4d7590e101dc414bc1bbd5737666fbbef35d1f1903953b66624f910feef245ac",
        "xprv9s21ZrQH143K3uT8eQowUjsxrmsA9YUuQQK1RLqFufzybxD6DH6gPY7NjJ5G3EPHjsWDrs9iivSbmvjc9DQJbJGatfa9pv4MZ3wjr8qWPAK",
    ),
    (
        "abandon abandon abandon abandon abandon abandon abandon abandon "
        "abandon abandon abandon abandon abandon abandon abandon abandon "
        "abandon abandon abandon abandon abandon abandon abandon art",
        "bda85446c68413707090a52022edd26a1c9462295029f2e60cd7c4f2bbd3097170af7a4d73245cafa9c3cca8d561a7c3de6f5d4a10be8ed2a5e608d68f92fcc8",
        "xprv9s21ZrQH143K32qBagUJAMU2LsHg3ka7jqMcV98Y7gVeVyNStwYS3U7yVVoDZ4btbRNf4h6ibWpY22iRmXq35qgLs79f312g2kj5539ebPM",
    ),
    (
        "hamster diagram private dutch cause delay private meat slide toddler razor book "
        "happy fancy gospel tennis maple dilemma loan word shrug inflict delay length",
        "64c87cde7e12ecf6704ab95bb1408bef047c22db4cc7491c4271d170a1b213d20b385bc1588d9c7b38f1b39d415665b8a9030c9ec653d75e65f847d8fc1fc440",
        "xprv9s21ZrQH143K2XTAhys3pMNcGn261Fi5Ta2Pw8PwaVPhg3D8DWkzWQwjTJfskj8ofb81i9NP2cUNKxwjueJHHMQAnxtivTA75uUFqPFeWzk",
    ),
]


@pytest.mark.parametrize("phrase,seed_hex,root_xprv", TREZOR_VECTORS)
def test_bip39_trezor_vectors(phrase, seed_hex, root_xprv):
    assert validate_mnemonic(phrase) == phrase
    seed = mnemonic_to_seed(phrase, "TREZOR")
    assert seed.hex() == seed_hex
    assert xprv(seed, "m") == root_xprv


def test_bip39_without_passphrase():
    phrase = TREZOR_VECTORS[0][0]
    assert mnemonic_to_seed(phrase).hex().startswith("5eb00bbddcf069084889a8ab9155568165f5c453")


def test_mnemonic_is_normalised():
    phrase = TREZOR_VECTORS[1][0]
    messy = "  " + phrase.upper().replace(" ", " \t ") + "\n"
    assert validate_mnemonic(messy) == phrase
    assert mnemonic_to_seed(messy, "TREZOR").hex() == TREZOR_VECTORS[1][1]


@pytest.mark.parametrize("words", [12, 24])
def test_generate_mnemonic(words):
    phrase = generate_mnemonic(words)
    assert len(phrase.split()) == words
    assert validate_mnemonic(phrase) == phrase
    assert generate_mnemonic(words) != phrase


def test_generate_rejects_other_lengths():
    with pytest.raises(ValueError):
        generate_mnemonic(18)


@pytest.mark.parametrize(
    "phrase,problem",
    [
        ("abandon " * 11 + "abandon", "checksum"),  # valid words, bad checksum
        ("abandon " * 10 + "about abandon", "checksum"),  # two words swapped
        ("abandon " * 10 + "abandn about", "word 11 of 12 is not"),  # the typo's place
        ("abandon " * 10 + "about", "has 11"),  # too short
        ("", "has 0"),
    ],
)
def test_bad_mnemonic(phrase, problem):
    with pytest.raises(BadMnemonicError) as info:
        validate_mnemonic(phrase)
    assert info.value.code == "bad-mnemonic"
    assert problem in info.value.message
    # no word of the phrase is echoed back: errors reach terminals and logs
    assert not set(phrase.split()) & set(info.value.message.replace(",", " ").split())
    with pytest.raises(BadMnemonicError):
        mnemonic_to_seed(phrase)


# --- KeyChain and addresses -------------------------------------------------------------

PHRASE = TREZOR_VECTORS[0][0]


@pytest.fixture(scope="module")
def seed() -> bytes:
    return mnemonic_to_seed(PHRASE, "")


def test_keychain_matches_bip32_path(seed):
    chain = KeyChain.for_network(seed, TESTNET)
    key = chain.key(RECEIVE, 5)
    expected = ExtendedPrivateKey.from_seed(seed).derive("m/86'/1'/0'/0/5")
    assert key.secret == expected.secret
    assert key.pubkey == expected.xonly_public_key
    assert chain.path(RECEIVE, 5) == "m/86'/1'/0'/0/5"
    assert decode_address("tobol", chain.address(RECEIVE, 5)) == key.address_hash


def test_keychain_is_cached(seed):
    chain = KeyChain.for_network(seed, "regtest")
    assert chain.key(CHANGE, 3) is chain.key(CHANGE, 3)
    assert chain.address(CHANGE, 3) is chain.address(CHANGE, 3)


def test_keychain_key_signs(seed):
    key = KeyChain.for_network(seed, MAIN).key(RECEIVE, 0)
    msg = hashlib.sha256(b"spend").digest()
    assert verify_schnorr(key.pubkey, key.sign(msg), msg)


def test_addresses_differ_per_network_and_path(seed):
    main = KeyChain.for_network(seed, MAIN)
    test = KeyChain.for_network(seed, TESTNET)
    reg = KeyChain.for_network(seed, REGTEST)
    assert main.address(RECEIVE, 0).startswith("obol1")
    assert test.address(RECEIVE, 0).startswith("tobol1")
    assert reg.address(RECEIVE, 0).startswith("robol1")
    # main uses another coin type: other keys, not only another prefix
    assert main.key(RECEIVE, 0).pubkey != test.key(RECEIVE, 0).pubkey
    # testnet and regtest share the coin type: same key, different prefix
    assert test.key(RECEIVE, 0).pubkey == reg.key(RECEIVE, 0).pubkey
    assert test.address(RECEIVE, 0) != reg.address(RECEIVE, 0)
    addresses = {main.address(c, i) for c in (RECEIVE, CHANGE) for i in range(5)}
    assert len(addresses) == 10


def test_same_words_same_addresses(seed):
    again = KeyChain.from_mnemonic("  " + PHRASE.upper(), "", "main")
    first = KeyChain.for_network(seed, MAIN)
    assert [again.address(RECEIVE, i) for i in range(3)] == [
        first.address(RECEIVE, i) for i in range(3)
    ]
    other_passphrase = KeyChain.from_mnemonic(PHRASE, "TREZOR", "main")
    assert other_passphrase.address(RECEIVE, 0) != first.address(RECEIVE, 0)


def test_keychain_find(seed):
    chain = KeyChain.for_network(seed, TESTNET)
    assert chain.find(chain.address(CHANGE, 2), gap=5) == (CHANGE, 2)
    assert chain.find(KeyChain.for_network(seed, MAIN).address(RECEIVE, 0), gap=5) is None


def test_keychain_rejects_bad_slots(seed):
    chain = KeyChain.for_network(seed, TESTNET)
    with pytest.raises(ValueError):
        chain.key(2, 0)
    with pytest.raises(ValueError):
        chain.address(RECEIVE, -1)
