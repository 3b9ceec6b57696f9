"""Decode amplification: a message costs no more to decode than its type allows.

Issue 14, item 4.  A 4 MiB frame of empty arrays cost seconds of CPU and hundreds of
MiB to decode whatever its type.  Now the type is read from the envelope's first bytes
before anything is decoded: a type nobody handles is not decoded at all (and a peer of
our version or older is dropped after MAX_UNKNOWN_MESSAGES of them), and a message
larger than its type's limit is refused undecoded (``oversized-message``).  The tests
count the bytes the node hands its codec: that is the bound.

Inside a type's byte limit a payload could still be made of one-byte values (an ``inv``
of 1.8 million empty arrays decoded to 141 MiB of lists): each type now also bounds its
values per nesting depth, counted in one pass over the bytes before anything is decoded
(``VALUE_LIMITS``), and a flood is refused undecoded as ``oversized-message``, in process
and in a real ``obol-node``, whose peak memory the test bounds.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from network.frames import encode_frame
from network.protocol import GRANTS_VERSION, MAX_UNKNOWN_MESSAGES, NETWORK_PAYLOAD_LIMITS
from node.consensus.params import REGTEST
from node.p2p.messages import VALUE_LIMITS
from node.primitives import encoding
from node.runtime.node import PAYLOAD_LIMITS
from tests.framework.daemon import Daemon
from tests.framework.hostile import hostile_peer
from tests.framework.nodes import fast_net, node_network
from tests.framework.util import scenario_log
from tests.framework.wire import WireClient

log = scenario_log(__name__)

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
    return await hostile_peer(n, protocol_version=GRANTS_VERSION)


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


# --- floods inside a type's byte limit: its values are counted first --------------------

LIMITS = {**PAYLOAD_LIMITS, "addr": NETWORK_PAYLOAD_LIMITS["addr"]}  # bytes, by type
FLOODED = sorted({*VALUE_LIMITS, "addr"})  # every type with value limits
# what the floods may cost a real node (154 MiB and 2.8 s of CPU before the value limits)
MEMORY_BOUND = 32 * 1024 * 1024  # bytes of peak RSS above its RSS before them
CPU_BOUND = 1.0  # seconds of CPU


def flood_within_limit(msg_type: str) -> bytes:
    """``[type, [[], [], ...]]`` as long as the type's payload limit allows: one byte a value."""
    head = b"\x92" + encoding.encode(msg_type)
    return head + encoding.encode_array([b"\x90"] * (LIMITS[msg_type] - len(head) - 5))


@pytest.mark.parametrize("msg_type", FLOODED)
async def test_a_flood_inside_its_types_byte_limit_is_refused_undecoded(node, msg_type):
    n, codec = node
    client, peer = await client_of(n)
    payload = flood_within_limit(msg_type)
    assert len(payload) <= LIMITS[msg_type]
    client.send_raw(encode_frame(n.params.magic, payload))
    assert await client.closed_by_peer(timeout=20)
    assert n.peers.discouraged.get("127.0.0.1").reason == "oversized-message"
    assert max(codec.decoded) < 4096, "the flood was decoded"
    honest, _ = await client_of(n)  # the node still serves
    honest.send("ping", [7])
    assert await honest.expect("pong", timeout=20) == [7]
    honest.close()


async def test_a_block_over_its_transaction_count_is_refused_undecoded(node):
    """Per depth: a block of 7,000 transactions of empty fields fits its bytes and its
    first depths, and passes the count of transactions a valid block can hold."""
    n, codec = node
    client, _ = await client_of(n)
    tx = encoding.encode([[], [], [], []])  # 5 bytes, 4 values
    body = encoding.encode([[1, bytes(32), bytes(32), 0, 0, 0], []])[:-1]
    body += encoding.encode_array([tx] * 7_000)
    payload = b"\x92" + encoding.encode("block") + body
    client.send_raw(encode_frame(n.params.magic, payload))
    assert await client.closed_by_peer(timeout=20)
    assert n.peers.discouraged.get("127.0.0.1").reason == "oversized-message"
    assert max(codec.decoded) < 4096, "the block was decoded"


def _status_kb(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_a_real_node_survives_floods_of_every_type_within_a_memory_bound(tmp_path):
    """A real ``obol-node``, loopback without noban: a flood of each type from its own
    connection is refused and its sender discouraged; the node's peak RSS rises by less
    than MEMORY_BOUND and it spends less than CPU_BOUND on them; a peer connected
    throughout, and one connected after, are served."""
    with Daemon(tmp_path / "node", args=["--whitelist", "none"]) as daemon:
        pid = daemon.proc.pid

        async def connect() -> WireClient:
            client = await WireClient.connect(
                daemon.p2p_port, encoding, REGTEST.magic, genesis_hash=REGTEST.genesis_hash
            )
            await client.handshake()
            return client

        async def served(client: WireClient) -> None:
            client.send("ping", [11])
            assert await client.expect("pong", timeout=20) == [11]
            client.send("getheaders", [[REGTEST.genesis_hash], bytes(32)])
            assert await client.expect("headers", timeout=20) == []

        async def scenario() -> None:
            honest = await connect()
            await served(honest)
            # the peak RSS (VmHWM) starts again from the current RSS (Linux clear_refs)
            Path(f"/proc/{pid}/clear_refs").write_text("5")
            rss_before, cpu_before = _status_kb(pid, "VmRSS"), _cpu_seconds(pid)
            for msg_type in FLOODED:
                hostile = await connect()
                hostile.send_raw(encode_frame(REGTEST.magic, flood_within_limit(msg_type)))
                assert await hostile.closed_by_peer(timeout=20), f"{msg_type} kept"
            peak = (_status_kb(pid, "VmHWM") - rss_before) * 1024
            cpu = _cpu_seconds(pid) - cpu_before
            log.info("%d floods: peak RSS +%.1f MiB, %.2f s CPU", len(FLOODED), peak / 2**20, cpu)
            assert peak < MEMORY_BOUND, f"peak RSS rose by {peak / 2**20:.0f} MiB"
            assert cpu < CPU_BOUND, f"the floods cost {cpu:.2f} s of CPU"
            await served(honest)
            honest.close()
            late = await connect()  # the discouraged host may connect while slots are free
            await served(late)
            late.close()

        asyncio.run(scenario())
        metrics = daemon.client.get("/metrics").text
        assert re.search(rf"^obol_discouragements_total {len(FLOODED)}\.0$", metrics, re.M)
        refused = re.findall(r"discouraged \d+s: (\S+)", daemon.log())
        assert refused == ["oversized-message"] * len(FLOODED)
