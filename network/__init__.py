"""Obol's peer-to-peer layer: frames, handshake, peers, permissions, bans, address gossip.

This package knows nothing about blocks or transactions.  ``node/`` creates a
:class:`PeerManager`, registers async handlers for its own message types, and
sends with ``peer.send(type, body)`` or ``manager.broadcast(type, body)``.
Payloads are encoded by a codec the node injects (``node.primitives.encoding``).
"""

from .addrman import AddrBook, KnownAddress
from .bans import Ban, BanList
from .config import NetConfig
from .counters import NetCounters
from .discourage import DiscouragedSet
from .errors import FrameError, MessageError, Misbehaviour, NetworkError
from .frames import (
    CHECKSUM_SIZE,
    HEADER_SIZE,
    MAX_PAYLOAD_SIZE,
    FrameDecoder,
    checksum,
    encode_frame,
)
from .handlers import BytesHandler, Handler, PeerCallback
from .manager import PeerManager
from .peer import ConnectionKind, Direction, Peer
from .permissions import Permission, PermissionFlag
from .protocol import (
    ADDR,
    BAN_THRESHOLD,
    GETADDR,
    MAX_ADDR,
    MAX_TYPE_LENGTH,
    MAX_USER_AGENT_LENGTH,
    MIN_PROTOCOL_VERSION,
    NETWORK_MESSAGE_TYPES,
    PING,
    PONG,
    PROTOCOL_VERSION,
    VERACK,
    VERSION,
    AddrEntry,
    Codec,
    VersionMessage,
    decode_envelope,
    encode_envelope,
)

__all__ = [
    "ADDR",
    "AddrBook",
    "AddrEntry",
    "BAN_THRESHOLD",
    "Ban",
    "BanList",
    "BytesHandler",
    "CHECKSUM_SIZE",
    "Codec",
    "ConnectionKind",
    "Direction",
    "DiscouragedSet",
    "FrameDecoder",
    "FrameError",
    "GETADDR",
    "HEADER_SIZE",
    "Handler",
    "KnownAddress",
    "MAX_ADDR",
    "MAX_PAYLOAD_SIZE",
    "MAX_TYPE_LENGTH",
    "MAX_USER_AGENT_LENGTH",
    "MIN_PROTOCOL_VERSION",
    "MessageError",
    "Misbehaviour",
    "NETWORK_MESSAGE_TYPES",
    "NetConfig",
    "NetCounters",
    "NetworkError",
    "PING",
    "PONG",
    "PROTOCOL_VERSION",
    "Peer",
    "PeerCallback",
    "Permission",
    "PermissionFlag",
    "PeerManager",
    "VERACK",
    "VERSION",
    "VersionMessage",
    "checksum",
    "decode_envelope",
    "encode_envelope",
    "encode_frame",
]
