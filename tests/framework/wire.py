"""A raw P2P client: it speaks the frame format and the handshake, then sends exactly what
the test tells it to, well formed or not (Bitcoin Core's ``P2PInterface``, without a thread).

Against a node, ``await WireClient.to_node(node)`` connects and completes the handshake
with the node's network magic and genesis.  Against a bare PeerManager (the network
layer's tests), ``await WireClient.connect(port)`` only connects, on the test network of
:mod:`tests.framework.managers`; the test then calls :meth:`~WireClient.handshake`, or
writes bytes the handshake never would.

Messages arrive in :attr:`WireClient.inbox` in order, and stay there until
:meth:`~WireClient.expect` or :meth:`~WireClient.receive` takes them, so a test can also
look at everything a node sent (``[t for t, _ in client.inbox]``).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import TYPE_CHECKING, Any

from network.frames import FrameDecoder, encode_frame
from network.protocol import (
    MIN_PROTOCOL_VERSION,
    NONCE_BITS,
    PING,
    PONG,
    PROTOCOL_VERSION,
    VERACK,
    VERSION,
    Codec,
    VersionMessage,
    decode_envelope,
)
from node.primitives import encoding
from tests.framework.util import LOCALHOST, WAIT_TIMEOUT

if TYPE_CHECKING:
    from node.runtime.node import Node

TEST_MAGIC = b"OBt\x01"  # network magic of the bare PeerManagers of the network tests
TEST_GENESIS = bytes(range(32))  # genesis hash of that test network
REPLY_TIMEOUT = WAIT_TIMEOUT  # seconds to wait for a message or a close before failing
MAX_READ_PAYLOAD = 8 * 1024 * 1024  # bytes: the client reads more than any node sends
READ_SIZE = 65536  # bytes asked of the socket at a time
USER_AGENT = "/wireclient/"  # sent in our `version`

Message = tuple[str, Any]  # (type, body)


class WireClient:
    """One hand-driven connection: writes the bytes a test asks for, reads what comes back."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        magic: bytes,
        genesis_hash: bytes = TEST_GENESIS,
        codec: Codec = encoding,
        protocol_version: int = PROTOCOL_VERSION,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.magic = magic
        self.genesis_hash = genesis_hash  # what our `version` claims unless told otherwise
        self.codec = codec
        self.protocol_version = protocol_version  # what our `version` announces
        self.decoder = FrameDecoder(magic, MAX_READ_PAYLOAD)
        self.nonce = secrets.randbits(64)  # our `version` nonce
        self.inbox: list[Message] = []  # read but not yet taken, oldest first
        self.answer_pings = True  # expect() answers a `ping` it reads with its `pong`

    @classmethod
    async def connect(
        cls,
        port: int,
        codec: Codec = encoding,
        magic: bytes = TEST_MAGIC,
        host: str = LOCALHOST,
        *,
        genesis_hash: bytes = TEST_GENESIS,
        protocol_version: int = PROTOCOL_VERSION,
        source: str | None = None,
    ) -> WireClient:
        """A connection to ``host:port`` (from address ``source`` if given), nothing sent yet."""
        local = (source, 0) if source is not None else None
        reader, writer = await asyncio.open_connection(host, port, local_addr=local)
        return cls(reader, writer, magic, genesis_hash, codec, protocol_version)

    @classmethod
    async def to_node(
        cls, node: Node, *, protocol_version: int = MIN_PROTOCOL_VERSION, handshake: bool = True
    ) -> WireClient:
        """A connection to a started node, handshake done unless ``handshake=False``.

        It speaks protocol 1 unless told otherwise: no ``powblock``, so the node
        sends it a block only once the block is validated, and what the test
        reads stays predictable.  Pass ``protocol_version=2`` to be offered
        blocks before validation (docs/protocol.md §14.9).
        """
        params = node.params
        port = node.peers.listen_port
        assert port is not None, "the node does not listen"
        client = await cls.connect(
            port,
            encoding,
            params.magic,
            node.config.net.listen_host,
            genesis_hash=params.genesis_hash,
            protocol_version=protocol_version,
        )
        if handshake:
            await client.handshake()
        return client

    # --- writing ---------------------------------------------------------------------------

    def frame(self, msg_type: str, body: Any) -> bytes:
        """A well-formed frame carrying message ``msg_type``."""
        return encode_frame(self.magic, self.codec.encode([msg_type, body]))

    def send(self, msg_type: str, body: Any) -> None:
        """Queue a well-formed message.  Like every write here it does not wait: a test that
        floods a node must not fail because the node already closed the connection."""
        self.send_raw(self.frame(msg_type, body))

    def send_raw(self, data: bytes) -> None:
        """Queue exactly ``data``: a frame built by hand, half of one, or garbage."""
        self.writer.write(data)

    async def drain(self) -> None:
        """Wait until the queued bytes are handed to the socket (raises if it was closed)."""
        await self.writer.drain()

    def version_body(
        self,
        genesis_hash: bytes | None = None,
        listen_port: int = 0,
        nonce: int | None = None,
        best_height: int = 0,
    ) -> list[Any]:
        """The body of our `version` (the client's own genesis and nonce unless given)."""
        return VersionMessage(
            protocol_version=self.protocol_version,
            magic=self.magic,
            genesis_hash=self.genesis_hash if genesis_hash is None else genesis_hash,
            best_height=best_height,
            listen_port=listen_port,
            nonce=self.nonce if nonce is None else nonce,
            user_agent=USER_AGENT,
            timestamp=int(time.time()),
        ).to_body()

    async def handshake(
        self, genesis_hash: bytes | None = None, listen_port: int = 0
    ) -> VersionMessage:
        """Play the dialling side of version/verack; return the remote's `version`.

        Other messages read meanwhile go to the inbox.
        """
        self.send(VERSION, self.version_body(genesis_hash, listen_port))
        remote: VersionMessage | None = None
        got_verack = False
        while remote is None or not got_verack:
            msg = await self._next_message(REPLY_TIMEOUT)
            if msg is None:
                raise ConnectionError("closed during handshake")
            if msg[0] == VERSION:
                remote = VersionMessage.from_body(msg[1])
                self.send(VERACK, [])
            elif msg[0] == VERACK:
                got_verack = True
            else:
                self.inbox.append(msg)
        return remote

    # --- reading ---------------------------------------------------------------------------

    async def receive(self, timeout: float = REPLY_TIMEOUT) -> Message | None:
        """The oldest message not yet taken, or None at end of stream (or reset)."""
        if self.inbox:
            return self.inbox.pop(0)
        return await self._next_message(timeout)

    async def expect(self, msg_type: str, timeout: float = REPLY_TIMEOUT) -> Any:
        """The body of the oldest message of ``msg_type``, read until one arrives.

        Messages of other types stay in the inbox; a `ping` read while waiting is
        answered (unless ``answer_pings`` is off).  AssertionError after ``timeout``.
        """
        for i, (kind, body) in enumerate(self.inbox):
            if kind == msg_type:
                del self.inbox[i]
                return body
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {msg_type!r} within {timeout}s")
            try:
                msg = await self._next_message(remaining)
            except TimeoutError:
                raise AssertionError(f"no {msg_type!r} within {timeout}s") from None
            if msg is None:
                raise ConnectionError(f"closed while waiting for {msg_type!r}")
            if msg[0] == PING and self.answer_pings:
                self.send(PONG, msg[1])
            if msg[0] == msg_type:
                return msg[1]
            self.inbox.append(msg)

    async def sync_with_ping(self, timeout: float = REPLY_TIMEOUT) -> None:
        """Ping and wait for the pong: the node handles a peer's messages in order, so all
        we sent before has been handled (Core's test framework: ``sync_with_ping``).
        What arrives meanwhile stays in the inbox."""
        nonce = secrets.randbits(NONCE_BITS)
        self.send(PING, [nonce])
        deadline = time.monotonic() + timeout
        while await self.expect(PONG, deadline - time.monotonic()) != [nonce]:
            pass  # an older ping's pong

    async def _next_message(self, timeout: float) -> Message | None:
        """The next message off the wire; None at end of stream; TimeoutError."""
        async with asyncio.timeout(timeout):
            while True:
                payload = self.decoder.next_payload()
                if payload is not None:
                    return decode_envelope(self.codec, payload)
                try:
                    data = await self.reader.read(READ_SIZE)
                except ConnectionError:
                    return None
                if not data:
                    return None
                self.decoder.feed(data)

    async def closed_by_peer(self, timeout: float = REPLY_TIMEOUT) -> bool:
        """True once the remote closes the connection (EOF or reset); False if it is still
        open after ``timeout``.  Whatever arrives meanwhile is read and dropped, undecoded
        (a `ping` is not answered).  Our end is closed too once the remote's is."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        data = await self.reader.read(READ_SIZE)
                    except (ConnectionError, OSError):
                        break
                    if not data:
                        break
        except TimeoutError:
            return False
        self.abort()
        return True

    # --- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close our end after the queued bytes are sent (a FIN)."""
        self.writer.close()

    def abort(self) -> None:
        """Drop the connection at once, discarding anything still queued."""
        self.writer.transport.abort()
