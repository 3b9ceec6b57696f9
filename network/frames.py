"""Frames: how messages are cut out of a TCP byte stream.

A frame is a 12-byte header followed by the payload::

    magic     4 bytes   network magic; identifies the network (main, test...)
    length    4 bytes   payload length in bytes, unsigned big-endian
    checksum  4 bytes   first 4 bytes of sha256(sha256(payload))
    payload   length bytes

:class:`FrameDecoder` is incremental: the connection feeds it whatever chunk
the socket returned and pops complete payloads.  The header is validated as
soon as its 12 bytes are buffered, so a frame claiming a huge length is
refused before any of its body is awaited or stored.
"""

from __future__ import annotations

import hashlib
import struct

from .errors import FrameError

MAGIC_SIZE = 4  # bytes
LENGTH_SIZE = 4  # bytes
CHECKSUM_SIZE = 4  # bytes
HEADER_SIZE = MAGIC_SIZE + LENGTH_SIZE + CHECKSUM_SIZE  # bytes: 12
MAX_PAYLOAD_SIZE = 4 * 1024 * 1024  # bytes: default largest accepted payload (4 MiB)
MAX_LENGTH_FIELD = 2**32 - 1  # bytes: largest value the length field can hold

_LENGTH = struct.Struct(">I")


def checksum(payload: bytes) -> bytes:
    """First 4 bytes of sha256(sha256(payload))."""
    return hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:CHECKSUM_SIZE]


def encode_frame(magic: bytes, payload: bytes) -> bytes:
    """The frame carrying ``payload`` on the network identified by ``magic``."""
    _check_magic(magic)
    if len(payload) > MAX_LENGTH_FIELD:
        raise ValueError(f"payload of {len(payload)} bytes does not fit a frame")
    return magic + _LENGTH.pack(len(payload)) + checksum(payload) + payload


def _check_magic(magic: bytes) -> None:
    if not isinstance(magic, bytes) or len(magic) != MAGIC_SIZE:
        raise ValueError(f"network magic must be {MAGIC_SIZE} bytes")


class FrameDecoder:
    """Cuts payloads out of a byte stream fed in arbitrary pieces.

    ``feed(data)`` buffers bytes; ``next_payload()`` returns the next complete
    payload or None when more bytes are needed, and raises :class:`FrameError`
    (``bad-magic``, ``oversized-frame``, ``bad-checksum``) as soon as the
    buffered bytes prove the stream invalid.  After an error the decoder is
    poisoned: the stream has lost its framing and must be dropped.
    """

    def __init__(self, magic: bytes, max_payload: int = MAX_PAYLOAD_SIZE) -> None:
        _check_magic(magic)
        if not 0 < max_payload <= MAX_LENGTH_FIELD:
            raise ValueError(f"max_payload must be in [1, {MAX_LENGTH_FIELD}]")
        self.magic = magic  # the 4 bytes every frame must start with
        self.max_payload = max_payload  # bytes: largest payload accepted
        self._buffer = bytearray()  # received bytes not yet returned as payloads
        self._body_length: int | None = None  # length of the frame whose header is validated
        self._error: FrameError | None = None  # set once the stream proved invalid

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a payload."""
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        """Append received bytes to the buffer."""
        if self._error is not None:
            raise self._error
        self._buffer += data

    def next_payload(self) -> bytes | None:
        """The next complete payload, or None if the buffer holds no full frame."""
        if self._error is not None:
            raise self._error
        if self._body_length is None:
            if len(self._buffer) < HEADER_SIZE:
                return None
            self._body_length = self._validate_header()
        end = HEADER_SIZE + self._body_length
        if len(self._buffer) < end:
            return None
        expected = bytes(self._buffer[MAGIC_SIZE + LENGTH_SIZE : HEADER_SIZE])
        payload = bytes(self._buffer[HEADER_SIZE:end])
        if checksum(payload) != expected:
            self._fail("bad-checksum", f"frame of {len(payload)} bytes fails its checksum")
        del self._buffer[:end]
        self._body_length = None
        return payload

    def decode(self, data: bytes) -> list[bytes]:
        """Feed ``data`` and return every payload it completes."""
        self.feed(data)
        payloads = []
        while (payload := self.next_payload()) is not None:
            payloads.append(payload)
        return payloads

    def _validate_header(self) -> int:
        """Check the buffered header; return the announced payload length."""
        magic = bytes(self._buffer[:MAGIC_SIZE])
        if magic != self.magic:
            self._fail("bad-magic", f"magic {magic.hex()} != {self.magic.hex()}")
        length: int = _LENGTH.unpack_from(self._buffer, MAGIC_SIZE)[0]
        if length > self.max_payload:
            self._fail("oversized-frame", f"frame announces {length} bytes > {self.max_payload}")
        return length

    def _fail(self, code: str, message: str) -> None:
        self._error = FrameError(code, message)
        self._buffer.clear()
        raise self._error
