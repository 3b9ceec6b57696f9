"""Helpers for tests of the network layer and of the node above it.

* :func:`wait_until` polls a condition with a deadline (tests never sleep a
  fixed time).
* :class:`RawPeer` is a bare TCP client that writes frames by hand, well
  formed or not, to play a hostile or minimal peer against a PeerManager.
* :class:`ManagerFactory` creates PeerManagers on 127.0.0.1 with fast test
  timings and stops them all at the end of a test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from network.config import NetConfig
from network.frames import FrameDecoder, encode_frame
from network.manager import PeerManager
from network.protocol import (
    PING,
    PONG,
    PROTOCOL_VERSION,
    VERACK,
    VERSION,
    Codec,
    VersionMessage,
    decode_envelope,
)

LOCALHOST = "127.0.0.1"
TEST_MAGIC = b"OBt\x01"  # network magic used by tests
TEST_GENESIS = bytes(range(32))  # genesis hash used by tests
DEFAULT_WAIT = 5.0  # seconds a test waits for a condition before failing

#: Fast timings, no automatic dialling; each test overrides what it exercises.
FAST_CONFIG = NetConfig(
    listen_host=LOCALHOST,
    listen_port=0,
    handshake_timeout=3.0,
    connect_timeout=2.0,
    ping_interval=60.0,
    ping_timeout=5.0,
    reconnect_initial=0.05,
    reconnect_max=0.5,
    outbound_retry_interval=0.2,
    discover=False,
)


async def wait_until(
    predicate: Callable[[], Any],
    timeout: float = DEFAULT_WAIT,
    what: str = "condition",
    interval: float = 0.005,
) -> None:
    """Poll ``predicate`` until it is truthy; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(interval)


class RawPeer:
    """A hand-driven connection: sends exactly the bytes a test asks for."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, magic: bytes, codec: Codec
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.magic = magic
        self.codec = codec
        self.decoder = FrameDecoder(magic)
        self.nonce = secrets.randbits(64)  # our `version` nonce

    @classmethod
    async def connect(
        cls, port: int, codec: Codec, magic: bytes = TEST_MAGIC, host: str = LOCALHOST
    ) -> RawPeer:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, magic, codec)

    async def send_bytes(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def frame(self, msg_type: str, body: Any) -> bytes:
        """A well-formed frame carrying message ``msg_type``."""
        return encode_frame(self.magic, self.codec.encode([msg_type, body]))

    async def send(self, msg_type: str, body: Any) -> None:
        await self.send_bytes(self.frame(msg_type, body))

    def version_body(
        self,
        genesis_hash: bytes = TEST_GENESIS,
        listen_port: int = 0,
        nonce: int | None = None,
        best_height: int = 0,
    ) -> list[Any]:
        return VersionMessage(
            protocol_version=PROTOCOL_VERSION,
            magic=self.magic,
            genesis_hash=genesis_hash,
            best_height=best_height,
            listen_port=listen_port,
            nonce=self.nonce if nonce is None else nonce,
            user_agent="/rawpeer/",
            timestamp=int(time.time()),
        ).to_body()

    async def receive(self, timeout: float = DEFAULT_WAIT) -> tuple[str, Any] | None:
        """The next message, or None at end of stream (or reset)."""
        async with asyncio.timeout(timeout):
            while True:
                payload = self.decoder.next_payload()
                if payload is not None:
                    return decode_envelope(self.codec, payload)
                try:
                    data = await self.reader.read(65536)
                except ConnectionError:
                    return None
                if not data:
                    return None
                self.decoder.feed(data)

    async def handshake(
        self, genesis_hash: bytes = TEST_GENESIS, listen_port: int = 0
    ) -> VersionMessage:
        """Play the dialling side of version/verack; return the remote `version`."""
        await self.send(VERSION, self.version_body(genesis_hash, listen_port))
        remote: VersionMessage | None = None
        got_verack = False
        while remote is None or not got_verack:
            msg = await self.receive()
            if msg is None:
                raise ConnectionError("closed during handshake")
            if msg[0] == VERSION:
                remote = VersionMessage.from_body(msg[1])
                await self.send(VERACK, [])
            elif msg[0] == VERACK:
                got_verack = True
        return remote

    async def expect(self, msg_type: str, timeout: float = DEFAULT_WAIT) -> Any:
        """Read until a message of ``msg_type`` arrives (answering pings); return its body."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.receive(timeout)
                if msg is None:
                    raise ConnectionError(f"closed while waiting for {msg_type}")
                if msg[0] == msg_type:
                    return msg[1]
                if msg[0] == PING:
                    await self.send(PONG, msg[1])

    async def wait_closed(self, timeout: float = DEFAULT_WAIT) -> bool:
        """True once the remote closed the connection (reads and discards until then).

        Our end is closed too when that happens.
        """
        try:
            async with asyncio.timeout(timeout):
                while True:
                    try:
                        data = await self.reader.read(65536)
                    except ConnectionError:
                        break
                    if not data:
                        break
        except TimeoutError:
            return False
        await self.close()
        return True

    async def close(self) -> None:
        self.writer.transport.abort()


class ManagerFactory:
    """Creates PeerManagers for a test and stops every one of them afterwards."""

    def __init__(self, codec: Codec, base_config: NetConfig = FAST_CONFIG) -> None:
        self.codec = codec
        self.base_config = base_config
        self.managers: list[PeerManager] = []

    async def start(
        self,
        datadir: Path | None = None,
        genesis_hash: bytes = TEST_GENESIS,
        best_height: int = 0,
        **overrides: Any,
    ) -> PeerManager:
        """A started manager listening on 127.0.0.1 (port 0 unless overridden)."""
        config = dataclasses.replace(self.base_config, **overrides)
        manager = PeerManager(
            TEST_MAGIC, genesis_hash, self.codec, lambda: best_height, datadir, config
        )
        self.managers.append(manager)
        await manager.start()
        return manager

    async def stop_all(self) -> None:
        for manager in self.managers:
            await manager.stop()
