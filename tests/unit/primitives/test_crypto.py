"""Hashes, BIP340 Schnorr signatures and bech32m addresses (node/primitives/crypto.py)."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.consensus.params import NETWORKS
from node.primitives.crypto import (
    _CHARSET,
    ADDR_HASH_SIZE,
    BECH32_CONST,
    BECH32M_CONST,
    SigningKey,
    address_hash,
    bech32_decode,
    bech32_encode,
    convertbits,
    decode_address,
    encode_address,
    sha256,
    sha256d,
    tagged_hash,
    verify_schnorr,
)
from node.primitives.errors import AddressError

# --- hashes ----------------------------------------------------------------------------


def test_sha256d_known_values():
    """sha256d of "" and "abc" equal the well-known double-SHA256 values."""
    assert sha256d(b"").hex() == "5df6e0e2761359d30a8275058e299fcc0381534545f55cf43e41983f5d4c9456"
    assert (
        sha256d(b"abc").hex() == "4f8b42c22dd3729b519ba6f68d2da7cc5b2d606d05daed5ad5128cc03e6c6358"
    )
    assert (
        sha256(b"abc").hex() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_tagged_hash_known_values():
    """tagged_hash is sha256(sha256(tag) || sha256(tag) || data), with fixed known outputs."""
    assert (
        tagged_hash("BIP0340/challenge", b"").hex()
        == "c216d352f5818b7b4beacd4ae0a26fe888080823d2a598856661bcd54f1b3713"
    )
    assert (
        tagged_hash("Obol/address", bytes(32)).hex()
        == "0921c836de7756e04283094e339451672d3e5ac9edf3f0cb08fd04f2133b9ddb"
    )
    tag = hashlib.sha256(b"Obol/sighash").digest()
    assert tagged_hash("Obol/sighash", b"xyz") == hashlib.sha256(tag + tag + b"xyz").digest()
    assert tagged_hash("A", b"x") != tagged_hash("B", b"x")


def test_address_hash_is_20_bytes_of_the_tagged_hash():
    """address_hash is the first 20 bytes of tagged_hash('Obol/address', pubkey)."""
    pub = bytes(range(32))
    assert address_hash(pub) == tagged_hash("Obol/address", pub)[:20]
    assert len(address_hash(pub)) == ADDR_HASH_SIZE


# --- BIP340 ------------------------------------------------------------------------------
# bitcoin/bips bip-0340/test-vectors.csv (final version, has_even_y):
# (index, secret key, public key, aux_rand, message, signature, verification result)
BIP340_VECTORS = [
    (
        0,
        "0000000000000000000000000000000000000000000000000000000000000003",
        "F9308A019258C31049344F85F89D5229B531C845836F99B08601F113BCE036F9",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0000000000000000000000000000000000000000000000000000000000000000",
        "E907831F80848D1069A5371B402410364BDF1C5F8307B0084C55F1CE2DCA8215"
        "25F66A4A85EA8B71E482A74F382D2CE5EBEEE8FDB2172F477DF4900D310536C0",
        True,
    ),
    (
        1,
        "B7E151628AED2A6ABF7158809CF4F3C762E7160F38B4DA56A784D9045190CFEF",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "0000000000000000000000000000000000000000000000000000000000000001",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6896BD60EEAE296DB48A229FF71DFE071BDE413E6D43F917DC8DCF8C78DE3341"
        "8906D11AC976ABCCB20B091292BFF4EA897EFCB639EA871CFA95F6DE339E4B0A",
        True,
    ),
    (
        2,
        "C90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B14E5C9",
        "DD308AFEC5777E13121FA72B9CC1B7CC0139715309B086C960E18FD969774EB8",
        "C87AA53824B4D7AE2EB035A2B5BBBCCC080E76CDC6D1692C4B0B62D798E6D906",
        "7E2D58D8B3BCDF1ABADEC7829054F90DDA9805AAB56C77333024B9D0A508B75C",
        "5831AAEED7B44BB74E5EAB94BA9D4294C49BCF2A60728D8B4C200F50DD313C1B"
        "AB745879A5AD954A72C45A91C3A51D3C7ADEA98D82F8481E0E1E03674A6F3FB7",
        True,
    ),
    (
        3,
        "0B432B2677937381AEF05BB02A66ECD012773062CF3FA2549E44F58ED2401710",
        "25D1DFF95105F5253C4022F628A996AD3A0D95FBF21D468A1B33F8C160D8F517",
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
        "7EB0509757E246F19449885651611CB965ECC1A187DD51B64FDA1EDC9637D5EC"
        "97582B9CB13DB3933705B32BA982AF5AF25FD78881EBB32771FC5922EFC66EA3",
        True,
    ),
    (
        4,
        "",
        "D69C3509BB99E412E68B0FE8544E72837DFA30746D8BE2AA65975F29D22DC7B9",
        "",
        "4DF3C3F68FCC83B27E9D42C90431A72499F17875C81A599B566C9889B9696703",
        "00000000000000000000003B78CE563F89A0ED9414F5AA28AD0D96D6795F9C63"
        "76AFB1548AF603B3EB45C9F8207DEE1060CB71C04E80F593060B07D28308D7F4",
        True,
    ),
    (
        5,
        "",
        "EEFDEA4CDB677750A420FEE807EACF21EB9898AE79B9768766E4FAA04A2D4A34",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769"
        # pubkey not on curve
        "69E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B",
        False,
    ),
    (
        6,
        "",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "FFF97BD5755EEEA420453A14355235D382F6472F8568A18B2F057A1460297556"
        # has_even_y(R) false
        "3CC27944640AC607CD107AE10923D9EF7A73C643E166BE5EBEAFA34B1AC553E2",
        False,
    ),
    (
        7,
        "",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "1FA62E331EDBC21C394792D2AB1100A7B432B013DF3F6FF4F99FCB33E0E1515F"
        "28890B3EDB6E7189B630448B515CE4F8622A954CFE545735AAEA5134FCCDB2BD",
        False,
    ),  # negated message
    (
        8,
        "",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769"
        "961764B3AA9B2FFCB6EF947B6887A226E8D7C93E00C5ED0C1834FF0D0C2E6DA6",
        False,
    ),  # negated s
    (
        9,
        "",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "0000000000000000000000000000000000000000000000000000000000000000"
        "123DDA8328AF9C23A94C1FEECFD123BA4FB73476F0D594DCB65C6425BD186051",
        False,
    ),  # sG - eP infinite
    (
        10,
        "",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "0000000000000000000000000000000000000000000000000000000000000001"
        "7615FBAF5AE28864013C099742DEADB4DBA87F11AC6754F93780D5A1837CF197",
        False,
    ),  # sG - eP infinite
    (
        11,
        "",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "4A298DACAE57395A15D0795DDBFD1DCB564DA82B0F269BC70A74F8220429BA1D"
        # r not an x on the curve
        "69E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B",
        False,
    ),
    (
        12,
        "",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F"
        "69E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B",
        False,
    ),  # r == field size
    (
        13,
        "",
        "DFF1D77F2A671C5F36183726DB2341BE58FEAE1DA2DECED843240F7B502BA659",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769"
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141",
        False,
    ),  # s == curve order
    (
        14,
        "",
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC30",
        "",
        "243F6A8885A308D313198A2E03707344A4093822299F31D0082EFA98EC4E6C89",
        "6CFF5C3BA86C69EA4B7376F31A9BCB4F74C1976089B2D9963DA2E5543E177769"
        # pubkey >= field size
        "69E89B4C5564D00349106B8497785DD7D1D713A8AE82B32FA79D5F7FC407D39B",
        False,
    ),
]


@pytest.mark.parametrize("vector", BIP340_VECTORS, ids=lambda v: f"bip340-{v[0]}")
def test_bip340_verification_vectors(vector):
    """verify_schnorr gives the official BIP340 verification result, without raising."""
    _, _, pubkey, _, msg, sig, expected = vector
    assert verify_schnorr(bytes.fromhex(pubkey), bytes.fromhex(sig), bytes.fromhex(msg)) is expected


@pytest.mark.parametrize(
    "vector", [v for v in BIP340_VECTORS if v[1]], ids=lambda v: f"bip340-{v[0]}"
)
def test_bip340_signing_key_derives_vector_pubkey_and_signs(vector):
    """SigningKey of a vector's secret has the vector's x-only key;
    its (random-aux) signatures verify."""
    _, secret, pubkey, _, msg, _, _ = vector
    key = SigningKey(bytes.fromhex(secret))
    assert key.pubkey == bytes.fromhex(pubkey)
    sig = key.sign(bytes.fromhex(msg))
    assert len(sig) == 64
    assert verify_schnorr(key.pubkey, sig, bytes.fromhex(msg))


# A minimal pure-Python BIP340 verifier whose challenge hash is node.crypto.tagged_hash:
# the official vectors verifying through it pins tagged_hash to the BIP340 definition.
_P = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_G = (
    0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798,
    0x483ADA7726A3C4655DA4FBFC0E1108A8FD17B448A68554199C47D08FFB10D4B8,
)


def _add(a, b):
    if a is None:
        return b
    if b is None:
        return a
    if a[0] == b[0] and a[1] != b[1]:
        return None
    if a == b:
        lam = 3 * a[0] * a[0] * pow(2 * a[1], _P - 2, _P) % _P
    else:
        lam = (b[1] - a[1]) * pow(b[0] - a[0], _P - 2, _P) % _P
    x = (lam * lam - a[0] - b[0]) % _P
    return x, (lam * (a[0] - x) - a[1]) % _P


def _mul(point, k):
    result = None
    while k:
        if k & 1:
            result = _add(result, point)
        point = _add(point, point)
        k >>= 1
    return result


def _reference_verify(pubkey: bytes, msg: bytes, sig: bytes) -> bool:
    x = int.from_bytes(pubkey, "big")
    y = pow((x**3 + 7) % _P, (_P + 1) // 4, _P)
    point = (x, y if y % 2 == 0 else _P - y)
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    e = int.from_bytes(tagged_hash("BIP0340/challenge", sig[:32] + pubkey + msg), "big") % _N
    big_r = _add(_mul(_G, s), _mul(point, _N - e))
    return big_r is not None and big_r[1] % 2 == 0 and big_r[0] == r


@pytest.mark.parametrize(
    "vector", [v for v in BIP340_VECTORS if v[6]][:3], ids=lambda v: f"bip340-{v[0]}"
)
def test_tagged_hash_matches_bip340_challenge(vector):
    """The official valid BIP340 vectors verify with a challenge computed by tagged_hash."""
    _, _, pubkey, _, msg, sig, _ = vector
    assert _reference_verify(bytes.fromhex(pubkey), bytes.fromhex(msg), bytes.fromhex(sig))
    assert not _reference_verify(
        bytes.fromhex(pubkey), bytes(32) if int(msg, 16) else b"\x01" * 32, bytes.fromhex(sig)
    )


KEY = SigningKey(bytes(31) + b"\x09")
OTHER = SigningKey(bytes(31) + b"\x0a")
MSG = hashlib.sha256(b"message").digest()


def test_sign_verify_roundtrip():
    """A signature by a key verifies against its x-only public key and message."""
    sig = KEY.sign(MSG)
    assert len(KEY.pubkey) == 32 and len(sig) == 64
    assert verify_schnorr(KEY.pubkey, sig, MSG) is True


def test_verify_rejects_wrong_message():
    """A signature does not verify for another message."""
    sig = KEY.sign(MSG)
    assert verify_schnorr(KEY.pubkey, sig, hashlib.sha256(b"other").digest()) is False


def test_verify_rejects_wrong_key():
    """A signature does not verify under another public key."""
    sig = KEY.sign(MSG)
    assert verify_schnorr(OTHER.pubkey, sig, MSG) is False


@pytest.mark.parametrize(
    "pubkey, sig, msg",
    [
        (KEY.pubkey[:31], None, MSG),
        (KEY.pubkey + b"\x00", None, MSG),
        (b"", None, MSG),
        (bytes(32), None, MSG),  # x = 0 is not on the curve
        (b"\xff" * 32, None, MSG),  # x >= field size
        (KEY.pubkey, b"", MSG),
        (KEY.pubkey, bytes(63), MSG),
        (KEY.pubkey, bytes(65), MSG),
        (KEY.pubkey, bytes(64), MSG),
        (KEY.pubkey, b"\xff" * 64, MSG),  # r and s out of range
        (KEY.pubkey, None, MSG[:31]),
        (KEY.pubkey, None, MSG + b"\x00"),
    ],
    ids=[
        "key31",
        "key33",
        "key0",
        "key-x0",
        "key-ff",
        "sig0",
        "sig63",
        "sig65",
        "sig-zero",
        "sig-ff",
        "msg31",
        "msg33",
    ],
)
def test_verify_rejects_malformed_input_without_raising(pubkey, sig, msg):
    """Malformed keys, signatures and messages make verify_schnorr return False, never raise."""
    if sig is None:
        sig = KEY.sign(MSG)
    assert verify_schnorr(pubkey, sig, msg) is False


def test_verify_rejects_signature_with_one_bit_flipped():
    """Flipping any single byte of a valid signature invalidates it."""
    sig = KEY.sign(MSG)
    for pos in range(64):
        bad = sig[:pos] + bytes([sig[pos] ^ 0x01]) + sig[pos + 1 :]
        assert verify_schnorr(KEY.pubkey, bad, MSG) is False


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=40), st.binary(max_size=70), st.binary(max_size=40))
def test_verify_never_raises(pubkey, sig, msg):
    """For arbitrary byte strings verify_schnorr returns a bool and never raises."""
    assert verify_schnorr(pubkey, sig, msg) in (True, False)


# --- bech32m (BIP350) ---------------------------------------------------------------------
# bitcoin/bips bip-0350.mediawiki, "Test vectors for Bech32m".
BECH32M_VALID = [
    "A1LQFN3A",
    "a1lqfn3a",
    "an83characterlonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11sg7hg6",
    "abcdef1l7aum6echk45nj3s0wdvt2fg8x9yrzpqzd3ryx",
    "11llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllludsr8",
    "split1checkupstagehandshakeupstreamerranterredcaperredlc445v",
    "?1v759aa",
]

BECH32M_INVALID = [
    "\x201xj0phk",  # HRP character out of range
    "\x7f1g6xzxy",  # HRP character out of range
    "\x801vctc34",  # HRP character out of range
    "an84characterslonghumanreadablepartthatcontainsthetheexcludedcharactersbioandnumber11d6pts4",
    "qyrz8wqd2c9m",  # no separator character
    "1qyrz8wqd2c9m",  # empty HRP
    "y1b0jsk6g",  # invalid data character
    "lt1igcx5c0",  # invalid data character
    "in1muywd",  # too short checksum
    "mm1crxm3i",  # invalid character in checksum
    "au1s5cgom",  # invalid character in checksum
    "M1VUXWEZ",  # checksum calculated with uppercase form of HRP
    "16plkw9",  # empty HRP
    "1p2gdwpf",  # empty HRP
]


@pytest.mark.parametrize("text", BECH32M_VALID)
def test_bip350_valid_bech32m_strings(text):
    """Every valid BIP350 bech32m string decodes with BECH32M_CONST and re-encodes to itself."""
    hrp, data, const = bech32_decode(text)
    assert const == BECH32M_CONST
    assert hrp == text[: text.rfind("1")].lower()
    assert bech32_encode(hrp, data) == text.lower()


@pytest.mark.parametrize("text", BECH32M_INVALID, ids=lambda t: t.encode().hex()[:24])
def test_bip350_invalid_bech32m_strings(text):
    """Every invalid BIP350 bech32m string is refused with AddressError."""
    with pytest.raises(AddressError):
        bech32_decode(text)


# bip-0350.mediawiki, valid segwit addresses: v0 carries bech32, v1+ bech32m.
SEGWIT_VALID = [
    ("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4", BECH32_CONST),
    ("tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7", BECH32_CONST),
    ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y", BECH32M_CONST),
    ("BC1SW50QGDZ25J", BECH32M_CONST),
    ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", BECH32M_CONST),
    ("tb1qqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesrxh6hy", BECH32_CONST),
    ("tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c", BECH32M_CONST),
    ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0", BECH32M_CONST),
]


@pytest.mark.parametrize("text, const", SEGWIT_VALID)
def test_bip350_segwit_addresses_report_their_checksum_constant(text, const):
    """bech32_decode tells bech32 (v0 segwit) from bech32m (v1+) on the BIP350 address vectors."""
    hrp, data, found = bech32_decode(text)
    assert hrp in ("bc", "tb") and found == const
    assert (data[0] == 0) == (const == BECH32_CONST)


# --- Obol addresses ------------------------------------------------------------------------

HASH = bytes(range(100, 120))


@pytest.mark.parametrize("network", sorted(NETWORKS))
def test_address_roundtrip_per_network(network):
    """An address encodes with the network's hrp and decodes back to the same 20-byte hash."""
    hrp = NETWORKS[network].hrp
    for addr_hash in (HASH, bytes(20), b"\xff" * 20, KEY.address_hash):
        address = encode_address(hrp, addr_hash)
        assert address.startswith(hrp + "1") and address == address.lower()
        assert decode_address(hrp, address) == addr_hash
        assert decode_address(hrp, address.upper()) == addr_hash


def test_every_single_character_typo_is_rejected():
    """Replacing any one character of an address by any other charset character
    raises AddressError."""
    hrp = NETWORKS["main"].hrp
    address = encode_address(hrp, HASH)
    sep = address.rfind("1")
    for pos in range(len(address)):
        if pos == sep:
            continue
        alternatives = _CHARSET if pos > sep else "abcdefghijklmnopqrstuvwxyz"
        for char in alternatives:
            if char == address[pos]:
                continue
            typo = address[:pos] + char + address[pos + 1 :]
            with pytest.raises(AddressError):
                decode_address(hrp, typo)


def test_swapped_adjacent_characters_are_rejected():
    """Swapping two adjacent differing characters of the data part raises AddressError."""
    hrp = NETWORKS["main"].hrp
    address = encode_address(hrp, HASH)
    for pos in range(len(hrp) + 1, len(address) - 1):
        if address[pos] == address[pos + 1]:
            continue
        swapped = address[:pos] + address[pos + 1] + address[pos] + address[pos + 2 :]
        with pytest.raises(AddressError):
            decode_address(hrp, swapped)


@pytest.mark.parametrize(
    "mine, theirs", [(a, b) for a in sorted(NETWORKS) for b in sorted(NETWORKS) if a != b]
)
def test_address_of_another_network_is_rejected(mine, theirs):
    """A valid address of another network is refused with code wrong-network."""
    address = encode_address(NETWORKS[theirs].hrp, HASH)
    with pytest.raises(AddressError) as err:
        decode_address(NETWORKS[mine].hrp, address)
    assert err.value.code == "wrong-network"


def test_bech32_checksum_is_rejected():
    """An address carrying a bech32 (BIP173) checksum instead of bech32m is refused."""
    hrp = NETWORKS["main"].hrp
    data = [0] + convertbits(HASH, 8, 5, True)
    legacy = bech32_encode(hrp, data, BECH32_CONST)
    assert bech32_decode(legacy)[2] == BECH32_CONST  # a well-formed bech32 string...
    with pytest.raises(AddressError) as err:  # ...that is not an address
        decode_address(hrp, legacy)
    assert err.value.code == "bad-address"
    assert decode_address(hrp, bech32_encode(hrp, data)) == HASH


@pytest.mark.parametrize(
    "case",
    [
        "version-1",
        "payload-19",
        "payload-21",
        "empty-data",
        "bad-padding",
        "mixed-case",
        "empty",
        "not-a-string",
    ],
)
def test_malformed_addresses_are_rejected(case):
    """Unknown version, wrong payload length, non-zero padding,
    mixed case and empty input raise AddressError."""
    hrp = NETWORKS["regtest"].hrp
    good = encode_address(hrp, HASH)
    address = {
        "version-1": lambda: bech32_encode(hrp, [1] + convertbits(HASH, 8, 5, True)),
        "payload-19": lambda: bech32_encode(hrp, [0] + convertbits(HASH[:19], 8, 5, True)),
        "payload-21": lambda: bech32_encode(hrp, [0] + convertbits(HASH + b"\x00", 8, 5, True)),
        "empty-data": lambda: bech32_encode(hrp, []),
        # 160 bits are 32 groups; a 33rd group of zero bits is padding of more than 4 bits
        "bad-padding": lambda: bech32_encode(hrp, [0] + convertbits(HASH, 8, 5, True) + [0]),
        "mixed-case": lambda: (
            good[:-1] + good[-1].upper() if good[-1].isalpha() else good.capitalize()
        ),
        "empty": lambda: "",
        "not-a-string": lambda: HASH,
    }[case]()
    with pytest.raises(AddressError):
        decode_address(hrp, address)


def test_convertbits_rejects_out_of_range_values():
    """convertbits refuses values that do not fit the source width (negative or too large)."""
    assert convertbits([31, 31], 5, 8, True) == [255, 192]
    for values, frombits in (([32], 5), ([-1], 5), ([256], 8)):
        with pytest.raises(AddressError):
            convertbits(values, frombits, 5 if frombits == 8 else 8, True)


def test_encode_address_requires_20_bytes():
    """encode_address refuses a hash that is not 20 bytes."""
    for size in (0, 19, 21, 32):
        with pytest.raises(AddressError):
            encode_address("obol", bytes(size))
