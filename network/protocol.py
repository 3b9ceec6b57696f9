"""Messages of the network layer and the envelope every message travels in.

Every frame payload is the codec's canonical msgpack encoding of the envelope
``[type, body]``: ``type`` is a message type name (1 to 12 printable ASCII
characters, no spaces) and ``body`` is whatever that type defines, usually an
array.  The network layer itself defines the six message types below; every
other type (``tx``, ``block``, ``headers``...) is owned by ``node/`` and
reaches it through a registered handler.

This module only converts between message bodies and typed values; what a
node does with them is in ``session.py`` (the handshake, gossip, dispatch) and
``keepalive.py`` (pings).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import MessageError, Misbehaviour

PROTOCOL_VERSION = 4  # the protocol version this implementation speaks (docs/protocol.md §14.3)
GRANTS_VERSION = 3  # first protocol version that sends `grants` and asks `mempool` only if granted
MIN_PROTOCOL_VERSION = 1  # oldest peer protocol version still accepted
MAX_TYPE_LENGTH = 12  # characters: longest message type name
MAX_USER_AGENT_LENGTH = 64  # characters: longest user agent in `version`
MAX_ADDR = 1000  # entries: most addresses in one `addr` message
MAX_HOST_LENGTH = 64  # characters: longest host text in an `addr` entry
GENESIS_HASH_SIZE = 32  # bytes
NONCE_BITS = 64  # size of version and ping nonces
MAX_UINT64 = 2**64 - 1
MAX_INT64 = 2**63 - 1
MAX_PORT = 65535
# misbehaviour score at which a peer is disconnected and its address discouraged (the name
# is older than discouragement: misbehaviour no longer bans, docs/protocol.md §14.6)
BAN_THRESHOLD = 100

MAX_UNKNOWN_MESSAGES = 1_000  # unknown-type messages a peer of our version or older may send
ENVELOPE_OVERHEAD = 16  # bytes of an envelope around its body: array header, type name

VERSION = "version"
VERACK = "verack"
PING = "ping"
PONG = "pong"
GETADDR = "getaddr"
ADDR = "addr"
#: Message types the network layer handles itself; node/ cannot register them.
NETWORK_MESSAGE_TYPES = frozenset({VERSION, VERACK, PING, PONG, GETADDR, ADDR})

#: bytes: largest payload of each network-layer message (an addr entry is at most 79 bytes)
NETWORK_PAYLOAD_LIMITS = {
    VERSION: 4096,
    VERACK: ENVELOPE_OVERHEAD,
    GETADDR: ENVELOPE_OVERHEAD,
    PING: ENVELOPE_OVERHEAD + 9,
    PONG: ENVELOPE_OVERHEAD + 9,
    ADDR: ENVELOPE_OVERHEAD + 5 + MAX_ADDR * 79,
}

#: values per nesting depth of each network-layer body (``Codec.exceeded_depth``): element
#: ``d`` bounds the values at depth ``d + 1`` of the body, counted before it is decoded
#: (docs/protocol.md §14.2).  The others have none: ``version`` may gain fields of any shape
#: in later protocol versions, and 4,096 bytes bound it; ``verack``, ``getaddr``, ``ping``
#: and ``pong`` are at most 25 bytes.
NETWORK_VALUE_LIMITS: dict[str, tuple[int, ...]] = {
    ADDR: (MAX_ADDR, 3 * MAX_ADDR),  # [[host, port, last_seen], ...]
}
ENVELOPE_VALUES = 2  # values at depth 1 of a payload: the envelope's type and body

_FIXARRAY_2 = 0x92  # msgpack header of a 2-element array: every envelope starts with it
_FIXSTR = 0xA0  # msgpack fixstr header base: 0xA0 + length (the shortest form up to 31)

_TYPE_NAME = re.compile(rf"[\x21-\x7e]{{1,{MAX_TYPE_LENGTH}}}")


class Codec(Protocol):
    """What the network layer needs from the node's encoding module.

    ``node.primitives.encoding`` satisfies it.  ``decode`` and ``exceeded_depth`` may raise
    anything on input they refuse; the network layer treats every exception as a malformed
    message.  ``exceeded_depth`` is the first depth at which ``data`` holds more values
    than ``max_values`` allows (``max_values[d - 1]`` at depth ``d``, the top value being
    depth 0, nothing deeper than ``len(max_values)``), or None: found without building
    the values, so that a message can be refused before its decoding costs anything.
    """

    def encode(self, obj: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...

    def exceeded_depth(self, data: bytes, max_values: tuple[int, ...]) -> int | None: ...


def is_valid_type_name(name: object) -> bool:
    """True for 1-12 printable ASCII characters without spaces."""
    return isinstance(name, str) and _TYPE_NAME.fullmatch(name) is not None


def encode_envelope(codec: Codec, msg_type: str, body: Any) -> bytes:
    """Payload bytes for message ``msg_type`` carrying ``body``."""
    if not is_valid_type_name(msg_type):
        raise ValueError(f"invalid message type name {msg_type!r}")
    return codec.encode([msg_type, body])


def peek_type(payload: bytes) -> str:
    """The type name of an envelope, read without decoding the body, so that a message
    can be measured against its type's limit (or skipped) before it costs anything.

    The canonical encoding of ``[type, body]`` starts with a 2-element array header and
    the type as a fixstr of 1-12 characters; a payload that does not is ``bad-message``.
    """
    size = payload[1] - _FIXSTR if len(payload) > 1 else 0
    if len(payload) < 3 or payload[0] != _FIXARRAY_2 or not 1 <= size <= MAX_TYPE_LENGTH:
        raise MessageError("bad-message", "payload is not a [type, body] envelope")
    name = payload[2 : 2 + size].decode("ascii", errors="replace")
    if not is_valid_type_name(name):
        raise MessageError("bad-message", f"invalid message type {name[:40]!r}")
    return name


def decode_envelope(
    codec: Codec, payload: bytes, max_values: tuple[int, ...] | None = None
) -> tuple[str, Any]:
    """Split a payload into (type, body); MessageError ``bad-message`` if malformed.

    ``max_values`` bounds the values per nesting depth of the body (``max_values[0]``
    its elements, ``max_values[1]`` theirs, ...): they are counted before anything is
    decoded, and more is MessageError ``oversized-message``.
    """
    if max_values is not None:
        try:
            depth = codec.exceeded_depth(payload, (ENVELOPE_VALUES, *max_values))
        except Exception as exc:  # any refusal by the codec means a malformed message
            raise MessageError("bad-message", f"undecodable payload: {exc}") from None
        if depth is not None:
            raise MessageError(
                "oversized-message",
                f"more values at depth {depth - 1} of the body than its type allows",
            )
    try:
        envelope = codec.decode(payload)
    except Exception as exc:  # any refusal by the codec means a malformed message
        raise MessageError("bad-message", f"undecodable payload: {exc}") from None
    if not isinstance(envelope, list) or len(envelope) != 2:
        raise MessageError("bad-message", "envelope is not [type, body]")
    msg_type, body = envelope
    if not is_valid_type_name(msg_type):
        raise MessageError("bad-message", f"invalid message type {str(msg_type)[:40]!r}")
    return msg_type, body


# --- field checks for network-layer bodies -------------------------------------


def _fields(body: Any, msg_type: str, count: int, allow_more: bool = False) -> list[Any]:
    if not isinstance(body, list) or len(body) < count or (len(body) > count and not allow_more):
        raise MessageError(f"bad-{msg_type}", f"{msg_type}: expected {count} fields")
    return body


def _int(value: Any, lo: int, hi: int, msg_type: str, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise MessageError(
            f"bad-{msg_type}", f"{msg_type}.{field}: expected integer in [{lo}, {hi}]"
        )
    return value


def _bytes(value: Any, size: int, msg_type: str, field: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise MessageError(f"bad-{msg_type}", f"{msg_type}.{field}: expected {size} bytes")
    return value


def _str(value: Any, max_length: int, msg_type: str, field: str) -> str:
    if not isinstance(value, str) or len(value) > max_length:
        raise MessageError(
            f"bad-{msg_type}", f"{msg_type}.{field}: expected text of <= {max_length} characters"
        )
    return value


# --- the messages -------------------------------------------------------------


@dataclass(frozen=True)
class VersionMessage:
    """``version``: the first message on a connection, sent by both sides.

    Body: ``[protocol_version, network_magic, genesis_hash, best_height,
    listen_port, nonce, user_agent, timestamp, grants]``; ``grants`` came with
    protocol version 3 (absent: 0).  Later protocol versions may append fields;
    a receiver ignores fields it does not know.
    """

    protocol_version: int  # protocol version the sender speaks (uint32)
    magic: bytes  # 4 bytes: the sender's network magic; must equal ours
    genesis_hash: bytes  # 32 bytes: hash of the sender's genesis block; must equal ours
    best_height: int  # height of the sender's best chain when it connected
    listen_port: int  # TCP port the sender accepts connections on; 0 = not listening
    nonce: int  # random 64-bit number per node instance; equal to ours = we dialled ourselves
    user_agent: str  # free text naming the software, <= 64 characters
    timestamp: int  # sender's clock, unix seconds
    grants: int = 0  # bits of what the sender lets the receiver do (permissions.GRANT_BITS)

    def to_body(self) -> list[Any]:
        return [
            self.protocol_version,
            self.magic,
            self.genesis_hash,
            self.best_height,
            self.listen_port,
            self.nonce,
            self.user_agent,
            self.timestamp,
            self.grants,
        ]

    @classmethod
    def from_body(cls, body: Any) -> VersionMessage:
        f = _fields(body, VERSION, 8, allow_more=True)
        return cls(
            protocol_version=_int(f[0], 0, 2**32 - 1, VERSION, "protocol_version"),
            magic=_bytes(f[1], 4, VERSION, "magic"),
            genesis_hash=_bytes(f[2], GENESIS_HASH_SIZE, VERSION, "genesis_hash"),
            best_height=_int(f[3], 0, MAX_INT64, VERSION, "best_height"),
            listen_port=_int(f[4], 0, MAX_PORT, VERSION, "listen_port"),
            nonce=_int(f[5], 0, MAX_UINT64, VERSION, "nonce"),
            user_agent=_str(f[6], MAX_USER_AGENT_LENGTH, VERSION, "user_agent"),
            timestamp=_int(f[7], 0, MAX_INT64, VERSION, "timestamp"),
            grants=_int(f[8], 0, 2**32 - 1, VERSION, "grants") if len(f) > 8 else 0,
        )


def check_empty(msg_type: str, body: Any) -> None:
    """``verack`` and ``getaddr`` carry an empty array."""
    _fields(body, msg_type, 0)


def ping_nonce(msg_type: str, body: Any) -> int:
    """The nonce of a ``ping`` or ``pong`` body ``[nonce]`` (uint64)."""
    return _int(_fields(body, msg_type, 1)[0], 0, MAX_UINT64, msg_type, "nonce")


@dataclass(frozen=True)
class AddrEntry:
    """One entry of an ``addr`` body: ``[host, port, last_seen]``."""

    host: str  # IP address literal (IPv4 dotted or IPv6 text), <= 64 characters
    port: int  # TCP port the node listens on (1-65535 to be usable)
    last_seen: int  # unix seconds at which the node was last known to be up

    def to_body(self) -> list[Any]:
        return [self.host, self.port, self.last_seen]


def encode_addr(entries: list[AddrEntry]) -> list[Any]:
    """Body of an ``addr`` message; at most MAX_ADDR entries."""
    if len(entries) > MAX_ADDR:
        raise ValueError(f"addr carries at most {MAX_ADDR} entries")
    return [entry.to_body() for entry in entries]


def decode_addr(body: Any) -> list[AddrEntry]:
    """Entries of an ``addr`` body.

    More than MAX_ADDR entries is Misbehaviour(BAN_THRESHOLD, ``oversized-addr``);
    an entry of the wrong shape is MessageError ``bad-addr``.  Entries whose host
    is not an IP literal or whose port is 0 are shape-valid but unusable; the
    address book skips them.
    """
    if not isinstance(body, list):
        raise MessageError("bad-addr", "addr: expected array")
    if len(body) > MAX_ADDR:
        raise Misbehaviour(
            BAN_THRESHOLD, "oversized-addr", f"addr carries {len(body)} > {MAX_ADDR} entries"
        )
    entries = []
    for item in body:
        f = _fields(item, ADDR, 3)
        entries.append(
            AddrEntry(
                host=_str(f[0], MAX_HOST_LENGTH, ADDR, "host"),
                port=_int(f[1], 0, MAX_PORT, ADDR, "port"),
                last_seen=_int(f[2], 0, MAX_INT64, ADDR, "last_seen"),
            )
        )
    return entries


def canonical_host(host: str) -> str:
    """The canonical text of an IP literal (IPv4-mapped IPv6 becomes IPv4).

    Text that is not an IP literal (a host name) is returned lower-cased.
    """
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return host.lower()
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.compressed


def is_ip_literal(host: str) -> bool:
    """True if ``host`` is an IPv4 or IPv6 address literal."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def format_address(host: str, port: int) -> str:
    """``host:port``, with IPv6 hosts in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
