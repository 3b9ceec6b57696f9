"""Canonical msgpack (node/primitives/encoding.py) and the strict typed decoders of tx and block."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from node.primitives.block import MAX_BLOCK_SIZE, Block, BlockHeader, merkle_root
from node.primitives.crypto import SigningKey, sha256d
from node.primitives.encoding import (
    MAX_DECODE_SIZE,
    decode,
    element_bytes,
    encode,
    encode_array,
    encode_uint,
    expect_bytes,
    expect_int,
    expect_list,
    expect_str,
)
from node.primitives.errors import DecodeError, ValidationError
from node.primitives.tx import (
    MAX_TX_SIZE,
    MAX_UINT32,
    MAX_UINT64,
    OutPoint,
    Transaction,
    TxOut,
    make_coinbase,
    sign_transaction,
)

NETWORK_ID = bytes(range(32))
KEY = SigningKey(bytes(31) + b"\x07")


def _signed_tx() -> Transaction:
    spent = TxOut(5_000, KEY.address_hash)
    return sign_transaction(
        1,
        [(OutPoint(b"\x11" * 32, 3), spent, KEY), (OutPoint(b"\x22" * 32, 0), spent, KEY)],
        [TxOut(4_000, b"\x33" * 20), TxOut(900, b"\x44" * 20)],
        NETWORK_ID,
        locktime=17,
    )


TX = _signed_tx()
COINBASE = make_coinbase(5, [TxOut(50, b"\x55" * 20)], b"miner data")
HEADER = BlockHeader.create(
    1, b"\x01" * 32, merkle_root([COINBASE.txid, TX.txid]), 1_800_000_000, 0x207FFFFF, 12345
)
BLOCK = Block.create(HEADER, [COINBASE, TX])


# --- roundtrips ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        0,
        1,
        127,
        128,
        255,
        256,
        65535,
        65536,
        2**32 - 1,
        2**32,
        MAX_UINT64,
        -1,
        -32,
        -33,
        -128,
        -129,
        -(2**15),
        -(2**31) - 1,
        -(2**63),
        b"",
        b"\x00",
        b"x" * 255,
        b"x" * 256,
        b"x" * 65536,
        "",
        "a",
        "é€",
        "a" * 31,
        "a" * 32,
        "a" * 256,
        [],
        [[]],
        [1, b"2", "3", [4, [5, [b""]]]],
        list(range(16)),
        list(range(70000)),
    ],
)
def test_roundtrip_canonical_values(value):
    """Every int/bytes/str/array value decodes back to itself from its canonical bytes."""
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


def test_tuples_encode_as_arrays():
    """Tuples and lists have the same encoding (both become arrays, decoded as lists)."""
    assert encode((1, (b"a", "b"))) == encode([1, [b"a", "b"]])
    assert decode(encode((1, (b"a",)))) == [1, [b"a"]]


def test_bytes_and_str_keep_their_types():
    """bytes encode as msgpack bin and str as msgpack str; decode gives each its own type back."""
    assert encode(b"ab")[0] == 0xC4 and encode("ab")[0] == 0xA2
    assert decode(encode(b"ab")) == b"ab" and decode(encode("ab")) == "ab"


def test_integers_use_the_shortest_form():
    """The packer picks the minimal integer representation (the basis of canonicity)."""
    assert encode(5) == b"\x05"
    assert encode(128) == b"\xcc\x80"
    assert encode(256) == b"\xcd\x01\x00"
    assert encode(2**16) == b"\xce\x00\x01\x00\x00"
    assert encode(2**32) == b"\xcf" + (2**32).to_bytes(8, "big")
    assert encode(-1) == b"\xff"
    assert encode(-33) == b"\xd0\xdf"


# --- rejections ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"\xcc\x05",  # uint8 holding a fixint
        b"\xcc\x00",  # uint8 zero
        b"\xcd\x00\xff",  # uint16 holding a uint8
        b"\xce\x00\x00\x01\x00",  # uint32 holding a uint16
        b"\xcf" + (1).to_bytes(8, "big"),  # uint64 holding 1
        b"\xcf" + (2**32 - 1).to_bytes(8, "big"),
        b"\xd0\x01",  # int8 holding a positive fixint
        b"\xd0\xff",  # int8 holding -1 (a negative fixint)
        b"\xd1\xff\x80",  # int16 holding -128 (fits int8)
        b"\xd2\xff\xff\xff\xff",  # int32 holding -1
        b"\xd3" + (5).to_bytes(8, "big"),  # int64 holding 5
    ],
    ids=lambda d: d.hex(),
)
def test_rejects_non_minimal_integers(data):
    """An integer not in its shortest form is refused."""
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xdc\x00\x01\x01",  # array16 with one element
        b"\xdd\x00\x00\x00\x00",  # array32, empty
        b"\xc5\x00\x01A",  # bin16 of one byte
        b"\xc6\x00\x00\x00\x00",  # bin32, empty
        b"\xd9\x01a",  # str8 of one character (fixstr exists)
        b"\xda\x00\x01a",  # str16 of one character
    ],
    ids=lambda d: d.hex(),
)
def test_rejects_non_minimal_lengths(data):
    """Arrays, bin and str with a longer-than-needed length prefix are refused."""
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\x80",  # empty map
        b"\x81\x01\x02",  # {1: 2}
        b"\x81\xa1k\x01",  # {"k": 1}
        b"\x91\x80",  # [{}]
        msgpack.packb({"a": [1, 2]}),
    ],
    ids=lambda d: d.hex(),
)
def test_rejects_maps(data):
    """Maps are not part of the format, at top level or nested."""
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xca" + struct.pack(">f", 1.0),  # float32
        b"\xcb" + struct.pack(">d", 1.0),  # float64 (re-encodes identically: still refused)
        b"\x92\x01\xcb" + struct.pack(">d", 0.5),
    ],
    ids=lambda d: d.hex(),
)
def test_rejects_floats(data):
    """Floats (32- or 64-bit, even when canonical msgpack) are refused."""
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "data", [b"\xc0", b"\xc2", b"\xc3", b"\x92\x01\xc0", b"\x91\x91\xc3"], ids=lambda d: d.hex()
)
def test_rejects_bool_and_nil(data):
    """nil, true and false are refused, at top level or nested."""
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xd4\x01\x00",  # fixext1
        msgpack.packb(msgpack.ExtType(5, b"abcd")),
        msgpack.packb(msgpack.Timestamp(0)),  # the timestamp extension
        b"\xc1",  # reserved (never used) marker
    ],
    ids=lambda d: d.hex(),
)
def test_rejects_ext_types_and_reserved_marker(data):
    """Extension types and the reserved 0xc1 marker are refused."""
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        encode(1) + b"\x00",
        encode([1, 2]) + b"\x90",
        encode(b"abc") + b"\xff",
        encode(TX.to_list()) + b"\x00",
    ],
    ids=lambda d: d.hex()[:16],
)
def test_rejects_trailing_bytes(data):
    """Bytes after the first complete value are refused."""
    with pytest.raises(DecodeError):
        decode(data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        encode([1, 2, 3])[:-1],
        encode(b"abcdef")[:-1],
        encode("abcdef")[:-2],
        encode(2**40)[:-1],
        b"\xcd\x01",
        TX.raw[:-1],
        TX.raw[: len(TX.raw) // 2],
    ],
    ids=lambda d: d.hex()[:16],
)
def test_rejects_truncated_input(data):
    """Input that ends in the middle of a value is refused."""
    with pytest.raises(DecodeError):
        decode(data)


def test_rejects_invalid_utf8_text():
    """A msgpack str that is not valid UTF-8 is refused."""
    with pytest.raises(DecodeError):
        decode(b"\xa2\xff\xfe")


def test_rejects_input_above_max_decode_size():
    """Input longer than MAX_DECODE_SIZE is refused before decoding."""
    big = encode(b"x" * MAX_DECODE_SIZE)
    assert len(big) > MAX_DECODE_SIZE
    with pytest.raises(DecodeError):
        decode(big)


def test_rejects_excessive_nesting_without_crashing():
    """Arrays nested far beyond any real object are refused with DecodeError (no RecursionError)."""
    assert decode(b"\x91" * 100 + b"\x90") is not None
    for depth in (5_000, 200_000):
        with pytest.raises(DecodeError):
            decode(b"\x91" * depth + b"\x90")


def test_expect_bytes_refuses_str():
    """A str where bytes are expected is refused even when its UTF-8 has the right length."""
    obj = decode(encode("a" * 32))
    with pytest.raises(DecodeError):
        expect_bytes(obj, 32)
    assert expect_bytes(decode(encode(b"a" * 32)), 32) == b"a" * 32


def test_expect_helpers_check_type_size_and_range():
    """expect_* accept the right shapes and refuse wrong type, size, length and range."""
    assert expect_list([1, 2], 2) == [1, 2]
    assert expect_int(5, 0, 5) == 5
    assert expect_str("ab", 2) == "ab"
    for call in (
        lambda: expect_list((1, 2), 2),  # decoded arrays are lists
        lambda: expect_list([1, 2], 3),
        lambda: expect_list(b"ab"),
        lambda: expect_int(True, 0, 1),  # bool is not an integer here
        lambda: expect_int(b"\x01", 0, 1),
        lambda: expect_int(6, 0, 5),
        lambda: expect_int(-1, 0, 5),
        lambda: expect_bytes(b"abc", 2),
        lambda: expect_bytes(b"abc", max_size=2),
        lambda: expect_bytes(bytearray(b"ab"), 2),
        lambda: expect_str(b"ab", 5),
        lambda: expect_str("abc", 2),
    ):
        with pytest.raises(DecodeError):
            call()


# --- properties --------------------------------------------------------------------------


def _valid_then_mangled():
    """Canonical encodings of nested values, then truncated / extended / with one byte changed."""
    values = st.recursive(
        st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=40) | st.text(max_size=20),
        lambda c: st.lists(c, max_size=5),
        max_leaves=20,
    )

    @st.composite
    def build(draw):
        data = bytearray(encode(draw(values)))
        action = draw(st.sampled_from(["keep", "cut", "append", "flip"]))
        if action == "cut":
            del data[draw(st.integers(0, len(data) - 1)) :]
        elif action == "append":
            data += draw(st.binary(min_size=1, max_size=4))
        elif action == "flip":
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return bytes(data)

    return build()


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=64), _valid_then_mangled()))
def test_decode_is_strict_for_arbitrary_bytes(data):
    """For any bytes, decode either raises DecodeError
    or returns a value that re-encodes to exactly them."""
    try:
        obj = decode(data)
    except DecodeError:
        return
    assert encode(obj) == data


nested = st.recursive(
    st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.binary(max_size=300)
    | st.text(max_size=40),
    lambda children: st.lists(children, max_size=6),
    max_leaves=30,
)


@settings(max_examples=200, deadline=None)
@given(nested)
def test_decode_encode_roundtrip_for_nested_values(value):
    """For arbitrary nested lists of ints/bytes/str, decode(encode(x)) == x."""
    assert decode(encode(value)) == value


# --- typed decoders: transactions --------------------------------------------------------


def test_transaction_roundtrip():
    """A signed transaction decodes from its bytes to an equal transaction with the same txid."""
    again = Transaction.from_bytes(TX.raw)
    assert again == TX and again.txid == TX.txid and again.raw == TX.raw
    assert Transaction.from_bytes(COINBASE.raw).is_coinbase


def _tx_list():
    return [TX.version, [list(i) for i in TX.inputs], [list(o) for o in TX.outputs], TX.locktime]


def _mutate(path, value):
    obj = _tx_list()
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return obj


BAD_TX_SHAPES = {
    "not-an-array": 5,
    "3-fields": _tx_list()[:3],
    "5-fields": _tx_list() + [0],
    "version-bytes": _mutate([0], b"\x01"),
    "version-str": _mutate([0], "1"),
    "version-negative": _mutate([0], -1),
    "version-above-uint32": _mutate([0], MAX_UINT32 + 1),
    "locktime-above-uint32": _mutate([3], MAX_UINT32 + 1),
    "locktime-negative": _mutate([3], -1),
    "inputs-not-array": _mutate([1], b""),
    "input-3-fields": _mutate([1, 0], list(TX.inputs[0])[:3]),
    "input-5-fields": _mutate([1, 0], list(TX.inputs[0]) + [b""]),
    "input-not-array": _mutate([1, 0], 7),
    "prev-txid-31-bytes": _mutate([1, 0, 0], b"\x11" * 31),
    "prev-txid-33-bytes": _mutate([1, 0, 0], b"\x11" * 33),
    "prev-txid-str": _mutate([1, 0, 0], "1" * 32),
    "prev-txid-int": _mutate([1, 0, 0], 0),
    "prev-index-negative": _mutate([1, 0, 1], -1),
    "prev-index-above-uint32": _mutate([1, 0, 1], MAX_UINT32 + 1),
    "prev-index-bytes": _mutate([1, 0, 1], b"\x00"),
    "signature-101-bytes": _mutate([1, 0, 2], b"\x00" * 101),
    "signature-str": _mutate([1, 0, 2], "s" * 64),
    "pubkey-33-bytes": _mutate([1, 0, 3], b"\x02" * 33),
    "pubkey-str": _mutate([1, 0, 3], "p" * 32),
    "outputs-not-array": _mutate([2], 0),
    "output-1-field": _mutate([2, 0], [4000]),
    "output-3-fields": _mutate([2, 0], [4000, b"\x33" * 20, 0]),
    "amount-negative": _mutate([2, 0, 0], -1),
    "amount-bytes": _mutate([2, 0, 0], b"\x01"),
    "addr-hash-19-bytes": _mutate([2, 0, 1], b"\x33" * 19),
    "addr-hash-21-bytes": _mutate([2, 0, 1], b"\x33" * 21),
    "addr-hash-str": _mutate([2, 0, 1], "3" * 20),
}


@pytest.mark.parametrize("name", sorted(BAD_TX_SHAPES))
def test_transaction_from_bytes_rejects_wrong_shape(name):
    """A transaction with a wrong field count, type, byte length or out-of-range int
    is a DecodeError."""
    data = encode(BAD_TX_SHAPES[name])
    with pytest.raises(DecodeError):
        Transaction.from_bytes(data)


def test_transaction_from_bytes_rejects_non_canonical_bytes():
    """A transaction whose bytes are not canonical (non-minimal locktime) is a DecodeError."""
    obj = _tx_list()
    canonical = encode(obj)
    assert canonical.endswith(b"\x11")  # locktime 17 as a fixint
    with pytest.raises(DecodeError):
        Transaction.from_bytes(canonical[:-1] + b"\xcc\x11")


def test_transaction_from_bytes_rejects_oversize_before_decoding():
    """More than MAX_TX_SIZE bytes is refused with bad-txns-oversize."""
    with pytest.raises(ValidationError) as err:
        Transaction.from_bytes(b"\x00" * (MAX_TX_SIZE + 1))
    assert err.value.code == "bad-txns-oversize"


def test_transaction_accepts_boundary_values():
    """The extreme in-range values
    (uint32 version/locktime/index, uint64 amount, 100-byte data) decode."""
    obj = [
        MAX_UINT32,
        [[b"\x00" * 32, MAX_UINT32, b"\x01" * 100, b"\x02" * 32]],
        [[MAX_UINT64, b"\x03" * 20]],
        MAX_UINT32,
    ]
    tx = Transaction.from_bytes(encode(obj))
    assert tx.version == MAX_UINT32 and tx.outputs[0].amount == MAX_UINT64


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutating_one_byte_of_a_tx_never_keeps_its_txid(data):
    """Changing any byte of an encoded tx raises DecodeError/ValidationError
    or yields another, self-consistent txid."""
    pos = data.draw(st.integers(0, len(TX.raw) - 1))
    value = data.draw(st.integers(0, 255))
    assume(value != TX.raw[pos])
    mutated = TX.raw[:pos] + bytes([value]) + TX.raw[pos + 1 :]
    try:
        tx = Transaction.from_bytes(mutated)
    except (DecodeError, ValidationError):
        return
    assert tx.txid != TX.txid
    rebuilt = Transaction.create(tx.version, tx.inputs, tx.outputs, tx.locktime)
    assert rebuilt.raw == mutated and rebuilt.txid == tx.txid


# --- typed decoders: headers and blocks ---------------------------------------------------


def test_header_and_block_roundtrip():
    """A header and a block decode from their bytes to equal objects with the same hash."""
    header = BlockHeader.from_bytes(HEADER.raw)
    assert header == HEADER and header.hash == HEADER.hash
    block = Block.from_bytes(BLOCK.raw)
    assert block.header == HEADER and block.txs == BLOCK.txs and block.raw == BLOCK.raw
    assert [t.txid for t in block.txs] == [COINBASE.txid, TX.txid]


def _header_with(index, value):
    obj = HEADER.to_list()
    obj[index] = value
    return obj


BAD_HEADERS = {
    "not-an-array": b"\x01" * 32,
    "5-fields": HEADER.to_list()[:5],
    "7-fields": HEADER.to_list() + [0],
    "version-negative": _header_with(0, -1),
    "version-above-uint32": _header_with(0, MAX_UINT32 + 1),
    "prev-hash-31-bytes": _header_with(1, b"\x01" * 31),
    "prev-hash-str": _header_with(1, "1" * 32),
    "merkle-root-33-bytes": _header_with(2, b"\x01" * 33),
    "merkle-root-int": _header_with(2, 0),
    "timestamp-negative": _header_with(3, -1),
    "timestamp-bytes": _header_with(3, b"\x01"),
    "bits-above-uint32": _header_with(4, MAX_UINT32 + 1),
    "bits-negative": _header_with(4, -1),
    "nonce-negative": _header_with(5, -1),
    "nonce-str": _header_with(5, "0"),
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_header_from_bytes_rejects_wrong_shape(name):
    """A header with a wrong field count, type, byte length or out-of-range int is a DecodeError."""
    with pytest.raises(DecodeError):
        BlockHeader.from_bytes(encode(BAD_HEADERS[name]))


BAD_BLOCKS = {
    "not-an-array": 0,
    "1-field": [HEADER.to_list()],
    "3-fields": [HEADER.to_list(), [COINBASE.to_list()], []],
    "txs-not-array": [HEADER.to_list(), COINBASE.to_list()[0]],
    "header-wrong-shape": [HEADER.to_list()[:5], [COINBASE.to_list()]],
    "tx-wrong-shape": [HEADER.to_list(), [COINBASE.to_list()[:3]]],
    "tx-bad-field": [HEADER.to_list(), [_mutate([2, 0, 1], b"\x00" * 19)]],
}


@pytest.mark.parametrize("name", sorted(BAD_BLOCKS))
def test_block_from_bytes_rejects_wrong_shape(name):
    """A block with a wrong shape, or with a malformed header or tx inside, is a DecodeError."""
    with pytest.raises(DecodeError):
        Block.from_bytes(encode(BAD_BLOCKS[name]))


def test_block_from_bytes_rejects_non_canonical_and_trailing_bytes():
    """A block with a non-minimal integer inside, or trailing bytes, is a DecodeError."""
    with pytest.raises(DecodeError):
        Block.from_bytes(BLOCK.raw + b"\x00")
    # the header's version 1 as uint8 instead of a fixint: same values, other bytes
    assert BLOCK.raw[:3] == b"\x92\x96\x01"
    with pytest.raises(DecodeError):
        Block.from_bytes(b"\x92\x96\xcc\x01" + BLOCK.raw[3:])


def test_block_from_bytes_rejects_oversize():
    """More than MAX_BLOCK_SIZE bytes is refused with bad-blk-length before decoding."""
    with pytest.raises(ValidationError) as err:
        Block.from_bytes(b"\x00" * (MAX_BLOCK_SIZE + 1))
    assert err.value.code == "bad-blk-length"


# --- ids from byte ranges, and the node's own stored blocks -----------------------------------


@given(
    st.lists(
        st.recursive(
            st.integers(-(2**63), 2**64 - 1) | st.binary(max_size=300) | st.text(max_size=40),
            lambda inner: st.lists(inner, max_size=5),
            max_leaves=20,
        ),
        max_size=40,
    )
)
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_element_bytes_are_the_canonical_encoding_of_each_element(items):
    """A slice of a canonical array is exactly encode(element): ids hash it without re-encoding."""
    assert element_bytes(encode(items)) == [encode(item) for item in items]


def test_block_txids_from_byte_ranges_equal_sha256d_of_the_canonical_encoding():
    for block in (
        Block.from_bytes(BLOCK.raw),
        Block.from_list(decode(BLOCK.raw)),
        Block.from_stored(BLOCK.raw),
    ):
        assert [t.txid for t in block.txs] == [sha256d(encode(t.to_list())) for t in BLOCK.txs]
        assert [t.raw for t in block.txs] == [encode(t.to_list()) for t in BLOCK.txs]
        assert block.header.raw == encode(HEADER.to_list())
        assert block.hash == HEADER.hash == sha256d(encode(HEADER.to_list()))


def test_block_from_stored_equals_the_strict_decoding():
    """The node's own stored bytes rebuild the very block the strict decoder gives."""
    strict, stored = Block.from_bytes(BLOCK.raw), Block.from_stored(BLOCK.raw)
    assert stored == strict
    assert stored.raw == strict.raw and stored.hash == strict.hash
    assert [(t.raw, t.txid) for t in stored.txs] == [(t.raw, t.txid) for t in strict.txs]
    assert all(
        type(i) is type(j)
        for s, t in zip(stored.txs, strict.txs, strict=True)
        for i, j in zip(s.inputs + s.outputs, t.inputs + t.outputs, strict=True)
    )


def test_block_from_stored_does_not_check_canonical_form():
    """from_stored trusts its input, which is why only the node's own database feeds it:
    bytes from peers or clients go through from_bytes, which refuses the same input."""
    header, txs = decode(BLOCK.raw)
    long_version = b"\xce" + struct.pack(">I", header[0])  # uint32 form of a fixint value
    fields = [long_version] + [encode(f) for f in header[1:]]
    loose = b"\x92" + b"\x96" + b"".join(fields) + encode(txs)  # [header, txs]
    assert decode_fails(loose)
    assert Block.from_stored(loose).header.version == header[0]


def decode_fails(data: bytes) -> bool:
    try:
        Block.from_bytes(data)
    except DecodeError:
        return True
    return False


@pytest.mark.parametrize("count", [0, 1, 15, 16, 65535, 65536])
def test_encode_array_of_encoded_elements_equals_encode_of_the_list(count):
    items = [n % 300 for n in range(count)]
    assert encode_array([encode(i) for i in items]) == encode(items)


@pytest.mark.parametrize(
    "value", [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, MAX_UINT64]
)
def test_encode_uint_equals_encode(value):
    assert encode_uint(value) == encode(value)


# --- the type walk: C (node._formatcheck) and Python agree ----------------------

from node.primitives import encoding as _encoding  # noqa: E402

_any_value = st.recursive(
    st.one_of(
        st.integers(-(2**70), 2**70),
        st.binary(max_size=8),
        st.text(max_size=4),
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
        st.tuples(st.integers()),
    ),
    lambda children: st.lists(children, max_size=5),
    max_leaves=30,
)


def _walk_outcome(walk, obj):
    try:
        walk(obj)
    except DecodeError as exc:
        return exc.message
    return None


def test_the_c_type_walk_is_built_and_used():
    assert _encoding._foreign_type is not None


@settings(max_examples=300, deadline=None)
@given(_any_value)
def test_c_and_python_type_walks_report_the_same_first_offender(obj):
    assert _walk_outcome(_encoding._reject_foreign_types, obj) == _walk_outcome(
        _encoding._reject_foreign_types_python, obj
    )


def test_encode_after_a_failed_encode_starts_from_an_empty_buffer():
    """encode reuses one msgpack Packer per thread: a value it cannot pack must not leave
    half an encoding behind for the next call."""
    for bad in ([1, object()], [b"x", 2**70], [[1, 2], {1.5}]):
        with pytest.raises((TypeError, OverflowError)):
            encode(bad)
        assert encode([1, b"ab"]) == msgpack.packb([1, b"ab"], use_bin_type=True)
