"""Frames, the message envelope and the network-layer message bodies."""

from __future__ import annotations

import hashlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network import FrameDecoder, FrameError, MessageError, Misbehaviour
from network.frames import HEADER_SIZE, MAX_PAYLOAD_SIZE, checksum, encode_frame
from network.protocol import (
    MAX_ADDR,
    NETWORK_PAYLOAD_LIMITS,
    NETWORK_VALUE_LIMITS,
    AddrEntry,
    VersionMessage,
    decode_addr,
    decode_envelope,
    encode_addr,
    encode_envelope,
    ping_nonce,
)
from node.primitives import encoding

MAGIC = b"OBt\x01"


def test_frame_layout():
    """A frame is magic | big-endian length | sha256d checksum prefix | payload."""
    payload = b"hello"
    frame = encode_frame(MAGIC, payload)
    assert frame[:4] == MAGIC
    assert struct.unpack(">I", frame[4:8])[0] == 5
    assert frame[8:12] == hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    assert frame[12:] == payload
    assert HEADER_SIZE == 12 and MAX_PAYLOAD_SIZE == 4 * 1024 * 1024


def test_roundtrip_several_frames_in_one_chunk():
    """Several frames fed at once come out as their payloads, in order."""
    payloads = [b"", b"a", b"x" * 1000, bytes(range(256))]
    decoder = FrameDecoder(MAGIC)
    assert decoder.decode(b"".join(encode_frame(MAGIC, p) for p in payloads)) == payloads
    assert decoder.buffered == 0


def test_incremental_byte_by_byte():
    """Feeding one byte at a time yields each payload exactly when its last byte arrives."""
    payloads = [b"first", b"", b"third" * 50]
    stream = b"".join(encode_frame(MAGIC, p) for p in payloads)
    decoder = FrameDecoder(MAGIC)
    out = []
    ends = set()
    offset = 0
    for p in payloads:
        offset += HEADER_SIZE + len(p)
        ends.add(offset)
    for i in range(len(stream)):
        got = decoder.decode(stream[i : i + 1])
        if got:
            assert i + 1 in ends
        out.extend(got)
    assert out == payloads


def test_bad_magic():
    """A frame of another network raises bad-magic as soon as its header is complete."""
    decoder = FrameDecoder(MAGIC)
    with pytest.raises(FrameError) as err:
        decoder.decode(encode_frame(b"XXXX", b"payload")[:HEADER_SIZE])
    assert err.value.code == "bad-magic"


def test_oversized_frame_refused_from_header_alone():
    """A header announcing more than max_payload is refused before any body byte arrives."""
    decoder = FrameDecoder(MAGIC, max_payload=1000)
    header = MAGIC + struct.pack(">I", 1001) + b"\0\0\0\0"
    with pytest.raises(FrameError) as err:
        decoder.decode(header)
    assert err.value.code == "oversized-frame"
    assert decoder.buffered == 0
    big = FrameDecoder(MAGIC)  # default 4 MiB: a 1 GiB claim fails at once too
    with pytest.raises(FrameError) as err:
        big.decode(MAGIC + struct.pack(">I", 1 << 30) + b"\0\0\0\0")
    assert err.value.code == "oversized-frame"


def test_max_payload_exactly_accepted():
    """A payload of exactly max_payload bytes is accepted."""
    decoder = FrameDecoder(MAGIC, max_payload=100)
    assert decoder.decode(encode_frame(MAGIC, b"z" * 100)) == [b"z" * 100]


def test_bad_checksum():
    """A corrupted payload byte raises bad-checksum; the decoder stays failed."""
    frame = bytearray(encode_frame(MAGIC, b"some payload"))
    frame[-1] ^= 0x01
    decoder = FrameDecoder(MAGIC)
    with pytest.raises(FrameError) as err:
        decoder.decode(bytes(frame))
    assert err.value.code == "bad-checksum"
    with pytest.raises(FrameError):
        decoder.decode(encode_frame(MAGIC, b"valid"))


def test_truncated_frame_waits():
    """A frame missing its last byte yields nothing yet, then completes."""
    frame = encode_frame(MAGIC, b"abcdef")
    decoder = FrameDecoder(MAGIC)
    assert decoder.decode(frame[:-1]) == []
    assert decoder.decode(frame[-1:]) == [b"abcdef"]


@settings(max_examples=300, deadline=None)
@given(chunks=st.lists(st.binary(max_size=64), max_size=8), prefix_valid=st.booleans())
def test_arbitrary_bytes_yield_payloads_or_frame_error(chunks, prefix_valid):
    """Any byte sequence, fed in any pieces, produces payloads or FrameError, nothing else."""
    decoder = FrameDecoder(MAGIC, max_payload=256)
    if prefix_valid:  # start some streams with a valid header so bodies get exercised
        chunks = [MAGIC + struct.pack(">I", 5) + checksum(b"hello")] + chunks
    try:
        for chunk in chunks:
            for payload in decoder.decode(chunk):
                assert isinstance(payload, bytes) and len(payload) <= 256
    except FrameError as exc:
        assert exc.code in {"bad-magic", "oversized-frame", "bad-checksum"}


@settings(max_examples=100, deadline=None)
@given(payloads=st.lists(st.binary(max_size=300), max_size=5), cut=st.integers(1, 50))
def test_valid_streams_roundtrip_in_any_pieces(payloads, cut):
    """Valid frames split at any chunk size decode to the original payloads."""
    stream = b"".join(encode_frame(MAGIC, p) for p in payloads)
    decoder = FrameDecoder(MAGIC, max_payload=300)
    out = []
    for i in range(0, len(stream), cut):
        out.extend(decoder.decode(stream[i : i + cut]))
    assert out == payloads


# --- envelope -----------------------------------------------------------------------


def test_envelope_roundtrip():
    """[type, body] encodes canonically and decodes back."""
    payload = encode_envelope(encoding, "tx", [1, b"\x02", "three"])
    assert decode_envelope(encoding, payload) == ("tx", [1, b"\x02", "three"])


@pytest.mark.parametrize(
    "obj",
    [
        [],  # not two fields
        ["tx"],
        ["tx", 1, 2],
        [5, []],  # type is not text
        [b"tx", []],
        ["", []],  # empty type
        ["thirteenchars", []],  # longer than 12
        ["has space", []],
        ["caf\u00e9", []],  # not ASCII
        {"type": "tx"},  # a map (node.encoding refuses maps)
        "tx",
    ],
)
def test_envelope_malformed(obj):
    """Anything but [short ASCII type, body] is a bad-message."""
    import msgpack

    payload = msgpack.packb(obj, use_bin_type=True)
    with pytest.raises(MessageError) as err:
        decode_envelope(encoding, payload)
    assert err.value.code == "bad-message"


def test_envelope_non_canonical_or_garbage_is_bad_message():
    """Any exception of codec.decode (non-canonical, truncated, trailing bytes) is bad-message."""
    canonical = encoding.encode(["ping", [1]])
    for payload in (
        b"\xc1",
        canonical[:-1],
        canonical + b"\x00",
        b"\x92\xa4ping\x91\xcd\x00\x01",
    ):  # 1 as uint16: not minimal
        with pytest.raises(MessageError) as err:
            decode_envelope(encoding, payload)
        assert err.value.code == "bad-message"


def test_envelope_values_are_counted_before_decoding():
    """``max_values`` bounds the body's values per depth: within them the envelope decodes,
    one more at any depth is oversized-message, bytes that are not one value bad-message."""
    body = [[1, b"a"], [2, b"b"]]
    payload = encoding.encode(["inv", body])
    assert decode_envelope(encoding, payload, (2, 4)) == ("inv", body)
    assert decode_envelope(encoding, payload, (2, 4, 0)) == ("inv", body)
    for tight in ((1, 4), (2, 3), (2,), ()):
        with pytest.raises(MessageError) as err:
            decode_envelope(encoding, payload, tight)
        assert err.value.code == "oversized-message"
    for broken in (payload[:-1], payload + b"\x00", b"\x92\xa3inv\x91\xc0"):
        with pytest.raises(MessageError) as err:
            decode_envelope(encoding, broken, (10, 10))
        assert err.value.code == "bad-message"


def test_an_addr_flood_is_refused_before_it_is_decoded():
    """79 KB of empty arrays fits addr's payload limit; its count does not (and the body is
    never built: the codec's decode is not called)."""

    class NoDecode:
        encode = staticmethod(encoding.encode)
        exceeded_depth = staticmethod(encoding.exceeded_depth)

        def decode(self, data):
            raise AssertionError("decoded")

    count = NETWORK_PAYLOAD_LIMITS["addr"] - 16
    flood = b"\x92\xa4addr\xdd" + count.to_bytes(4, "big") + b"\x90" * count
    with pytest.raises(MessageError) as err:
        decode_envelope(NoDecode(), flood, NETWORK_VALUE_LIMITS["addr"])
    assert err.value.code == "oversized-message"
    full = encode_addr([AddrEntry("1.2.3.4", 8333, 1)] * MAX_ADDR)
    payload = encoding.encode(["addr", full])
    assert decode_envelope(encoding, payload, NETWORK_VALUE_LIMITS["addr"])[1] == full


# --- network-layer bodies ---------------------------------------------------------------


def _version(**changes):
    fields = {
        "protocol_version": 1,
        "magic": MAGIC,
        "genesis_hash": b"\1" * 32,
        "best_height": 10,
        "listen_port": 8333,
        "nonce": 2**64 - 1,
        "user_agent": "/obol/",
        "timestamp": 1700000000,
    }
    fields.update(changes)
    return VersionMessage(**fields)


def test_version_roundtrip_and_extra_fields():
    """version survives encoding; appended future fields are ignored."""
    version = _version()
    body = encoding.decode(encoding.encode(version.to_body()))
    assert VersionMessage.from_body(body) == version
    assert VersionMessage.from_body(body + [b"future"]) == version


@pytest.mark.parametrize(
    "index,value",
    [
        (0, "1"),
        (1, b"abc"),
        (2, b"\0" * 31),
        (3, -1),
        (4, 65536),
        (5, 2**64),
        (6, "x" * 65),
        (7, b"ts"),
    ],
)
def test_version_wrong_field(index, value):
    """Each version field has its type and range checked (bad-version)."""
    body = _version().to_body()
    body[index] = value
    with pytest.raises(MessageError) as err:
        VersionMessage.from_body(body)
    assert err.value.code == "bad-version"


def test_version_too_short():
    """A version with fewer than 8 fields is bad-version."""
    with pytest.raises(MessageError):
        VersionMessage.from_body(_version().to_body()[:7])


def test_ping_nonce_checks():
    """ping/pong carry exactly [uint64 nonce]."""
    assert ping_nonce("ping", [7]) == 7
    for body in ([], [1, 2], ["7"], [-1], 7):
        with pytest.raises(MessageError):
            ping_nonce("ping", body)


def test_addr_roundtrip_and_cap():
    """addr bodies roundtrip; more than MAX_ADDR entries is misbehaviour."""
    entries = [AddrEntry("10.0.0.1", 8333, 1700000000), AddrEntry("::1", 1, 0)]
    assert decode_addr(encode_addr(entries)) == entries
    with pytest.raises(Misbehaviour) as err:
        decode_addr([["10.0.0.1", 1, 0]] * (MAX_ADDR + 1))
    assert err.value.score == 100 and err.value.code == "oversized-addr"
    for body in ("x", [["10.0.0.1", 1]], [[1, 1, 0]], [["h", 70000, 0]]):
        with pytest.raises(MessageError) as merr:
            decode_addr(body)
        assert merr.value.code == "bad-addr"
