"""Peer: one TCP connection to another node, its I/O and its statistics.

A Peer moves messages; it takes no protocol decisions.  Reading is pull-based:
the connection's task calls ``receive()``, which reads socket chunks into a
:class:`FrameDecoder` and returns the next decoded message.  Sending is
``send(type, body)``: cheap and non-blocking, it appends the frame to a queue
that one writer task drains, several frames per socket write.  A peer that
does not read fast enough to keep its queue under ``max_send_queue`` bytes is
closed as ``send-queue-overflow`` (slow, not malicious: no ban).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import MessageError, NetworkError
from .frames import HEADER_SIZE, FrameDecoder, encode_frame
from .permissions import PermissionFlag, decode_grants
from .protocol import (
    VERACK,
    VERSION,
    Codec,
    VersionMessage,
    decode_envelope,
    encode_envelope,
    format_address,
    peek_type,
)
from .ratelimit import TokenBucket

log = logging.getLogger("obol.net")

READ_CHUNK_SIZE = 64 * 1024  # bytes asked of the socket per read
WRITE_BATCH_SIZE = 256 * 1024  # bytes: frames are joined into writes of about this size
MAX_PENDING_PINGS = 8  # pings awaiting a pong; older ones are forgotten
# bytes: largest payload before the handshake completes (a `version` is about 150), so a
# connection that has not said who it is can make us buffer no more than this
MAX_HANDSHAKE_PAYLOAD = 4096

Address = tuple[str, int]


class Direction(enum.StrEnum):
    """Who opened the connection."""

    INBOUND = "inbound"  # the remote node dialled us
    OUTBOUND = "outbound"  # we dialled the remote node


class ConnectionKind(enum.StrEnum):
    """Why the connection exists; decides which limit it counts against."""

    INBOUND = "inbound"  # accepted; counts against max_inbound
    AUTOMATIC = "automatic"  # dialled from the address book; counts against max_outbound
    PERSISTENT = "persistent"  # configured peer, redialled whenever it drops
    MANUAL = "manual"  # one-off dial requested by the operator


@dataclass(frozen=True)
class ReceivedMessage:
    """A message as it came off the wire."""

    type: str  # message type name
    body: Any  # decoded body (shape checked by whoever handles the type)
    size: int  # bytes the frame occupied on the wire, header included
    payload: bytes = b""  # the envelope's bytes, checked canonical by the codec
    body_start: int = 0  # offset of the body's encoding in ``payload``
    decoded: bool = True  # False: a type nobody handles, left undecoded (``body`` is None)

    def body_bytes(self) -> bytes:
        """The canonical encoding of ``body``: a slice of the checked payload, so a handler
        can hash or store it without encoding the body again."""
        return self.payload[self.body_start :]


class Peer:
    """One connection.  Created and driven by PeerManager; handed to node/ handlers."""

    def __init__(
        self,
        *,
        peer_id: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: Direction,
        kind: ConnectionKind,
        magic: bytes,
        codec: Codec,
        max_payload: int,
        max_send_queue: int,
        message_limit: TokenBucket,
        byte_limit: TokenBucket,
        target: Address | None = None,
        permissions: PermissionFlag = PermissionFlag.NONE,
        discouraged: bool = False,
        payload_limit: Callable[[str], int | None] | None = None,
        value_limit: Callable[[str], tuple[int, ...] | None] | None = None,
    ) -> None:
        # types not worth decoding now (set by the session: `addr` beyond its rate limit)
        self.skip_decoding: Callable[[str], bool] | None = None
        peername = writer.get_extra_info("peername") or ("?", 0)
        sockname = writer.get_extra_info("sockname") or ("?", 0)
        self.id = peer_id  # unique within the manager, increasing
        self.address: Address = (str(peername[0]), int(peername[1]))  # remote socket address
        self.local_address: Address = (str(sockname[0]), int(sockname[1]))  # our socket address
        self.direction = direction  # who dialled
        self.kind = kind  # why the connection exists
        self.target = target  # the (host, port) we dialled; None for inbound
        self.permissions = permissions  # what we let this peer do (permissions.py)
        self.discouraged = discouraged  # its host was discouraged when it connected: evict first
        self.version: VersionMessage | None = None  # the remote's `version`, once received
        self.verack_received = False  # the remote acknowledged our `version`
        self.established = False  # handshake complete; node/ messages may flow
        self.best_height = 0  # remote best height: from `version`; node/ may raise it
        self.connected_at = time.time()  # unix seconds the TCP connection opened
        self.bytes_in = 0  # bytes read from the socket
        self.bytes_out = 0  # bytes written to the socket
        self.messages_in = 0  # messages received
        self.messages_out = 0  # messages queued for sending
        # frame bytes (header included) by message type, for metrics
        self.bytes_in_by_type: collections.Counter[str] = collections.Counter()
        self.bytes_out_by_type: collections.Counter[str] = collections.Counter()
        self.unknown_messages = 0  # received messages of a type nobody handles
        self.ping_rtt: float | None = None  # seconds: round trip of the last answered ping
        self.ban_score = 0  # accumulated misbehaviour; >= 100 means ban
        self.getaddr_answered = False  # we already answered its `getaddr` (once per connection)
        # monotonic seconds at which it last gave us a new block / an accepted transaction
        # (set by node/; 0 = never): eviction protects such peers (slots.py)
        self.last_block_time = 0.0
        self.last_tx_time = 0.0
        self.busy = False  # a handler of ours is processing this peer's message
        self.closed = False  # close() was called; nothing more is read or sent
        self.close_reason = ""  # code passed to close()
        self.message_limit = message_limit  # flood limit on messages
        self.byte_limit = byte_limit  # flood limit on bytes
        self._reader = reader
        self._writer = writer
        self._magic = magic
        self._codec = codec
        self._max_payload = max_payload
        # bytes a message of a type may carry; None: a type nobody handles (not decoded)
        self._payload_limit = payload_limit or (lambda _type: max_payload)
        # most values per nesting depth of a type's body (None: only its bytes bound it)
        self._value_limit = value_limit or (lambda _type: None)
        self._max_send_queue = max_send_queue
        self._connected_mono = time.monotonic()
        self._decoder = FrameDecoder(magic, min(max_payload, MAX_HANDSHAKE_PAYLOAD))
        self._send_queue: collections.deque[bytes] = collections.deque()
        self._queued_bytes = 0  # bytes queued or being written, not yet drained
        self._send_ready = asyncio.Event()  # the writer has work (or must exit)
        self._drained = asyncio.Event()  # the writer handed bytes to the OS (or the peer closed)
        self._closed_event = asyncio.Event()
        self._handshake_done = asyncio.Event()  # established, or closed before that
        self._writer_task: asyncio.Task[None] | None = None
        self._pings: dict[int, tuple[float, asyncio.Future[float]]] = {}  # nonce -> (sent, rtt)

    # --- identity -----------------------------------------------------------

    @property
    def host(self) -> str:
        return self.address[0]

    @property
    def label(self) -> str:
        """``host:port`` of the remote socket, as logs show it."""
        return format_address(*self.address)

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.label} {self.direction.value}>"

    @property
    def protocol_version(self) -> int | None:
        return self.version.protocol_version if self.version else None

    @property
    def user_agent(self) -> str:
        return self.version.user_agent if self.version else ""

    def has_permission(self, flag: PermissionFlag) -> bool:
        """We granted this peer ``flag`` (by its address, NetConfig.permissions)."""
        return flag in self.permissions

    def granted(self, flag: PermissionFlag) -> bool:
        """The peer said in its `version` that it grants us ``flag``."""
        return self.version is not None and flag in decode_grants(self.version.grants)

    @property
    def listen_port(self) -> int:
        """The port the remote says it listens on (0 = none or not yet known)."""
        return self.version.listen_port if self.version else 0

    @property
    def nonce(self) -> int | None:
        """The remote node's instance nonce from its `version`."""
        return self.version.nonce if self.version else None

    @property
    def listen_address(self) -> Address | None:
        """Where the remote node accepts connections, if known.

        Outbound: the remote IP and the port we dialled.  Inbound: the
        remote IP and the listen port from its `version`.
        """
        if self.target is not None:
            return (self.host, self.target[1])
        if self.listen_port:
            return (self.host, self.listen_port)
        return None

    @property
    def connected_seconds(self) -> float:
        return time.monotonic() - self._connected_mono

    @property
    def send_queue_bytes(self) -> int:
        """Bytes queued for this peer and not yet accepted by the OS."""
        return self._queued_bytes

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary for the node's API."""
        return {
            "id": self.id,
            "address": self.label,
            "direction": self.direction.value,
            "kind": self.kind.value,
            "established": self.established,
            "version": self.protocol_version,
            "user_agent": self.user_agent,
            "height": self.best_height,
            "ping_ms": None if self.ping_rtt is None else round(self.ping_rtt * 1000, 3),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "ban_score": self.ban_score,
            "connected_seconds": round(self.connected_seconds, 3),
        }

    # --- receiving ----------------------------------------------------------

    async def receive(self) -> ReceivedMessage | None:
        """The next message, or None once the stream ended or the peer was closed.

        Raises FrameError for a broken stream, MessageError for a payload that
        is not an envelope or is larger than its type allows (``oversized-message``: its
        bytes, or its values per nesting depth, counted before it is decoded),
        OSError if the connection failed.  A message of a type nobody handles is
        returned undecoded, as is one of a type ``skip_decoding`` names at that moment.
        """
        while not self.closed:
            payload = self._decoder.next_payload()
            if payload is not None:
                self.messages_in += 1
                size = len(payload) + HEADER_SIZE
                msg_type = peek_type(payload)
                self.bytes_in_by_type[msg_type] += size
                limit = self._payload_limit(msg_type)
                if limit is None:  # nobody handles the type: not worth decoding
                    return ReceivedMessage(msg_type, None, size, payload, 0, decoded=False)
                if len(payload) > limit:
                    raise MessageError(
                        "oversized-message", f"{msg_type} of {len(payload)} bytes > {limit}"
                    )
                if self.skip_decoding is not None and self.skip_decoding(msg_type):
                    return ReceivedMessage(msg_type, None, size, payload, 0, decoded=False)
                max_values = self._value_limit(msg_type)
                msg_type, body = decode_envelope(self._codec, payload, max_values)
                # [type, body]: a one-byte array header, the type's encoding, then the body's
                body_start = 1 + len(self._codec.encode(msg_type))
                return ReceivedMessage(msg_type, body, size, payload, body_start)
            data = await self._reader.read(READ_CHUNK_SIZE)
            if not data:
                return None
            self.bytes_in += len(data)
            self._decoder.feed(data)
        return None

    # --- sending ------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task (call once, from the event loop)."""
        if self._writer_task is None:
            self._writer_task = asyncio.get_running_loop().create_task(
                self._write_loop(), name=f"peer-{self.id}-writer"
            )

    def send(self, msg_type: str, body: Any) -> bool:
        """Queue message ``msg_type`` with ``body``; False if the peer is closed.

        Only `version` and `verack` may be sent before the handshake is
        complete (anything else would get us banned): sending another type
        early raises NetworkError.
        """
        if self.closed:
            return False
        if not self.established and msg_type not in (VERSION, VERACK):
            raise NetworkError("not-established", f"cannot send {msg_type} to {self.label} yet")
        payload = encode_envelope(self._codec, msg_type, body)
        if len(payload) > self._max_payload:
            raise NetworkError(
                "oversized-message",
                f"{msg_type} of {len(payload)} bytes exceeds {self._max_payload}",
            )
        return self.send_frame(encode_frame(self._magic, payload))

    def send_frame(self, frame: bytes) -> bool:
        """Queue an already encoded frame (used to broadcast one encoding to many)."""
        if self.closed:
            return False
        self._send_queue.append(frame)
        self._queued_bytes += len(frame)
        self.messages_out += 1
        # a frame is built by encode_frame from a valid envelope: its type is readable
        self.bytes_out_by_type[_frame_type(frame)] += len(frame)
        if self._queued_bytes > self._max_send_queue:
            log.info(
                "peer %s disconnected: send queue %d bytes exceeds %d (too slow)",
                self.label,
                self._queued_bytes,
                self._max_send_queue,
            )
            self.close("send-queue-overflow")
            return False
        self._send_ready.set()
        return True

    async def wait_send_below(self, limit: int) -> None:
        """Return once fewer than ``limit`` bytes are queued for this peer, or it closed: a
        handler with much to send (a ``getdata`` of many blocks) waits here instead of
        filling the queue up to ``max_send_queue`` (Bitcoin Core: ``fPauseSend``)."""
        while self._queued_bytes >= limit and not self.closed:
            self._drained.clear()
            await self._drained.wait()

    async def _write_loop(self) -> None:
        """Drain the send queue into the socket, batching frames."""
        try:
            while not self.closed:
                await self._send_ready.wait()
                self._send_ready.clear()
                while self._send_queue and not self.closed:
                    batch = [self._send_queue.popleft()]
                    size = len(batch[0])
                    while self._send_queue and size + len(self._send_queue[0]) <= WRITE_BATCH_SIZE:
                        frame = self._send_queue.popleft()
                        batch.append(frame)
                        size += len(frame)
                    self._writer.write(b"".join(batch) if len(batch) > 1 else batch[0])
                    self.bytes_out += size
                    await self._writer.drain()
                    self._queued_bytes -= size
                    self._drained.set()
        except (ConnectionError, OSError) as exc:
            if not self.closed:
                log.info("peer %s write failed: %s", self.label, exc)
            self.close("write-error")
        except Exception:  # never let a writer die silently
            log.exception("peer %s writer failed", self.label)
            self.close("write-error")

    # --- pings --------------------------------------------------------------

    def expect_pong(self, nonce: int) -> asyncio.Future[float]:
        """Register a ping with ``nonce`` sent now; the future yields the RTT in seconds."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        if len(self._pings) >= MAX_PENDING_PINGS:
            oldest = next(iter(self._pings))
            self._pings.pop(oldest)[1].cancel()
        self._pings[nonce] = (time.monotonic(), future)
        return future

    def forget_ping(self, nonce: int) -> None:
        """Stop waiting for the pong of ``nonce``."""
        entry = self._pings.pop(nonce, None)
        if entry is not None:
            entry[1].cancel()

    def pong_received(self, nonce: int) -> bool:
        """Record a pong; False if no ping with this nonce is outstanding."""
        entry = self._pings.pop(nonce, None)
        if entry is None:
            return False
        sent, future = entry
        self.ping_rtt = time.monotonic() - sent
        if not future.done():
            future.set_result(self.ping_rtt)
        return True

    # --- lifecycle ----------------------------------------------------------

    def mark_established(self) -> None:
        self.established = True
        self._decoder.max_payload = self._max_payload  # full-size messages from now on
        self._handshake_done.set()

    async def wait_established(self) -> bool:
        """Wait until the handshake completes or the peer closes; True if established."""
        await self._handshake_done.wait()
        return self.established and not self.closed

    def close(self, reason: str) -> None:
        """Drop the connection at once (idempotent); ``reason`` is a short code."""
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        self._send_queue.clear()
        self._writer.transport.abort()
        self._send_ready.set()
        self._drained.set()
        self._handshake_done.set()
        self._closed_event.set()
        for _, future in self._pings.values():
            future.cancel()
        self._pings.clear()
        task = self._writer_task
        if task is not None and task is not asyncio.current_task() and not task.done():
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the peer is closed and its writer task has finished."""
        await self._closed_event.wait()
        task = self._writer_task
        if task is not None and task is not asyncio.current_task():
            await asyncio.wait([task])  # never raises the task's own outcome


def _frame_type(frame: bytes) -> str:
    """The message type of a frame this node encoded (``OTHER_TYPE`` if unreadable)."""
    try:
        return peek_type(memoryview(frame)[HEADER_SIZE : HEADER_SIZE + 16].tobytes())
    except MessageError:
        return OTHER_TYPE


OTHER_TYPE = "other"  # the per-type counters' name for a frame whose type is unreadable
