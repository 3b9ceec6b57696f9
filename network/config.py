"""NetConfig: every tunable of the peer-to-peer layer, with its default."""

from __future__ import annotations

from dataclasses import dataclass

from .frames import HEADER_SIZE, MAX_PAYLOAD_SIZE
from .permissions import LOCAL_PERMISSIONS, Permission
from .protocol import MAX_USER_AGENT_LENGTH, PROTOCOL_VERSION

MAX_INBOUND = 32  # connections accepted from others
MAX_INBOUND_PER_GROUP = 8  # inbound connections from one address group (slots.netgroup)
MAX_OUTBOUND = 8  # connections dialled automatically from the address book
HANDSHAKE_TIMEOUT = 10.0  # seconds from connect to an established handshake
CONNECT_TIMEOUT = 10.0  # seconds to open a TCP connection
PING_INTERVAL = 60.0  # seconds between pings of an established peer
PING_TIMEOUT = 60.0  # seconds a peer has to answer a ping before it is dropped
BAN_SECONDS = 86_400  # seconds an operator's ban lasts unless it says otherwise (one day)
DISCOURAGE_SECONDS = 86_400  # seconds a misbehaving host stays discouraged (one day)
MAX_MESSAGES_PER_SECOND = 50_000.0  # messages/s a peer may send on average
MESSAGE_BURST = 100_000  # messages a peer may send in one burst
MAX_BYTES_PER_SECOND = 32 * 1024 * 1024  # bytes/s a peer may send on average (32 MiB/s)
BYTE_BURST = 64 * 1024 * 1024  # bytes a peer may send in one burst (64 MiB)
MAX_SEND_QUEUE = 16 * 1024 * 1024  # bytes queued to a peer before it is dropped as too slow
# bytes queued to a peer above which its next message is not read (Bitcoin Core: fPauseSend
# at its 5 MB send buffer): what it asks for is bounded by what it reads
SEND_PAUSE = 4 * 1024 * 1024
RECONNECT_INITIAL = 0.5  # seconds: first retry delay of a persistent peer
RECONNECT_MAX = 30.0  # seconds: largest retry delay of a persistent peer
OUTBOUND_RETRY_INTERVAL = 5.0  # seconds between address-book rounds when nothing wakes the dialler
ADDR_SAVE_INTERVAL = 300.0  # seconds between saves of a changed address book
USER_AGENT = "/obol/"  # the node passes its own, with the version (node.__version__)


@dataclass(frozen=True)
class NetConfig:
    """Options of a PeerManager; the defaults suit a public node."""

    listen_host: str = "127.0.0.1"  # address to bind; "0.0.0.0" or "::" for every interface
    listen_port: int | None = None  # TCP port to listen on; 0 = any free port; None = do not listen
    bind_host: str | None = None  # source address of outbound connections (None: chosen by the OS)
    max_inbound: int = MAX_INBOUND  # accepted connections (handshaking or established)
    # accepted connections from one address group (IPv4 /16, IPv6 /32; noban peers not counted)
    max_inbound_per_group: int = MAX_INBOUND_PER_GROUP
    max_outbound: int = MAX_OUTBOUND  # automatic outbound connections (persistent/manual are extra)
    discover: bool = True  # fill outbound slots from the address book
    handshake_timeout: float = HANDSHAKE_TIMEOUT  # seconds to complete version/verack
    connect_timeout: float = CONNECT_TIMEOUT  # seconds to open a TCP connection
    ping_interval: float = PING_INTERVAL  # seconds between pings
    ping_timeout: float = PING_TIMEOUT  # seconds to answer a ping
    ban_seconds: float = BAN_SECONDS  # seconds of a manual ban that names no duration
    discourage_seconds: float = DISCOURAGE_SECONDS  # seconds a misbehaving host is discouraged
    max_messages_per_second: float = MAX_MESSAGES_PER_SECOND  # flood limit: sustained rate
    message_burst: int = MESSAGE_BURST  # flood limit: burst size in messages
    max_bytes_per_second: float = MAX_BYTES_PER_SECOND  # flood limit: sustained bytes/s
    byte_burst: int = BYTE_BURST  # flood limit: burst size in bytes (>= one largest frame)
    max_send_queue: int = MAX_SEND_QUEUE  # bytes queued to one peer before it is dropped
    send_pause: int = SEND_PAUSE  # bytes queued to a peer that stop the reading of its messages
    reconnect_initial: float = RECONNECT_INITIAL  # seconds: first persistent-peer retry delay
    reconnect_max: float = RECONNECT_MAX  # seconds: cap of the doubling retry delay
    outbound_retry_interval: float = OUTBOUND_RETRY_INTERVAL  # seconds between dialler rounds
    addr_save_interval: float = ADDR_SAVE_INTERVAL  # seconds between address-book saves
    user_agent: str = USER_AGENT  # sent in `version`, <= 64 characters
    protocol_version: int = PROTOCOL_VERSION  # sent in `version`
    max_payload: int = MAX_PAYLOAD_SIZE  # bytes: largest frame payload sent or accepted
    # flags granted by remote address (Core: -whitelist); the default: noban,mempool for loopback
    permissions: tuple[Permission, ...] = LOCAL_PERMISSIONS

    def __post_init__(self) -> None:
        if self.listen_port is not None and not 0 <= self.listen_port <= 65535:
            raise ValueError("listen_port must be in [0, 65535] or None")
        if self.max_inbound_per_group < 1:
            raise ValueError("max_inbound_per_group must be at least 1")
        if self.max_inbound < 0 or self.max_outbound < 0:
            raise ValueError("connection limits must be non-negative")
        if len(self.user_agent) > MAX_USER_AGENT_LENGTH:
            raise ValueError(f"user_agent longer than {MAX_USER_AGENT_LENGTH} characters")
        for name in (
            "handshake_timeout",
            "connect_timeout",
            "ping_interval",
            "ping_timeout",
            "ban_seconds",
            "discourage_seconds",
            "max_messages_per_second",
            "max_bytes_per_second",
            "reconnect_initial",
            "reconnect_max",
            "outbound_retry_interval",
            "addr_save_interval",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.byte_burst < HEADER_SIZE + self.max_payload:
            raise ValueError("byte_burst must admit at least one largest frame")
        if self.message_burst < 1:
            raise ValueError("message_burst must be at least 1")
        if self.max_send_queue < HEADER_SIZE + self.max_payload:
            raise ValueError("max_send_queue must hold at least one largest frame")
