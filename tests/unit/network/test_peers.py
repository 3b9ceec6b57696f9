"""PeerManagers talking to each other over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging

import pytest

from network import Misbehaviour, NetworkError, PeerManager
from node.primitives import encoding
from tests.framework.managers import ManagerFactory
from tests.framework.util import LOCALHOST, wait_until
from tests.framework.wire import WireClient


@pytest.fixture
async def nets():
    factory = ManagerFactory(encoding)
    yield factory
    await factory.stop_all()


async def linked(a: PeerManager, b: PeerManager):
    """Dial b from a and wait until both ends are established; return (a's peer, b's peer)."""
    peer = await a.connect(LOCALHOST, b.listen_port)
    assert await asyncio.wait_for(peer.wait_established(), 5)
    await wait_until(lambda: len(b.peers()) == 1, what="inbound established")
    return peer, b.peers()[0]


async def test_handshake_completes_both_ways(nets):
    """A dials B: both ends become established and learn each other's version fields."""
    a = await nets.start(best_height=5, user_agent="/a/")
    b = await nets.start(best_height=7, user_agent="/b/")
    established = []

    async def on_established(peer):
        established.append(peer)

    b.on_established.append(on_established)
    a_side, b_side = await linked(a, b)
    assert a_side.direction.value == "outbound" and b_side.direction.value == "inbound"
    assert (a_side.best_height, a_side.user_agent, a_side.listen_port) == (7, "/b/", b.listen_port)
    assert (b_side.best_height, b_side.user_agent, b_side.listen_port) == (5, "/a/", a.listen_port)
    assert established == [b_side]
    info = a_side.info()
    assert set(info) >= {
        "address",
        "direction",
        "version",
        "user_agent",
        "height",
        "ping_ms",
        "bytes_in",
        "bytes_out",
        "ban_score",
        "connected_seconds",
    }
    assert info["address"] == f"127.0.0.1:{b.listen_port}" and info["height"] == 7
    assert info["bytes_in"] > 0 and info["bytes_out"] > 0
    assert a.stats()["outbound"] == 1 and b.stats()["inbound"] == 1


async def test_ping_rtt_measured(nets):
    """Each side pings at once after the handshake and records the round trip."""
    a = await nets.start()
    b = await nets.start()
    a_side, b_side = await linked(a, b)
    await wait_until(
        lambda: a_side.ping_rtt is not None and b_side.ping_rtt is not None,
        what="first ping answered",
    )
    rtt = await a.ping(a_side, timeout=5)
    assert 0 < rtt < 5 and a_side.info()["ping_ms"] == pytest.approx(rtt * 1000, abs=0.01)


async def test_periodic_ping(nets):
    """With a short ping interval, pings keep being answered and the peer stays up."""
    a = await nets.start(ping_interval=0.05)
    b = await nets.start()
    a_side, b_side = await linked(a, b)
    await wait_until(lambda: b_side.messages_out >= 5, what="several pongs")
    assert a_side.established and not a_side.closed


async def test_handler_receives_messages_in_order(nets):
    """Messages of one peer reach the registered handler one at a time, in order."""
    a = await nets.start()
    b = await nets.start()
    received = []
    running = 0

    async def on_item(peer, body):
        nonlocal running
        running += 1
        assert running == 1, "handlers of one peer must not overlap"
        await asyncio.sleep(0)
        received.append((peer.id, body))
        running -= 1

    b.register("item", on_item)
    a_side, b_side = await linked(a, b)
    for i in range(50):
        assert a_side.send("item", [i, b"data"])
    await wait_until(lambda: len(received) == 50, what="50 items handled")
    assert received == [(b_side.id, [i, b"data"]) for i in range(50)]


async def test_handler_with_bytes_gets_the_body_as_it_came(nets):
    """A handler registered ``with_bytes`` also gets the body's bytes: exactly its canonical
    encoding, a slice of the payload (so ids can be hashed without encoding again)."""
    a = await nets.start()
    b = await nets.start()
    received = []

    async def on_item(peer, body, raw):
        received.append((body, raw))

    async def on_plain(peer, body):
        received.append((body, None))

    b.register("item", on_item, with_bytes=True)
    b.register("plain", on_plain)
    a_side, _ = await linked(a, b)
    bodies = [[], [1, b"x" * 300, "s"], [[2**40, [b""]], "a" * 40], 7]
    for body in bodies:
        assert a_side.send("item", body)
    assert a_side.send("plain", [1])
    await wait_until(lambda: len(received) == len(bodies) + 1, what="all handled")
    assert received == [(body, encoding.encode(body)) for body in bodies] + [([1], None)]


async def test_register_refuses_network_types(nets):
    """node/ cannot take over network-layer message types or register twice."""
    a = await nets.start()

    async def handler(peer, body):
        pass

    for name in ("ping", "version", "addr", "", "x" * 13):
        with pytest.raises(ValueError):
            a.register(name, handler)
    a.register("tx", handler)
    with pytest.raises(ValueError):
        a.register("tx", handler)


async def test_broadcast_reaches_peers(nets):
    """broadcast sends to every established peer except the excluded one."""
    hub = await nets.start()
    leaves = [await nets.start() for _ in range(3)]
    got: dict[int, list] = {i: [] for i in range(3)}
    for i, leaf in enumerate(leaves):

        async def handler(peer, body, i=i):
            got[i].append(body)

        leaf.register("news", handler)
        await leaf.connect(LOCALHOST, hub.listen_port)
    await wait_until(lambda: len(hub.peers()) == 3, what="3 inbound peers")
    assert hub.broadcast("news", ["one"]) == 3
    await wait_until(lambda: all(got[i] == [["one"]] for i in range(3)), what="broadcast")
    excluded = next(p for p in hub.peers() if p.listen_port == leaves[0].listen_port)
    assert hub.broadcast("news", ["two"], exclude=excluded) == 2
    await wait_until(lambda: got[1] == got[2] == [["one"], ["two"]], what="second broadcast")
    assert got[0] == [["one"]]


async def test_unknown_message_ignored_but_counted(nets):
    """An established peer's message of an unknown type is ignored, counted, not punished."""
    a = await nets.start()
    b = await nets.start()
    a_side, b_side = await linked(a, b)
    a_side.send("futuremsg", [1, 2, 3])
    await wait_until(lambda: b_side.unknown_messages == 1, what="unknown counted")
    assert b.stats()["unknown_messages"] == 1 and b_side.ban_score == 0
    assert await a.ping(a_side, timeout=5) > 0


async def test_persistent_peer_reconnects_after_restart(nets):
    """A persistent peer is redialled (with back-off) after the other side restarts."""
    a = await nets.start()
    b = await nets.start()
    port = b.listen_port
    events = []

    async def up(peer):
        events.append("up")

    async def down(peer):
        events.append("down")

    a.on_established.append(up)
    a.on_disconnected.append(down)
    a.add_persistent_peer(LOCALHOST, port)
    await wait_until(lambda: len(a.peers()) == 1, what="first connection")
    await b.stop()
    await wait_until(
        lambda: events == ["up", "down"] and not a.connections(), what="disconnect noticed"
    )
    b2 = await nets.start(listen_port=port)
    await wait_until(lambda: len(a.peers()) == 1 and len(b2.peers()) == 1, what="reconnected")
    assert events == ["up", "down", "up"]
    assert a.peers()[0].kind.value == "persistent"


async def test_self_connection_dropped(nets):
    """Dialling our own listening port is detected by nonce: link dropped, no ban, no retry."""
    a = await nets.start()
    peer = await a.connect(LOCALHOST, a.listen_port)
    assert not await asyncio.wait_for(peer.wait_established(), 5)
    await wait_until(lambda: not a.connections(), what="both ends closed")
    assert peer.close_reason == "self-connection"
    assert a.bans() == [] and a.peers() == []
    with pytest.raises(NetworkError) as err:
        await a.connect(LOCALHOST, a.listen_port)
    assert err.value.code == "self-connection"


async def test_persistent_self_connection_not_retried(nets):
    """A persistent peer that turns out to be ourselves is given up after one attempt."""
    a = await nets.start()
    a.add_persistent_peer(LOCALHOST, a.listen_port)
    await wait_until(lambda: a.dialler.is_self((LOCALHOST, a.listen_port)), what="self found")
    await wait_until(
        lambda: not any(task.get_name().startswith("persistent-") for task in asyncio.all_tasks()),
        what="redial loop ended",
    )
    assert not a.connections()


async def test_wrong_genesis_refused(nets, caplog):
    """A peer of another chain (different genesis) is disconnected without a ban."""
    a = await nets.start()
    b = await nets.start(genesis_hash=b"\xee" * 32)
    with caplog.at_level(logging.INFO, logger="obol.net"):
        peer = await a.connect(LOCALHOST, b.listen_port)
        assert not await asyncio.wait_for(peer.wait_established(), 5)
        await wait_until(lambda: not a.connections() and not b.connections(), what="both closed")
    assert f"peer 127.0.0.1:{peer.local_address[1]} disconnected: wrong network" in caplog.text
    assert a.bans() == [] and b.bans() == [] and a.peers() == [] and b.peers() == []


async def test_inbound_limit(nets):
    """Beyond max_inbound, new inbound connections are closed at once."""
    b = await nets.start(max_inbound=1)
    a1 = await nets.start()
    a2 = await nets.start()
    await linked(a1, b)
    peer = await a2.connect(LOCALHOST, b.listen_port)
    assert not await asyncio.wait_for(peer.wait_established(), 5)
    assert len(b.peers()) == 1 and len(b.connections()) == 1
    assert b.bans() == []


async def test_duplicate_connection_resolved(nets):
    """When two nodes dial each other, exactly one connection survives at both ends."""
    a = await nets.start()
    b = await nets.start()
    await asyncio.gather(a.connect(LOCALHOST, b.listen_port), b.connect(LOCALHOST, a.listen_port))
    await wait_until(
        lambda: (
            len(a.connections()) == 1
            and len(b.connections()) == 1
            and len(a.peers()) == 1
            and len(b.peers()) == 1
        ),
        what="one link left",
    )
    assert a.peers()[0].nonce == b.nonce and b.peers()[0].nonce == a.nonce
    with pytest.raises(NetworkError) as err:
        await a.connect(LOCALHOST, b.listen_port)
    assert err.value.code == "already-connected"


async def test_addr_gossip_fills_outbound_slot(nets):
    """C connects to A, learns B's address from A's addr reply, and dials B by itself."""
    a = await nets.start(discover=False)
    b = await nets.start(discover=False)
    b.add_persistent_peer(LOCALHOST, a.listen_port)
    await wait_until(lambda: (LOCALHOST, b.listen_port) in a.addrbook, what="A learned B")
    c = await nets.start(discover=True, max_outbound=2)
    c.add_persistent_peer(LOCALHOST, a.listen_port)
    await wait_until(
        lambda: any(p.kind.value == "automatic" for p in c.peers()),
        what="C dialled an address it learned",
    )
    automatic = [p for p in c.peers() if p.kind.value == "automatic"]
    assert [p.target for p in automatic] == [(LOCALHOST, b.listen_port)]
    # B completes its side of the handshake a moment after C does
    await wait_until(
        lambda: any(p.listen_port == c.listen_port for p in b.peers()), what="B sees C established"
    )
    assert (LOCALHOST, c.listen_port) not in {p.target for p in c.connections()}


async def test_disconnect_by_address(nets):
    """disconnect(address) closes the matching connection and fires on_disconnected."""
    a = await nets.start()
    b = await nets.start()
    gone = []

    async def down(peer):
        gone.append(peer.id)

    a.on_disconnected.append(down)
    a_side, _ = await linked(a, b)
    assert a.disconnect(f"127.0.0.1:{b.listen_port}") == 1
    await wait_until(lambda: gone == [a_side.id] and not b.connections(), what="disconnected")
    assert a_side.close_reason == "disconnect-requested"


async def test_ban_list_persists_across_restart(nets, tmp_path):
    """Bans are saved in the datadir, reloaded by a new manager, and unban persists."""
    a = await nets.start(datadir=tmp_path)
    a.ban("10.9.8.7", 3600, "operator says so")
    await a.stop()
    a2 = await nets.start(datadir=tmp_path)
    assert [(b.host, b.reason) for b in a2.bans()] == [("10.9.8.7", "operator says so")]
    assert a2.unban("10.9.8.7") and not a2.unban("10.9.8.7")
    await a2.stop()
    a3 = await nets.start(datadir=tmp_path)
    assert a3.bans() == []


async def test_banned_host_refused_until_unbanned(nets):
    """A banned host's connections are closed at once; after unban they are accepted."""
    a = await nets.start()
    b = await nets.start()
    await linked(a, b)
    b.ban(LOCALHOST, 3600, "manual")
    await wait_until(lambda: not a.connections() and not b.connections(), what="ban closes link")
    raw = await WireClient.connect(b.listen_port, encoding)
    assert await raw.closed_by_peer(timeout=5)
    assert not b.connections()
    assert b.unban(LOCALHOST)
    await linked(a, b)


async def test_handler_misbehaviour_bans(nets, caplog):
    """A handler raising Misbehaviour(100) gets the sender disconnected and discouraged
    (loopback's default noban taken away, so that discouragement shows)."""
    a = await nets.start()
    b = await nets.start(discourage_seconds=600, permissions=())

    async def bad_block(peer, body):
        raise Misbehaviour(100, "bad-blk-pow", "proof of work fails")

    b.register("block", bad_block)
    a_side, b_side = await linked(a, b)
    with caplog.at_level(logging.INFO, logger="obol.net"):
        a_side.send("block", [b"junk"])
        await wait_until(lambda: b_side.closed and a_side.closed, what="disconnect")
    assert b.bans() == [] and b.discouraged.get("127.0.0.1").reason == "bad-blk-pow"
    assert (
        f"peer 127.0.0.1:{a_side.local_address[1]} disconnected and discouraged 600s: bad-blk-pow"
    ) in caplog.text


async def test_misbehaviour_accumulates(nets):
    """Scores below 100 accumulate; the peer is discouraged once the total reaches 100."""
    a = await nets.start()
    b = await nets.start(permissions=())

    async def dubious(peer, body):
        raise Misbehaviour(40, "dubious")

    b.register("dubious", dubious)
    a_side, b_side = await linked(a, b)
    a_side.send("dubious", [])
    a_side.send("dubious", [])
    await wait_until(lambda: b_side.ban_score == 80, what="score 80")
    assert not b_side.closed and b.bans() == []
    a_side.send("dubious", [])
    await wait_until(lambda: b_side.closed, what="discouraged at 120")
    assert b.is_discouraged(LOCALHOST) and b.bans() == []


async def test_handler_crash_does_not_ban(nets, caplog):
    """A handler raising RuntimeError is logged; the peer stays connected and unbanned."""
    a = await nets.start()
    b = await nets.start()
    calls = []

    async def buggy(peer, body):
        calls.append(body)
        raise RuntimeError("bug in node")

    b.register("buggy", buggy)
    a_side, b_side = await linked(a, b)
    with caplog.at_level(logging.ERROR, logger="obol.net"):
        a_side.send("buggy", [1])
        a_side.send("buggy", [2])
        await wait_until(lambda: b.stats()["handler_errors"] == 2, what="two handler errors")
    assert calls == [[1], [2]]
    assert "RuntimeError: bug in node" in caplog.text
    assert b.bans() == [] and b_side.ban_score == 0 and not b_side.closed
    assert await b.ping(b_side, timeout=5) > 0


async def test_stop_leaves_no_tasks(nets):
    """stop() closes every connection and task of the manager."""
    a = await nets.start(ping_interval=0.05)
    b = await nets.start()
    await linked(a, b)
    a.add_persistent_peer(LOCALHOST, b.listen_port)
    await a.stop()
    await b.stop()
    current = asyncio.current_task()
    await wait_until(
        lambda: [t for t in asyncio.all_tasks() if t is not current] == [], what="no tasks left"
    )
