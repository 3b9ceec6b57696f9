"""Session: the network-layer protocol of one connection, from handshake to close.

One Session task runs per connection.  It

1. exchanges ``version``/``verack`` within ``handshake_timeout``; before the
   handshake completes nothing else is accepted (Misbehaviour 100);
2. refuses other networks, ourselves (same nonce) and second connections to
   the same node;
3. once established: starts pinging, sends ``getaddr`` (outbound), runs the
   ``on_established`` callbacks;
4. then reads messages one at a time: flood limits, network-layer types here
   (``addr`` rate-limited and relayed as ``gossip.py`` says), every other type to
   the handler node/ registered;
5. on close: tells the dialler and, if it was established, the
   ``on_disconnected`` callbacks.

Faults of the peer (broken frames, malformed messages, Misbehaviour raised
by a handler) punish it; a bug in a handler (any other exception) is logged
and the connection kept.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Coroutine, Sequence
from typing import Any, Protocol

from .addrman import AddrBook
from .config import NetConfig
from .counters import NetCounters
from .errors import FrameError, MessageError, Misbehaviour
from .gossip import ADDR_RELAY_MAX_ENTRIES, addr_token_bucket, relay_plan
from .handlers import MessageHandler, PeerCallback
from .keepalive import ping_loop
from .outbound import Dialler
from .peer import Direction, Peer, ReceivedMessage
from .permissions import PermissionFlag, encode_grants
from .protocol import (
    ADDR,
    BAN_THRESHOLD,
    GETADDR,
    MAX_ADDR,
    MAX_UNKNOWN_MESSAGES,
    MIN_PROTOCOL_VERSION,
    NETWORK_MESSAGE_TYPES,
    PING,
    PONG,
    VERACK,
    VERSION,
    AddrEntry,
    VersionMessage,
    check_empty,
    decode_addr,
    encode_addr,
    ping_nonce,
)

log = logging.getLogger("obol.net")

NOT_OUR_PROTOCOL = "bad-magic"  # the frame error that proves only another protocol, no fault
MAX_LOOP_HOLD = 0.001  # seconds one peer's messages may run before other tasks get a turn


class SessionHost(Protocol):
    """What a Session needs of its owner (the PeerManager): exactly this, so the
    session does not import the manager that creates it."""

    @property
    def config(self) -> NetConfig: ...

    @property
    def magic(self) -> bytes: ...  # our network magic, announced in `version`

    @property
    def genesis_hash(self) -> bytes: ...  # peers with another genesis are another network

    @property
    def nonce(self) -> int: ...  # our `version` nonce: meeting it again means ourselves

    @property
    def listen_port(self) -> int | None: ...

    @property
    def addrbook(self) -> AddrBook: ...

    @property
    def relay_key(self) -> bytes: ...  # secret that picks the peers a relayed address goes to

    @property
    def dialler(self) -> Dialler: ...

    @property
    def counters(self) -> NetCounters: ...

    @property
    def on_established(self) -> Sequence[PeerCallback]: ...

    @property
    def on_disconnected(self) -> Sequence[PeerCallback]: ...

    def best_height(self) -> int: ...

    def connections(self) -> list[Peer]: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def handler(self, msg_type: str) -> MessageHandler | None: ...

    def misbehaving(self, peer: Peer, score: int, code: str, message: str = "") -> None: ...

    def forget(self, peer: Peer) -> None: ...


class Session:
    """Runs the protocol of one connection on behalf of its PeerManager."""

    def __init__(self, manager: SessionHost, peer: Peer) -> None:
        self.manager = manager  # owner: configuration, handlers, address book, bans
        self.peer = peer  # the connection this session drives
        self._ping_task: asyncio.Task[None] | None = None
        self._addr_tokens = addr_token_bucket()  # addresses of `addr` it may make us process
        self._rng = random.Random()  # which addresses of an `addr` beyond the tokens are kept
        peer.skip_decoding = self._out_of_addr_tokens

    async def run(self) -> None:
        """The life of the connection: handshake, then messages until it closes."""
        peer = self.peer
        try:
            if await self._handshake():
                await self._established()
                await self._message_loop()
        except FrameError as exc:
            if exc.code == NOT_OUR_PROTOCOL:
                # Not a peer of this network at all: an HTTP request, a health check, a node
                # of another network.  Nothing to punish, only a stream to drop (Core does
                # the same on a wrong message start).
                log.info(
                    "peer %s disconnected: another network or protocol (%s)",
                    peer.label,
                    exc.message,
                )
                peer.close(exc.code)
            else:
                self.manager.misbehaving(peer, BAN_THRESHOLD, exc.code, exc.message)
        except MessageError as exc:
            self.manager.misbehaving(peer, BAN_THRESHOLD, exc.code, exc.message)
        except Misbehaviour as exc:
            self.manager.misbehaving(peer, exc.score, exc.code, exc.message)
            peer.close(exc.code)
        except (ConnectionError, OSError) as exc:
            peer.close("connection-error")
            log.debug("peer %s connection error: %s", peer.label, exc)
        except asyncio.CancelledError:
            peer.close("shutdown")
            raise
        except Exception:
            log.exception("peer %s: internal error", peer.label)
            peer.close("internal-error")
        finally:
            await self._cleanup()

    # --- handshake ----------------------------------------------------------------

    async def _handshake(self) -> bool:
        """Exchange version/verack; True once established, False if the peer was dropped."""
        peer = self.peer
        if peer.direction is Direction.OUTBOUND:
            self._send_version()
        timeout = asyncio.timeout(self.manager.config.handshake_timeout)
        try:
            async with timeout:
                while peer.version is None or not peer.verack_received:
                    msg = await peer.receive()
                    if msg is None:
                        peer.close("connection-closed")
                        return False
                    self._check_flood(msg)
                    if msg.type == VERSION:
                        if not self._on_version(msg.body):
                            return False
                    elif msg.type == VERACK:
                        if peer.version is None:
                            raise Misbehaviour(BAN_THRESHOLD, "verack-before-version")
                        check_empty(VERACK, msg.body)
                        peer.verack_received = True
                    else:
                        raise Misbehaviour(
                            BAN_THRESHOLD,
                            "message-before-handshake",
                            f"{msg.type} before handshake",
                        )
        except TimeoutError:
            if not timeout.expired():
                raise
            log.info(
                "peer %s disconnected: no handshake within %.1fs",
                peer.label,
                self.manager.config.handshake_timeout,
            )
            peer.close("handshake-timeout")
            return False
        return not peer.closed

    def _on_version(self, body: Any) -> bool:
        """Check the remote `version` and answer it; False if the connection was dropped."""
        peer, manager = self.peer, self.manager
        if peer.version is not None:
            raise Misbehaviour(BAN_THRESHOLD, "duplicate-version")
        version = VersionMessage.from_body(body)
        if version.nonce == manager.nonce:
            manager.dialler.self_connection(peer)
            return False
        if version.magic != manager.magic or version.genesis_hash != manager.genesis_hash:
            log.info(
                "peer %s disconnected: wrong network: its genesis %s, magic %s; ours %s, %s",
                peer.label,
                version.genesis_hash.hex()[:16],
                version.magic.hex(),
                manager.genesis_hash.hex()[:16],
                manager.magic.hex(),
            )
            peer.close("wrong-network")
            return False
        if version.protocol_version < MIN_PROTOCOL_VERSION:
            log.info(
                "peer %s disconnected: obsolete protocol version %d",
                peer.label,
                version.protocol_version,
            )
            peer.close("obsolete-version")
            return False
        peer.version = version
        peer.best_height = version.best_height
        if not self._keep_among_duplicates():
            return False
        if peer.direction is Direction.INBOUND:
            self._send_version()
        peer.send(VERACK, [])
        return True

    def _send_version(self) -> None:
        manager, cfg = self.manager, self.manager.config
        version = VersionMessage(
            protocol_version=cfg.protocol_version,
            magic=manager.magic,
            genesis_hash=manager.genesis_hash,
            best_height=manager.best_height(),
            listen_port=manager.listen_port or 0,
            nonce=manager.nonce,
            user_agent=cfg.user_agent,
            timestamp=int(time.time()),
            grants=encode_grants(self.peer.permissions),
        )
        self.peer.send(VERSION, version.to_body())

    def _keep_among_duplicates(self) -> bool:
        """Drop one of two connections to the same node (same nonce); False if ours went.

        With equal directions the older connection stays.  When each node
        dialled the other, both keep the connection dialled by the node with
        the larger nonce, so the two ends agree without talking.
        """
        peer = self.peer
        for other in self.manager.connections():
            if other is peer or other.nonce != peer.nonce:
                continue
            if other.direction is peer.direction:
                loser = peer
            else:
                outbound = peer if peer.direction is Direction.OUTBOUND else other
                inbound = other if outbound is peer else peer
                loser = inbound if self.manager.nonce > (peer.nonce or 0) else outbound
            log.info("peer %s disconnected: duplicate connection to the same node", loser.label)
            loser.close("duplicate-connection")
            if loser is peer:
                return False
        return True

    async def _established(self) -> None:
        peer, manager = self.peer, self.manager
        peer.mark_established()
        log.info(
            "peer %s established (%s, %r, height %d)",
            peer.label,
            peer.direction.value,
            peer.user_agent,
            peer.best_height,
        )
        if peer.direction is Direction.OUTBOUND:
            manager.dialler.handshake_succeeded(peer)
            peer.send(GETADDR, [])
            self._addr_tokens.credit(MAX_ADDR)  # the answer we ask for fits (Core)
        elif peer.listen_address is not None:
            host, port = peer.listen_address
            manager.addrbook.add([(host, port, time.time())], source=peer.host)
        cfg = manager.config
        self._ping_task = manager.spawn(
            ping_loop(peer, cfg.ping_interval, cfg.ping_timeout), f"peer-{peer.id}-ping"
        )
        for callback in list(manager.on_established):
            await self._run_callback(callback, "on_established")
        manager.dialler.wake()

    # --- messages -----------------------------------------------------------------

    async def _message_loop(self) -> None:
        """Handle the peer's messages in order.  While its data is buffered, reading and
        most handlers finish without suspending, so the loop yields every MAX_LOOP_HOLD:
        other peers, the API and the hand-offs to the chain thread (the next batch of
        this very peer's transactions) must not wait for a whole burst."""
        peer = self.peer
        clock = asyncio.get_running_loop().time
        turn_ends = clock() + MAX_LOOP_HOLD
        pause = self.manager.config.send_pause
        while not peer.closed:
            await peer.wait_send_below(pause)  # it reads too little of what it asked for
            msg = await peer.receive()
            if msg is None:
                peer.close("connection-closed")
                return
            self._check_flood(msg)
            await self._dispatch(msg)
            if clock() >= turn_ends:
                await asyncio.sleep(0)
                turn_ends = clock() + MAX_LOOP_HOLD

    def _check_flood(self, msg: ReceivedMessage) -> None:
        if not self.peer.message_limit.consume(1):
            raise Misbehaviour(BAN_THRESHOLD, "flood", "message rate limit exceeded")
        if not self.peer.byte_limit.consume(msg.size):
            raise Misbehaviour(BAN_THRESHOLD, "flood", "byte rate limit exceeded")

    async def _dispatch(self, msg: ReceivedMessage) -> None:
        """Handle one message of the established peer; only its own faults punish it."""
        peer, manager = self.peer, self.manager
        try:
            if msg.type in NETWORK_MESSAGE_TYPES:
                self._handle_network_message(msg)
                return
            handler = manager.handler(msg.type)
            if handler is None:
                self._unknown_message(msg)
                return
            peer.busy = True
            try:
                await handler(peer, msg)
            finally:
                peer.busy = False
        except Misbehaviour as exc:
            manager.misbehaving(peer, exc.score, exc.code, exc.message)
        except MessageError as exc:
            manager.misbehaving(peer, BAN_THRESHOLD, exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            manager.counters.handler_errors += 1
            log.exception("handler for %r from peer %s failed (peer kept)", msg.type, peer.label)

    def _unknown_message(self, msg: ReceivedMessage) -> None:
        """A type nobody handles, left undecoded: ignored, for a newer peer may speak
        types we do not know.  A peer of our protocol version or older has no such
        excuse, and is disconnected (not punished) after MAX_UNKNOWN_MESSAGES."""
        peer, manager = self.peer, self.manager
        peer.unknown_messages += 1
        manager.counters.unknown_messages += 1
        log.debug("peer %s sent unknown message type %r", peer.label, msg.type)
        newer = (peer.protocol_version or 0) > manager.config.protocol_version
        if not newer and peer.unknown_messages > MAX_UNKNOWN_MESSAGES:
            log.info("peer %s disconnected: %d unknown messages", peer.label, MAX_UNKNOWN_MESSAGES)
            peer.close("too-many-unknown-messages")

    def _handle_network_message(self, msg: ReceivedMessage) -> None:
        peer = self.peer
        if msg.type == VERSION:
            raise Misbehaviour(BAN_THRESHOLD, "duplicate-version")
        if msg.type == VERACK:
            raise Misbehaviour(BAN_THRESHOLD, "duplicate-verack")
        if msg.type == PING:
            peer.send(PONG, [ping_nonce(PING, msg.body)])
        elif msg.type == PONG:
            if not peer.pong_received(ping_nonce(PONG, msg.body)):
                log.debug("peer %s sent an unexpected pong", peer.label)
        elif msg.type == GETADDR:
            check_empty(GETADDR, msg.body)
            self._answer_getaddr()
        elif msg.type == ADDR and not msg.decoded:  # its sender had no tokens left
            self.manager.counters.addr_skipped += 1
        elif msg.type == ADDR:
            self._on_addr(decode_addr(msg.body))

    def _out_of_addr_tokens(self, msg_type: str) -> bool:
        """An `addr` now would have every entry dropped: not worth decoding (1,000 entries
        cost ~1.2 ms), so a flood costs the node its bytes and a lookup."""
        return (
            msg_type == ADDR
            and self._addr_tokens.tokens < 1
            and not self.peer.has_permission(PermissionFlag.ADDR)
        )

    def _on_addr(self, entries: list[AddrEntry]) -> None:
        """Learn what the tokens allow of an `addr` (a random choice of it), and relay the
        fresh addresses of a small one (``gossip.py``)."""
        peer, manager = self.peer, self.manager
        kept = entries
        if not peer.has_permission(PermissionFlag.ADDR):
            allowed = min(len(entries), int(self._addr_tokens.tokens))
            self._addr_tokens.consume(allowed)
            if allowed < len(entries):
                kept = self._rng.sample(entries, allowed)
                manager.counters.addr_rate_limited += len(entries) - allowed
        learned = manager.addrbook.learn(
            ((e.host, e.port, e.last_seen) for e in kept), source=peer.host
        )
        log.debug(
            "peer %s sent %d addresses (%d processed, %d new)",
            peer.label,
            len(entries),
            len(kept),
            learned.new,
        )
        if learned.new:
            manager.dialler.wake()
        if len(entries) <= ADDR_RELAY_MAX_ENTRIES and learned.changed:
            plan = relay_plan(
                manager.relay_key, learned.changed, time.time(), manager.connections(), peer
            )
            for target, relayed in plan.items():
                target.send(ADDR, encode_addr(relayed))
                manager.counters.addr_relayed += len(relayed)

    def _answer_getaddr(self) -> None:
        """Reply once per connection with up to MAX_ADDR addresses worth dialling."""
        peer = self.peer
        if peer.getaddr_answered:
            return
        peer.getaddr_answered = True
        exclude = [peer.listen_address] if peer.listen_address else []
        known = self.manager.addrbook.for_gossip(MAX_ADDR, exclude=exclude, to=peer.host)
        entries = [AddrEntry(k.host, k.port, int(max(k.last_seen, k.last_success))) for k in known]
        peer.send(ADDR, encode_addr(entries))

    # --- the end --------------------------------------------------------------------

    async def _cleanup(self) -> None:
        """Forget the finished connection and tell node/ if it had been established."""
        peer, manager = self.peer, self.manager
        if not peer.closed:
            peer.close("connection-closed")
        manager.forget(peer)
        level = logging.INFO if peer.established else logging.DEBUG
        log.log(level, "peer %s closed: %s", peer.label, peer.close_reason)
        manager.dialler.connection_closed(peer)
        if self._ping_task is not None:
            self._ping_task.cancel()
        await peer.wait_closed()
        if peer.established:
            for callback in list(manager.on_disconnected):
                await self._run_callback(callback, "on_disconnected")

    async def _run_callback(self, callback: PeerCallback, what: str) -> None:
        try:
            await callback(self.peer)
        except Misbehaviour as exc:
            self.manager.misbehaving(self.peer, exc.score, exc.code, exc.message)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.manager.counters.handler_errors += 1
            log.exception("%s callback for peer %s failed", what, self.peer.label)
