"""Canonical msgpack: one encoding for the wire, the disk and every hash.

Objects are msgpack arrays (never maps) of integers, byte strings, text and
nested arrays.  The packer always chooses the shortest form, so every value
has exactly one encoding.  ``decode`` refuses any input that does not
re-encode to the very same bytes: no maps, no floats, no non-minimal integers,
no ``str`` where ``bin`` is expected, no trailing bytes.

Decoding builds a Python object per value, about 70 bytes for an empty array that
took one byte, so ``exceeded_depth`` counts a payload's values per nesting depth
in one pass over its bytes, before anything is built: a receiver that knows what a
message may contain refuses more without paying for it (docs/protocol.md §14.2).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, cast

import msgpack

from node.primitives.errors import DecodeError

MAX_DECODE_SIZE = 8 * 1024 * 1024  # bytes; larger than any block or message

_packer_options = {"use_bin_type": True, "strict_types": False, "autoreset": True}
# One Packer per thread, reused: msgpack.packb builds a new Packer per call, which was
# half the cost of encoding a transaction (3.2 -> 1.4 µs); a Packer keeps a buffer, so
# threads do not share one.  A failed pack leaves it empty (msgpack resets it).
_packers = threading.local()


def encode(obj: object) -> bytes:
    """Canonical bytes of ``obj`` (tuples and lists both become arrays)."""
    try:
        packer = _packers.packer
    except AttributeError:
        packer = _packers.packer = msgpack.Packer(**_packer_options)
    data: bytes = packer.pack(obj)
    return data


def decode(data: bytes) -> Any:
    """Strictly decode canonical msgpack; raise DecodeError on anything else.

    The value is ``Any`` on purpose: it has the shape the sender chose, and the
    caller checks it field by field (``expect_*``, the typed decoders) before use."""
    if len(data) > MAX_DECODE_SIZE:
        raise DecodeError(message=f"{len(data)} bytes exceeds {MAX_DECODE_SIZE}")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
        )
    except Exception as exc:  # msgpack raises many types for bad input
        raise DecodeError(message=f"undecodable msgpack: {exc.__class__.__name__}") from None
    try:
        again = encode(obj)
    except Exception:
        raise DecodeError(message="unencodable value") from None
    if again != data:
        raise DecodeError(message="non-canonical encoding")
    _reject_foreign_types(obj)
    return obj


def decode_stored(data: bytes) -> Any:
    """Decode bytes this node wrote itself (its own LMDB values): no canonical check.

    Everything that comes from outside (peers, API clients, files of others)
    goes through ``decode``; data the node encoded and stored needs no second
    opinion, and the UTXO set is read on every spend.
    """
    return msgpack.unpackb(data, raw=False, use_list=True)


def element_bytes(array: bytes) -> list[bytes]:
    """The bytes of each element of the msgpack array encoded by ``array``.

    No checks: ``array`` must already be known good (``decode`` accepted it, or
    the node wrote it).  A canonical array is its header followed by the
    canonical encodings of its elements, so each slice is exactly
    ``encode(element)``: an id can be hashed from it without re-encoding.
    """
    unpacker = msgpack.Unpacker(max_buffer_size=max(len(array), 1))
    unpacker.feed(array)
    count = unpacker.read_array_header()
    slices = []
    start = unpacker.tell()
    for _ in range(count):
        unpacker.skip()
        end = unpacker.tell()
        slices.append(array[start:end])
        start = end
    return slices


def encode_uint(value: int) -> bytes:
    """``encode(value)`` for 0 <= value < 2^64, without a packer (hot paths encode
    records field by field: ``encode_uint(n) == encode(n)``)."""
    if value < 0x80:
        return bytes((value,))
    if value < 0x100:
        return b"\xcc" + bytes((value,))
    if value < 0x10000:
        return b"\xcd" + value.to_bytes(2, "big")
    if value < 0x100000000:
        return b"\xce" + value.to_bytes(4, "big")
    return b"\xcf" + value.to_bytes(8, "big")


def encode_array(elements: list[bytes]) -> bytes:
    """The canonical array whose elements have the (canonical) encodings ``elements``:
    ``encode_array([encode(x) for x in xs]) == encode(xs)``, without decoding them."""
    count = len(elements)
    if count < 16:
        header = bytes([0x90 | count])
    elif count < 1 << 16:
        header = b"\xdc" + count.to_bytes(2, "big")
    else:
        header = b"\xdd" + count.to_bytes(4, "big")
    return header + b"".join(elements)


# --- counting values before decoding (docs/protocol.md §14.2) -------------------

MAX_LIMIT_DEPTHS = 64  # depths ``exceeded_depth`` can bound: far beyond any message (6)

_exceeded_depth: Callable[[bytes, tuple[int, ...]], int | None] | None
try:  # the same pass in C (optional extension, built with the package)
    from node.primitives._formatcheck import exceeded_depth as _exceeded_depth
except ImportError:
    _exceeded_depth = None


def exceeded_depth(data: bytes, max_values: tuple[int, ...]) -> int | None:
    """The first depth at which ``data`` holds more values than ``max_values`` allows, or None.

    The top value is depth 0; ``max_values[d - 1]`` bounds the values at depth ``d``
    (summed over all arrays at depth ``d - 1``), and nothing may be deeper than
    ``len(max_values)``.  An array's count is added at its header, before its elements
    are read, so a flood is refused at its first bytes.  Raises DecodeError if ``data``
    is not one value of the format (truncated, trailing bytes, a map, nil, bool, float
    or ext); whether it is canonical is left to ``decode``, which comes next.
    """
    if len(max_values) > MAX_LIMIT_DEPTHS:
        raise ValueError(f"at most {MAX_LIMIT_DEPTHS} depths")
    if _exceeded_depth is None:
        return _exceeded_depth_python(data, max_values)
    try:
        return _exceeded_depth(data, max_values)
    except ValueError as exc:
        raise DecodeError(message=f"not one msgpack value: {exc}") from None


_SCALAR_SIZES = {0xCC: 2, 0xD0: 2, 0xCD: 3, 0xD1: 3, 0xCE: 5, 0xD2: 5, 0xCF: 9, 0xD3: 9}
_LENGTH_BYTES = {0xC4: 1, 0xD9: 1, 0xC5: 2, 0xDA: 2, 0xC6: 4, 0xDB: 4}  # bin, str: length size
_ARRAY_COUNT_BYTES = {0xDC: 2, 0xDD: 4}


def _foreign_marker(b: int) -> str:
    if 0x80 <= b <= 0x8F or b in (0xDE, 0xDF):
        return "map"
    if b in (0xC0, 0xC2, 0xC3):
        return "bool/nil"
    if b in (0xCA, 0xCB):
        return "float"
    return "reserved marker" if b == 0xC1 else "ext"


def _exceeded_depth_python(data: bytes, max_values: tuple[int, ...]) -> int | None:
    """``exceeded_depth`` without the C extension ``_formatcheck`` (the same answers)."""
    n, pos = len(data), 0
    counts = [0] * len(max_values)
    remaining = [1]  # values left to read in each open array; the top value first
    while remaining:
        if remaining[-1] == 0:
            remaining.pop()
            continue
        if pos >= n:
            raise DecodeError(message="not one msgpack value: truncated")
        remaining[-1] -= 1
        b = data[pos]
        if 0x90 <= b <= 0x9F:
            count, pos = b & 0x0F, pos + 1
        elif b in _ARRAY_COUNT_BYTES:
            head = 1 + _ARRAY_COUNT_BYTES[b]
            if n - pos < head:
                raise DecodeError(message="not one msgpack value: truncated")
            count, pos = int.from_bytes(data[pos + 1 : pos + head], "big"), pos + head
        else:
            if b <= 0x7F or b >= 0xE0:
                size = 1
            elif 0xA0 <= b <= 0xBF:
                size = 1 + (b & 0x1F)
            elif b in _SCALAR_SIZES:
                size = _SCALAR_SIZES[b]
            elif b in _LENGTH_BYTES:
                head = 1 + _LENGTH_BYTES[b]
                if n - pos < head:
                    raise DecodeError(message="not one msgpack value: truncated")
                size = head + int.from_bytes(data[pos + 1 : pos + head], "big")
            else:
                raise DecodeError(message=f"not one msgpack value: {_foreign_marker(b)}")
            if n - pos < size:
                raise DecodeError(message="not one msgpack value: truncated")
            pos += size
            continue
        if count == 0:
            continue
        child = len(remaining)  # the depth of the array's elements
        if child > len(max_values):
            return child
        counts[child - 1] += count
        if counts[child - 1] > max_values[child - 1]:
            return child
        if count > n - pos:  # each element takes a byte or more
            raise DecodeError(message="not one msgpack value: truncated")
        remaining.append(count)
    if pos != n:
        raise DecodeError(message="not one msgpack value: trailing bytes")
    return None


_FORMAT_SCALARS = frozenset({int, bytes, str})  # exact types: bool (an int subclass) is not one
_foreign_type: Callable[[object], str | None] | None
try:  # the same walk in C (optional extension, built with the package)
    from node.primitives._formatcheck import foreign_type as _foreign_type
except ImportError:
    _foreign_type = None


def _reject_foreign_types(obj: object) -> None:
    """Only int, bytes, str, bool-free nil-free arrays are part of the format."""
    if _foreign_type is not None:
        name = _foreign_type(obj)
        if name is not None:
            raise DecodeError(message=f"{name} is not part of the format")
        return
    _reject_foreign_types_python(obj)


def _reject_foreign_types_python(obj: object) -> None:
    """``_reject_foreign_types`` without the C extension ``_formatcheck`` (the same answers)."""
    stack: list[list[object]] = [[obj]]
    while stack:
        for item in stack.pop():
            kind = type(item)
            if kind is list:
                stack.append(cast("list[object]", item))  # mypy does not narrow through ``kind``
            elif kind not in _FORMAT_SCALARS:
                name = "bool/nil" if kind is bool or item is None else kind.__name__
                raise DecodeError(message=f"{name} is not part of the format")


# --- shape helpers used by the typed decoders ----------------------------------


def expect_list(obj: object, length: int | None = None, what: str = "value") -> list[Any]:
    """``obj`` if it is an array (of ``length`` elements if given); its elements are
    still unchecked decoded values (``Any``, as ``decode`` returns)."""
    if not isinstance(obj, list):
        raise DecodeError(message=f"{what}: expected array")
    if length is not None and len(obj) != length:
        raise DecodeError(message=f"{what}: expected {length} fields, got {len(obj)}")
    return obj


def expect_int(obj: object, lo: int, hi: int, what: str = "value") -> int:
    """``obj`` if it is an integer (not a bool) in [lo, hi]."""
    if not isinstance(obj, int) or isinstance(obj, bool):
        raise DecodeError(message=f"{what}: expected integer")
    if not lo <= obj <= hi:
        raise DecodeError(message=f"{what}: {obj} outside [{lo}, {hi}]")
    return obj


def expect_bytes(
    obj: object, size: int | None = None, max_size: int | None = None, what: str = "value"
) -> bytes:
    """``obj`` if it is a byte string of ``size`` bytes, or of at most ``max_size``."""
    if not isinstance(obj, bytes):
        raise DecodeError(message=f"{what}: expected bytes")
    if size is not None and len(obj) != size:
        raise DecodeError(message=f"{what}: expected {size} bytes, got {len(obj)}")
    if max_size is not None and len(obj) > max_size:
        raise DecodeError(message=f"{what}: {len(obj)} bytes exceeds {max_size}")
    return obj


def expect_str(obj: object, max_size: int, what: str = "value") -> str:
    """``obj`` if it is text of at most ``max_size`` characters."""
    if not isinstance(obj, str):
        raise DecodeError(message=f"{what}: expected text")
    if len(obj) > max_size:
        raise DecodeError(message=f"{what}: text longer than {max_size}")
    return obj
