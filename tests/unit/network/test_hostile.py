"""Hostile and broken peers, played by raw sockets, against a PeerManager.

Every test keeps a well-behaved peer (another PeerManager) connected to the
node under attack and checks that it is still connected and answers pings
afterwards: garbage from one peer must never disturb another.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time

import msgpack
import pytest

from network import PeerManager
from network.frames import checksum, encode_frame
from node.primitives import encoding
from tests.framework.managers import ManagerFactory
from tests.framework.util import LOCALHOST, wait_until
from tests.framework.wire import TEST_MAGIC, WireClient


@pytest.fixture
async def nets():
    factory = ManagerFactory(encoding)
    yield factory
    await factory.stop_all()


class Guarded:
    """The node under attack and a well-behaved peer connected to it."""

    def __init__(self, node: PeerManager, friend: PeerManager) -> None:
        self.node = node
        self.friend = friend

    @classmethod
    async def start(cls, nets: ManagerFactory, **node_config) -> Guarded:
        # no loopback noban: the raw peer's misbehaviour discourages 127.0.0.1
        node = await nets.start(**{"permissions": (), **node_config})
        friend = await nets.start()
        peer = await friend.connect(LOCALHOST, node.listen_port)
        assert await asyncio.wait_for(peer.wait_established(), 5)
        await wait_until(lambda: len(node.peers()) == 1, what="friend established")
        return cls(node, friend)

    async def raw(self) -> WireClient:
        raw = await WireClient.connect(self.node.listen_port, encoding)
        await wait_until(lambda: len(self.node.connections()) == 2, what="raw accepted")
        return raw

    def raw_side(self):
        """The node's Peer object for the raw connection."""
        friend_port = self.friend.listen_port
        return next(p for p in self.node.connections() if p.listen_port != friend_port)

    def ban_reasons(self) -> list[str]:
        """Why the raw peer's host was punished: misbehaviour discourages, never bans."""
        assert self.node.bans() == []
        entry = self.node.discouraged.get(LOCALHOST)
        return [entry.reason] if entry is not None else []

    async def assert_friend_unharmed(self) -> None:
        """The well-behaved peer is still connected at both ends and answers a ping."""
        (friend_side,) = self.friend.peers()
        assert not friend_side.closed and friend_side.ban_score == 0
        assert any(p.listen_port == self.friend.listen_port for p in self.node.peers())
        assert await self.friend.ping(friend_side, timeout=5) > 0
        node_side = next(p for p in self.node.peers() if p.listen_port == self.friend.listen_port)
        assert await self.node.ping(node_side, timeout=5) > 0

    async def assert_host_refused(self) -> None:
        """The punished host is discouraged: never dialled, refused once inbound is full."""
        assert self.node.is_discouraged(LOCALHOST) and self.node.is_shunned(LOCALHOST)


async def _ignore(peer, body) -> None:
    """A handler that accepts and drops a message."""


def _frame(payload: bytes) -> bytes:
    return encode_frame(TEST_MAGIC, payload)


def _random_garbage() -> bytes:
    data = random.Random(7).randbytes(300)
    assert data[:4] != TEST_MAGIC
    return data


def _bad_checksum() -> bytes:
    frame = bytearray(_frame(encoding.encode(["ping", [1]])))
    frame[8] ^= 0xFF
    return bytes(frame)


PRE_HANDSHAKE_GARBAGE = {
    # not our protocol at all: disconnected, never punished (Core: wrong message start)
    "random-bytes": (_random_garbage, None),
    "bad-magic": (lambda: encode_frame(b"BTC!", encoding.encode(["version", []])), None),
    "bad-checksum": (_bad_checksum, "bad-checksum"),
    "undecodable-msgpack": (lambda: _frame(b"\xc1\xc1\xc1"), "bad-message"),
    "non-canonical-msgpack": (lambda: _frame(b"\x92\xa4ping\x91\xcd\x00\x01"), "bad-message"),
    "msgpack-map": (lambda: _frame(msgpack.packb({"type": "version"})), "bad-message"),
    "envelope-not-pair": (lambda: _frame(encoding.encode(["version"])), "bad-message"),
    "type-not-text": (lambda: _frame(encoding.encode([7, []])), "bad-message"),
    "version-wrong-types": (
        lambda: _frame(encoding.encode(["version", ["1", b"x", b"y", -1, 0, 0, "", 0]])),
        "bad-version",
    ),
    "ping-before-handshake": (
        lambda: _frame(encoding.encode(["ping", [1]])),
        "message-before-handshake",
    ),
    "node-message-before-handshake": (
        lambda: _frame(encoding.encode(["tx", [b"\x00"]])),
        "message-before-handshake",
    ),
    "verack-before-version": (
        lambda: _frame(encoding.encode(["verack", []])),
        "verack-before-version",
    ),
}


@pytest.mark.parametrize("case", sorted(PRE_HANDSHAKE_GARBAGE))
async def test_garbage_before_handshake_bans(nets, case):
    """Garbage sent before any handshake disconnects and bans with the matching code."""
    make, code = PRE_HANDSHAKE_GARBAGE[case]
    guarded = await Guarded.start(nets)
    raw = await guarded.raw()
    raw.send_raw(make())
    assert await raw.closed_by_peer(timeout=5)
    assert guarded.ban_reasons() == ([code] if code else [])
    await guarded.assert_friend_unharmed()
    if code:
        await guarded.assert_host_refused()


POST_HANDSHAKE_GARBAGE = {
    "ping-wrong-body": (["ping", "nonce"], "bad-ping"),
    "pong-wrong-body": (["pong", [1, 2]], "bad-pong"),
    "getaddr-with-body": (["getaddr", [1]], "bad-getaddr"),
    "addr-wrong-shape": (["addr", [["10.0.0.1", 1]]], "bad-addr"),
    # more entries than MAX_ADDR: counted before decoding (decode_addr would say oversized-addr)
    "addr-oversized": (["addr", [["10.0.0.1", 1, 0]] * 1001], "oversized-message"),
    "duplicate-version": None,  # built from the raw peer's own version below
    "duplicate-verack": (["verack", []], "duplicate-verack"),
}


@pytest.mark.parametrize("case", sorted(POST_HANDSHAKE_GARBAGE))
async def test_bad_messages_after_handshake_ban(nets, case):
    """Well-framed network messages with wrong bodies, or repeated handshake messages, ban."""
    guarded = await Guarded.start(nets)
    raw = await guarded.raw()
    await raw.handshake()
    await wait_until(lambda: guarded.raw_side().established, what="raw established")
    if case == "duplicate-version":
        message, code = ["version", raw.version_body()], "duplicate-version"
    else:
        message, code = POST_HANDSHAKE_GARBAGE[case]
    raw.send_raw(_frame(encoding.encode(message)))
    assert await raw.closed_by_peer(timeout=5)
    assert guarded.ban_reasons() == [code]
    await guarded.assert_friend_unharmed()


async def test_a_message_over_its_registered_value_limits_is_refused_undecoded(nets):
    """A node type registered with ``max_values``: a body with more values at some depth is
    oversized-message, punished, and its handler never runs; one within them is handled."""
    guarded = await Guarded.start(nets)
    got = []

    async def keep(peer, body) -> None:
        got.append(body)

    guarded.node.register("blob", keep, max_values=(3, 6))
    raw = await guarded.raw()
    await raw.handshake()
    raw.send("blob", [[1, 2], [3], [4, 5, 6]])
    await wait_until(lambda: got == [[[1, 2], [3], [4, 5, 6]]], what="the blob within limits")
    raw.send("blob", [[]] * 1000)
    assert await raw.closed_by_peer(timeout=5)
    assert guarded.ban_reasons() == ["oversized-message"]
    assert len(got) == 1
    await guarded.assert_friend_unharmed()


async def test_undecodable_payload_after_handshake_bans(nets):
    """An established peer sending a frame whose payload is not msgpack is banned."""
    guarded = await Guarded.start(nets)
    raw = await guarded.raw()
    await raw.handshake()
    raw.send_raw(_frame(b"\xff\x00garbage"))
    assert await raw.closed_by_peer(timeout=5)
    assert guarded.ban_reasons() == ["bad-message"]
    await guarded.assert_friend_unharmed()


async def test_huge_length_refused_without_waiting_for_body(nets):
    """A header claiming a 1 GiB payload is refused at once, long before any timeout."""
    guarded = await Guarded.start(nets, handshake_timeout=60.0)
    raw = await guarded.raw()
    started = time.monotonic()
    raw.send_raw(TEST_MAGIC + struct.pack(">I", 1 << 30) + checksum(b""))
    assert await raw.closed_by_peer(timeout=5)
    assert time.monotonic() - started < 5.0  # far below the 60 s handshake timeout
    assert guarded.ban_reasons() == ["oversized-frame"]
    await guarded.assert_friend_unharmed()


async def test_truncated_frame_then_close_is_cleaned_up(nets):
    """Half a frame followed by a close just frees the connection: no ban."""
    guarded = await Guarded.start(nets)
    raw = await guarded.raw()
    frame = _frame(encoding.encode(["version", raw.version_body()]))
    raw.send_raw(frame[: len(frame) // 2])
    raw.abort()
    await wait_until(lambda: len(guarded.node.connections()) == 1, what="raw connection freed")
    assert guarded.ban_reasons() == []
    await guarded.assert_friend_unharmed()


async def test_message_flood_bans(nets):
    """A peer exceeding the message rate limit is banned for flooding."""
    guarded = await Guarded.start(nets, max_messages_per_second=100.0, message_burst=200)
    raw = await guarded.raw()
    await raw.handshake()
    junk = _frame(encoding.encode(["junk", [b"x" * 10]]))
    raw.send_raw(junk * 1000)
    assert await raw.closed_by_peer(timeout=5)
    assert guarded.ban_reasons() == ["flood"]
    await guarded.assert_friend_unharmed()


async def test_byte_flood_bans(nets):
    """A peer exceeding the byte rate limit is banned for flooding."""
    guarded = await Guarded.start(
        nets, max_payload=20_000, max_bytes_per_second=50_000.0, byte_burst=100_000
    )
    raw = await guarded.raw()
    await raw.handshake()
    big = _frame(encoding.encode(["junk", [b"x" * 19_000]]))
    raw.send_raw(big * 10)
    assert await raw.closed_by_peer(timeout=5)
    assert guarded.ban_reasons() == ["flood"]
    await guarded.assert_friend_unharmed()


async def test_silent_peer_hits_handshake_timeout(nets):
    """A connection that never sends `version` is dropped after the handshake timeout, unbanned."""
    guarded = await Guarded.start(nets, handshake_timeout=0.5)
    # timed from before the dial, so the interval holds all of the node's handshake timer,
    # which starts at accept: on a busy machine the wait for "accepted" can outlast 50 ms
    started = time.monotonic()
    raw = await guarded.raw()
    side = guarded.raw_side()
    assert await raw.closed_by_peer(timeout=5)
    assert time.monotonic() - started >= 0.45
    await wait_until(lambda: side.closed, what="raw side closed")
    assert side.close_reason == "handshake-timeout"
    assert guarded.ban_reasons() == []
    await guarded.assert_friend_unharmed()


async def test_peer_not_answering_pings_is_dropped_not_banned(nets):
    """An established peer that never answers ping is disconnected (lagging is not banned)."""
    guarded = await Guarded.start(nets, ping_timeout=1.0)
    raw = await guarded.raw()
    await raw.handshake()
    side = guarded.raw_side()
    assert await raw.closed_by_peer(timeout=5)  # reads (and ignores) the ping
    await wait_until(lambda: side.closed, what="raw side closed")
    assert side.close_reason == "ping-timeout"
    assert guarded.ban_reasons() == []
    await guarded.assert_friend_unharmed()


async def test_peer_not_reading_is_dropped_as_too_slow(nets):
    """A peer whose send queue outgrows max_send_queue is disconnected, not banned."""
    guarded = await Guarded.start(
        nets, max_payload=40_000, max_send_queue=100_000, byte_burst=100_000
    )
    raw = await guarded.raw()
    await raw.handshake()
    await wait_until(lambda: guarded.raw_side().established, what="raw established")
    side = guarded.raw_side()
    friend_side = next(p for p in guarded.node.peers() if p is not side)
    guarded.friend.register("blob", _ignore)

    async def push(peer, count: int) -> None:
        for _ in range(count):
            if peer.closed:
                return
            peer.send("blob", [b"\xab" * 30_000])
            await asyncio.sleep(0)

    await push(friend_side, 300)  # control: 9 MB to a reading peer at the same pace
    await wait_until(lambda: friend_side.send_queue_bytes == 0, what="friend drained")
    assert not friend_side.closed
    await push(side, 5000)  # the raw peer never reads: socket buffers fill, then the queue
    assert side.closed and side.close_reason == "send-queue-overflow"
    assert guarded.ban_reasons() == []
    raw.abort()
    await guarded.assert_friend_unharmed()


async def test_wrong_network_version_disconnects_without_ban(nets):
    """A well-formed `version` of another genesis is refused but not punished."""
    guarded = await Guarded.start(nets)
    raw = await guarded.raw()
    raw.send("version", raw.version_body(genesis_hash=b"\x99" * 32))
    assert await raw.closed_by_peer(timeout=5)
    assert guarded.ban_reasons() == []
    await guarded.assert_friend_unharmed()
