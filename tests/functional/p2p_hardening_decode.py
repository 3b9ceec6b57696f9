"""Decode amplification: a message costs no more to decode than its type allows.

Issue 14, item 4.  A 4 MiB frame of empty arrays cost seconds of CPU and hundreds of
MiB to decode whatever its type.  Now the type is read from the envelope's first bytes
before anything is decoded: a type nobody handles is not decoded at all (and a peer of
our version or older is dropped after MAX_UNKNOWN_MESSAGES of them), and a message
larger than its type's limit is refused undecoded (``oversized-message``).  The tests
count the bytes the node hands its codec: that is the bound.
"""

from __future__ import annotations

import pytest

from network.frames import encode_frame
from network.protocol import GRANTS_VERSION, MAX_UNKNOWN_MESSAGES
from node.primitives import encoding
from node.runtime.node import PAYLOAD_LIMITS
from tests.framework.nodes import fast_net, node_network
from tests.framework.util import wait_until
from tests.framework.wire import USER_AGENT, WireClient

FLOOD = 4 * 1024 * 1024 - 64  # bytes of empty arrays: just under the frame limit


class CountingCodec:
    """The node's codec, recording the size of every payload it is asked to decode."""

    def __init__(self) -> None:
        self.decoded: list[int] = []

    def encode(self, obj):
        return encoding.encode(obj)

    def decode(self, data: bytes):
        self.decoded.append(len(data))
        return encoding.decode(data)

    def exceeded_depth(self, data: bytes, max_values):
        return encoding.exceeded_depth(data, max_values)


def empty_arrays(msg_type: str) -> bytes:
    """An envelope ``[type, [[], [], ...]]`` of about FLOOD bytes, built by hand."""
    count = FLOOD - 16
    head = encoding.encode(msg_type)
    return b"\x92" + head + b"\xdd" + count.to_bytes(4, "big") + b"\x90" * count


@pytest.fixture
async def node(tmp_path):
    async with node_network(tmp_path, 1, "none", net=fast_net(permissions=())) as nodes:
        (n,) = nodes
        codec = CountingCodec()
        n.peers.codec = codec  # connections made from now on decode through it
        yield n, codec


async def client_of(n):
    client = await WireClient.to_node(n, protocol_version=GRANTS_VERSION)
    await wait_until(
        lambda: any(p.user_agent == USER_AGENT for p in n.peers.peers()),
        what="the client's handshake",
    )
    return client, next(p for p in n.peers.peers() if p.user_agent == USER_AGENT)


async def test_a_huge_message_of_an_unknown_type_is_never_decoded(node):
    n, codec = node
    client, peer = await client_of(n)
    client.send_raw(encode_frame(n.params.magic, empty_arrays("nosuchtype")))
    client.send("ping", [5])
    assert await client.expect("pong", timeout=20) == [5]
    assert peer.unknown_messages == 1 and not peer.closed
    assert max(codec.decoded) < 4096, "the unknown message was decoded"
    client.close()


@pytest.mark.parametrize("msg_type", ["inv", "block", "tx", "headers", "ping", "addr"])
async def test_a_message_over_its_types_limit_is_refused_undecoded(node, msg_type):
    n, codec = node
    client, peer = await client_of(n)
    client.send_raw(encode_frame(n.params.magic, empty_arrays(msg_type)))
    assert await client.closed_by_peer(timeout=20)
    assert n.peers.discouraged.get("127.0.0.1").reason == "oversized-message"
    limit = PAYLOAD_LIMITS.get(msg_type, 100_000)
    assert max(codec.decoded) <= limit < FLOOD


async def test_a_stream_of_unknown_messages_is_dropped_not_punished(node):
    n, codec = node
    client, peer = await client_of(n)
    for i in range(MAX_UNKNOWN_MESSAGES + 1):
        client.send("nosuchtype", [i])
    assert await client.closed_by_peer(timeout=20)
    assert peer.close_reason == "too-many-unknown-messages"
    assert not n.peers.is_discouraged("127.0.0.1")
    assert max(codec.decoded) < 4096
