"""A hand-rolled wire client for tests: speaks the frame format and the handshake, then
sends whatever the test tells it to, valid or not."""
from __future__ import annotations

import asyncio
import os
import time

from network.frames import FrameDecoder, encode_frame
from node.primitives import encoding


class WireClient:
    def __init__(self, params, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.params = params
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder(params.magic, 8 * 1024 * 1024)
        self.inbox: list[tuple[str, object]] = []

    @classmethod
    async def connect(cls, params, host: str, port: int, handshake: bool = True,
                      protocol_version: int = 1) -> "WireClient":
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(params, reader, writer)
        if handshake:
            await client.handshake(protocol_version)
        return client

    def send(self, msg_type: str, body) -> None:
        self.send_raw(encode_frame(self.params.magic, encoding.encode([msg_type, body])))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def handshake(self, protocol_version: int = 1) -> None:
        self.send("version", [protocol_version, self.params.magic, self.params.genesis_hash, 0, 0,
                              int.from_bytes(os.urandom(8), "big"), "/hostile:0/", int(time.time())])
        await self.expect("version")
        self.send("verack", [])
        await self.expect("verack")

    async def expect(self, msg_type: str, timeout: float = 5.0):
        deadline = time.monotonic() + timeout
        while True:
            for i, (t, body) in enumerate(self.inbox):
                if t == msg_type:
                    del self.inbox[i]
                    return body
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {msg_type!r} within {timeout}s")
            data = await asyncio.wait_for(self.reader.read(65536), remaining)
            if not data:
                raise ConnectionError("closed by peer")
            self.decoder.feed(data)
            while (payload := self.decoder.next_payload()) is not None:
                self.inbox.append(tuple(encoding.decode(payload)))

    async def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True once the node closes the connection (reads EOF or a reset)."""
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                data = await asyncio.wait_for(self.reader.read(65536), deadline - time.monotonic())
                if not data:
                    return True
        except (ConnectionError, OSError):
            return True
        except asyncio.TimeoutError:
            return False
        return False

    def close(self) -> None:
        self.writer.close()
