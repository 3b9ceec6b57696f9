"""The addr rate limit and the relay of fresh addresses (issue 14, item 5), on bare
PeerManagers over loopback sockets."""

from __future__ import annotations

import random
import time

import pytest

from network.gossip import ADDR_RELAY_MAX_ENTRIES, ADDR_RELAY_PEERS
from network.permissions import LOCAL_PERMISSIONS, Permission, PermissionFlag
from network.protocol import MAX_ADDR
from network.ratelimit import TokenBucket
from node.primitives import encoding
from tests.framework.managers import ManagerFactory
from tests.framework.util import LOCALHOST, wait_until
from tests.framework.wire import WireClient

ADDR_PERMISSION = (*LOCAL_PERMISSIONS, Permission.parse("addr@127.0.0.0/8"))


@pytest.fixture
async def nets():
    factory = ManagerFactory(encoding)
    yield factory
    await factory.stop_all()


def global_addresses(count: int, seed: int = 0) -> list[list]:
    """``addr`` entries of ``count`` distinct internet addresses, seen now."""
    rng = random.Random(seed)
    hosts = {
        f"{rng.randrange(1, 9)}.{rng.randrange(256)}.{rng.randrange(256)}.1"
        for _ in range(count * 2)
    }
    return [[host, 8333, int(time.time())] for host in sorted(hosts)[:count]]


async def client_of(manager) -> WireClient:
    client = await WireClient.connect(manager.listen_port)
    await client.handshake()
    await wait_until(lambda: len(manager.peers()) >= 1, what="the client established")
    return client


async def synced(client: WireClient) -> None:
    """Return once the manager handled everything the client sent before, and the client
    read everything the manager sent it before answering (one connection is in order)."""
    nonce = random.getrandbits(63)
    client.send("ping", [nonce])
    while await client.expect("pong") != [nonce]:
        pass


def test_addr_permission_flag_parses():
    assert (
        Permission.parse("addr,noban@10.0.0.0/8").flags
        == PermissionFlag.ADDR | PermissionFlag.NOBAN
    )
    assert all(PermissionFlag.ADDR not in rule.flags for rule in LOCAL_PERMISSIONS)


def test_token_bucket_may_start_low_and_be_credited():
    now = [0.0]
    bucket = TokenBucket(rate=0.1, burst=1000, clock=lambda: now[0], initial=1)
    assert bucket.consume(1) and not bucket.consume(1)
    now[0] += 10
    assert bucket.consume(1)
    bucket.credit(5000)
    assert bucket.tokens == 1000


async def test_addresses_beyond_the_bucket_are_dropped_unread(nets):
    """A new connection may make us process one address, then 0.1 a second: a thousand
    entries cost the node one address of work, the others are counted and dropped, and
    the next `addr`, sent with no token left, is not even decoded."""
    a = await nets.start()
    client = await client_of(a)
    client.send("addr", global_addresses(MAX_ADDR))
    client.send("addr", global_addresses(MAX_ADDR, seed=1))
    await synced(client)
    assert len(a.addrbook) == 1
    assert a.stats()["addr_rate_limited"] == MAX_ADDR - 1
    assert a.stats()["addr_skipped"] == 1
    assert not a.peers()[0].closed  # dropped, not punished (Core)


async def test_a_peer_with_the_addr_permission_is_not_limited(nets):
    a = await nets.start(permissions=ADDR_PERMISSION)
    client = await client_of(a)
    client.send("addr", global_addresses(MAX_ADDR))
    await synced(client)
    assert a.stats()["addr_rate_limited"] == 0
    assert len(a.addrbook) > 256  # one source group's buckets: at most 512 of them


async def test_the_answer_to_our_getaddr_fits_the_bucket(nets):
    """The dialling side asks `getaddr` and is credited a full `addr` for the answer."""
    b = await nets.start()
    b.addrbook.add([tuple(e) for e in global_addresses(400)], source="127.0.0.5")
    stored = len(b.addrbook)
    a = await nets.start()
    await a.connect(LOCALHOST, b.listen_port)
    await wait_until(lambda: len(a.addrbook) >= stored / 2, what="A learned B's addresses")
    assert a.stats()["addr_rate_limited"] == 0


async def test_a_fresh_address_is_relayed_to_two_other_peers_once(nets):
    """Core's RelayAddress: an `addr` of at most 10 entries has its fresh, new addresses
    passed on to 2 peers other than the sender, the same 2 for the same address; an
    address already known as fresh, a stale one, one the peers may not learn and the
    entries of a larger `addr` are not relayed."""
    a = await nets.start(permissions=ADDR_PERMISSION)
    source = await client_of(a)
    others = [await client_of(a) for _ in range(4)]
    await wait_until(lambda: len(a.peers()) == 5, what="five clients established")
    now = int(time.time())

    async def relayed() -> list[list]:
        await synced(source)
        got = []
        for client in others:
            await synced(client)
            got.append([entry for kind, body in client.inbox if kind == "addr" for entry in body])
            client.inbox.clear()
        return got

    source.send("addr", [["8.8.8.8", 8333, now]])
    first = await relayed()
    assert sum(1 for got in first if got == [["8.8.8.8", 8333, now]]) == ADDR_RELAY_PEERS
    assert sum(1 for got in first if got) == ADDR_RELAY_PEERS
    assert not [kind for kind, _ in source.inbox if kind == "addr"]

    source.send("addr", [["8.8.8.8", 8333, now + 1]])  # seen later: relayed, to the same two
    again = await relayed()
    assert [bool(got) for got in again] == [bool(got) for got in first]

    source.send("addr", [["8.8.8.8", 8333, now + 1]])  # nothing new: a loop stops here
    source.send("addr", [["9.9.9.9", 8333, now - 3600]])  # stale
    source.send("addr", [["0.0.0.0", 8333, now], ["224.0.0.1", 8333, now]])  # unusable
    many = global_addresses(ADDR_RELAY_MAX_ENTRIES + 1, seed=3)
    source.send("addr", many)  # a getaddr answer, not gossip
    assert await relayed() == [[], [], [], []]
    assert a.stats()["addr_relayed"] == 2 * ADDR_RELAY_PEERS
