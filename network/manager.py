"""PeerManager: the connections of one node, and what node/ sees of them.

The manager listens, accepts or refuses inbound connections, dials outbound
ones (through ``outbound.py``), keeps the ban list and the address book,
registers node/ handlers and callbacks, broadcasts, and reports statistics.
Each connection runs in its own task (a ``session.Session``: handshake,
pings, gossip, dispatch) that handles the peer's messages one after another;
different peers run concurrently, and nothing one peer sends can disturb
another.

Usage by node/::

    net = PeerManager(magic, genesis_hash, encoding, chain.height, datadir, NetConfig(...))
    net.register("tx", on_tx)            # async def on_tx(peer, body) -> None
    net.on_established.append(greet)     # async def greet(peer) -> None
    await net.start()
    net.broadcast("inv", [...])
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any, Literal, overload

from .addrman import PEERS_FILE, AddrBook
from .bans import BANS_FILE, Ban, BanList
from .config import NetConfig
from .counters import NetCounters
from .discourage import DiscouragedSet
from .errors import NetworkError
from .frames import encode_frame
from .handlers import BytesHandler, Handler, MessageHandler, PeerCallback
from .keepalive import ping
from .outbound import Dialler
from .peer import Address, ConnectionKind, Direction, Peer, ReceivedMessage
from .permissions import PermissionFlag, permissions_for
from .protocol import (
    BAN_THRESHOLD,
    GENESIS_HASH_SIZE,
    NETWORK_MESSAGE_TYPES,
    NETWORK_PAYLOAD_LIMITS,
    NETWORK_VALUE_LIMITS,
    NONCE_BITS,
    Codec,
    canonical_host,
    encode_envelope,
    format_address,
    is_valid_type_name,
)
from .ratelimit import TokenBucket
from .session import Session
from .slots import Candidate, netgroup, select_to_evict

log = logging.getLogger("obol.net")

STOP_GRACE = 5.0  # seconds stop() lets closed connections finish before cancelling them


class PeerManager:
    """All connections of one node.  Holds no global state: several may share a process."""

    def __init__(
        self,
        magic: bytes,
        genesis_hash: bytes,
        codec: Codec,
        best_height: Callable[[], int],
        datadir: Path | str | None = None,
        config: NetConfig | None = None,
    ) -> None:
        if not isinstance(magic, bytes) or len(magic) != 4:
            raise ValueError("magic must be 4 bytes")
        if not isinstance(genesis_hash, bytes) or len(genesis_hash) != GENESIS_HASH_SIZE:
            raise ValueError(f"genesis_hash must be {GENESIS_HASH_SIZE} bytes")
        self.magic = magic  # network magic opening every frame
        self.genesis_hash = genesis_hash  # peers with another genesis are another network
        self.codec = codec  # canonical msgpack encoder/decoder (node.encoding)
        self.best_height = best_height  # our best height, announced in `version`
        self.config = config or NetConfig()
        self.datadir = Path(datadir) if datadir is not None else None
        self.nonce = secrets.randbits(NONCE_BITS)  # this instance's `version` nonce
        self.banlist = BanList(self.datadir / BANS_FILE if self.datadir else None)
        # hosts that misbehaved lately: evicted first, never dialled (in memory only)
        self.discouraged = DiscouragedSet(self.config.discourage_seconds)
        self.addrbook = AddrBook(self.datadir / PEERS_FILE if self.datadir else None)
        #: async callbacks run (in order) when a peer completes its handshake
        self.on_established: list[PeerCallback] = []
        #: async callbacks run when an established peer disconnects
        self.on_disconnected: list[PeerCallback] = []
        self._handlers: dict[str, MessageHandler] = {}  # node/ message type -> its handler
        self._limits: dict[str, int] = dict(NETWORK_PAYLOAD_LIMITS)  # type -> payload bytes
        # type -> most values per nesting depth of its body, counted before decoding
        self._value_limits: dict[str, tuple[int, ...]] = dict(NETWORK_VALUE_LIMITS)
        self._peers: dict[int, Peer] = {}  # every open connection by id
        self._next_id = 1
        self._server: asyncio.Server | None = None
        self._listen_port: int | None = None
        self._running = False
        self._tasks: set[asyncio.Task[Any]] = set()  # every background task we own
        self._connection_tasks: set[asyncio.Task[None]] = set()  # one per connection
        self._eviction_key = secrets.token_bytes(16)  # orders address groups for eviction
        self.relay_key = secrets.token_bytes(16)  # picks the peers a relayed address goes to
        self.dialler = Dialler(self)  # outbound connections (package-internal)
        self.counters = NetCounters()  # totals since start (package-internal; see stats())

    # --- lifecycle ------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def listen_port(self) -> int | None:
        """The port actually bound (None when not listening)."""
        return self._listen_port

    async def start(self) -> None:
        """Listen (if configured) and start dialling."""
        if self._running:
            raise RuntimeError("PeerManager already started")
        cfg = self.config
        if cfg.listen_port is not None:
            self._server = await asyncio.start_server(
                self._on_inbound, cfg.listen_host, cfg.listen_port, reuse_address=True
            )
            self._listen_port = self._server.sockets[0].getsockname()[1]
            log.info("listening on %s", format_address(cfg.listen_host, self._listen_port))
        self._running = True
        self.dialler.start()
        self.spawn(self._maintenance_loop(), "net-maintenance")

    async def stop(self) -> None:
        """Close every connection and task; save the address book."""
        if not self._running:
            return
        self._running = False
        if self._server is not None:
            self._server.close()
        for peer in list(self._peers.values()):
            peer.close("shutdown")
        # closed peers finish on their own (cleanup, on_disconnected); everything else is cancelled
        connection_tasks = set(self._connection_tasks)
        for task in self._tasks - connection_tasks:
            task.cancel()
        if connection_tasks:
            await asyncio.wait(connection_tasks, timeout=STOP_GRACE)
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        self._listen_port = None
        self.addrbook.save()
        log.info("network stopped")

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned (and cancelled at stop) by the manager."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def _maintenance_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.addr_save_interval)
            self.addrbook.save()

    # --- registration (node/) -------------------------------------------------

    @overload
    def register(
        self,
        msg_type: str,
        handler: Handler,
        with_bytes: Literal[False] = False,
        max_payload: int | None = None,
        max_values: tuple[int, ...] | None = None,
    ) -> None: ...

    @overload
    def register(
        self,
        msg_type: str,
        handler: BytesHandler,
        with_bytes: Literal[True],
        max_payload: int | None = None,
        max_values: tuple[int, ...] | None = None,
    ) -> None: ...

    def register(
        self,
        msg_type: str,
        handler: Callable[..., Awaitable[None]],
        with_bytes: bool = False,
        max_payload: int | None = None,
        max_values: tuple[int, ...] | None = None,
    ) -> None:
        """Have ``await handler(peer, body)`` called for each ``msg_type`` message, or
        ``await handler(peer, body, body_bytes)`` with ``with_bytes``: the body's bytes as
        they came (its canonical encoding, as the codec accepts no other).

        ``max_payload`` bounds the bytes of one such message (default: the frame limit);
        a larger one is refused before it is decoded (``oversized-message``, score 100),
        since decoding costs CPU and memory in proportion to its size.
        ``max_values`` bounds what it may contain: ``max_values[0]`` values in its body
        (if an array), ``max_values[1]`` in all of those together, and so on, nothing
        deeper.  They are counted in one pass over the bytes before anything is decoded
        (a value costs a Python object, about 70 bytes for an empty array sent as one);
        more is ``oversized-message`` too.  Without it only the payload's bytes bound it.

        Raise Misbehaviour in the handler to punish the sender.  A peer's
        messages are handled one at a time, in order.
        """
        if not is_valid_type_name(msg_type):
            raise ValueError(f"invalid message type name {msg_type!r}")
        if msg_type in NETWORK_MESSAGE_TYPES:
            raise ValueError(f"{msg_type!r} is handled by the network layer")
        if msg_type in self._handlers:
            raise ValueError(f"a handler for {msg_type!r} is already registered")
        self._handlers[msg_type] = _with_body_bytes(handler) if with_bytes else _with_body(handler)
        self._limits[msg_type] = min(
            max_payload or self.config.max_payload, self.config.max_payload
        )
        if max_values is not None:
            self._value_limits[msg_type] = max_values

    # --- connections ------------------------------------------------------------

    def add_persistent_peer(self, host: str, port: int) -> None:
        """Keep an outbound connection to (host, port), redialling with back-off."""
        self.dialler.add_persistent(host, port)

    def remove_persistent_peer(self, host: str, port: int) -> bool:
        """Stop redialling (host, port); an open connection stays open."""
        return self.dialler.remove_persistent(host, port)

    async def connect(self, host: str, port: int) -> Peer:
        """Dial (host, port) once; return the Peer (handshake still in progress).

        Raises NetworkError: ``banned``, ``self-connection``,
        ``already-connected``, ``connect-failed``, ``not-running``.
        """
        return await self.dial(host, port, ConnectionKind.MANUAL)

    def disconnect(self, address: Address | str) -> int:
        """Close connections whose remote, dialled or listen address is ``address``."""
        key = _parse_address(address)
        count = 0
        for peer in list(self._peers.values()):
            candidates = {peer.address, peer.target, peer.listen_address}
            if key in {_canonical(a) for a in candidates if a is not None}:
                peer.close("disconnect-requested")
                count += 1
        return count

    def peers(self) -> list[Peer]:
        """Established peers, oldest first."""
        return [p for p in self._peers.values() if p.established and not p.closed]

    def connections(self) -> list[Peer]:
        """Every open connection, established or still handshaking."""
        return [p for p in self._peers.values() if not p.closed]

    async def dial(self, host: str, port: int, kind: ConnectionKind) -> Peer:
        """Open an outbound connection of ``kind`` and start its task."""
        target = (host, port)
        if not self._running:
            raise NetworkError("not-running", "network is not running")
        if self.banlist.is_banned(host):
            raise NetworkError("banned", f"{format_address(host, port)} is banned")
        if self.dialler.is_self(target):
            raise NetworkError("self-connection", f"{format_address(host, port)} is ourselves")
        if self.find_connected(target) is not None or self.dialler.is_dialling(target):
            raise NetworkError(
                "already-connected", f"already connected to {format_address(host, port)}"
            )
        with self.dialler.dialling(target):
            try:
                source = (self.config.bind_host, 0) if self.config.bind_host else None
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port, local_addr=source),
                    self.config.connect_timeout,
                )
            except (TimeoutError, OSError) as exc:
                raise NetworkError(
                    "connect-failed", f"{format_address(host, port)}: {exc or 'timeout'}"
                ) from None
        peer = self._add_peer(reader, writer, Direction.OUTBOUND, kind, target)
        if not self._running or self.banlist.is_banned(peer.host):
            peer.close("banned" if self._running else "shutdown")
            raise NetworkError("banned" if self._running else "not-running", peer.label)
        log.info("peer %s connected (outbound, %s)", peer.label, kind.value)
        return peer

    def find_connected(self, address: Address) -> Peer | None:
        """An open connection to the node listening at ``address``, if any."""
        key = _canonical(address)
        nonce = self.dialler.known_nonce(key)
        for peer in self._peers.values():
            if peer.closed:
                continue
            if peer.target is not None and _canonical(peer.target) == key:
                return peer
            if peer.listen_address is not None and _canonical(peer.listen_address) == key:
                return peer
            if nonce is not None and peer.nonce == nonce:
                return peer
        return None

    def busy_addresses(self) -> set[Address]:
        """Listen addresses we are connected to (canonical), plus our own."""
        busy = set()
        for peer in self._peers.values():
            for address in (peer.target, peer.listen_address):
                if address is not None:
                    busy.add(_canonical(address))
        if self._listen_port:
            for host in ("127.0.0.1", "::1", self.config.listen_host):
                busy.add(_canonical((host, self._listen_port)))
        return busy

    def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Accept or refuse at once a connection made to our listening socket."""
        peername = writer.get_extra_info("peername") or ("?", 0)
        label = format_address(str(peername[0]), int(peername[1]))
        host = str(peername[0])
        cfg = self.config
        noban = PermissionFlag.NOBAN in permissions_for(host, cfg.permissions)
        discouraged = not noban and host in self.discouraged
        inbound = [
            p for p in self._peers.values() if p.direction is Direction.INBOUND and not p.closed
        ]
        group = netgroup(host)
        refusal = None
        if not self._running:
            refusal = "shutting down"
        elif self.banlist.is_banned(host):
            refusal = "banned"
        elif not noban and self._group_count(inbound, group) >= cfg.max_inbound_per_group:
            refusal = f"limit of {cfg.max_inbound_per_group} from address group {group} reached"
        elif len(inbound) >= cfg.max_inbound and discouraged:
            # a discouraged host takes a free slot, never one made by eviction (Core)
            refusal = f"inbound limit {cfg.max_inbound} reached (discouraged host)"
        elif len(inbound) >= cfg.max_inbound and not self._evict_inbound(inbound):
            refusal = f"inbound limit {cfg.max_inbound} reached, no connection to evict"
        if refusal is not None:
            log.info("refused inbound %s: %s", label, refusal)
            writer.transport.abort()
            return
        peer = self._add_peer(
            reader, writer, Direction.INBOUND, ConnectionKind.INBOUND, None, discouraged
        )
        log.info(
            "peer %s connected (inbound%s)", peer.label, ", discouraged" if discouraged else ""
        )

    @staticmethod
    def _group_count(inbound: list[Peer], group: str) -> int:
        """Inbound connections from address group ``group`` that count against its limit."""
        return sum(
            1
            for p in inbound
            if not p.has_permission(PermissionFlag.NOBAN) and netgroup(p.host) == group
        )

    def _evict_inbound(self, inbound: list[Peer]) -> bool:
        """Close one unprotected inbound connection to make room (``slots.py``); False if
        every one is protected."""
        candidates = [
            Candidate(
                id=p.id,
                group=netgroup(p.host),
                connected_seconds=p.connected_seconds,
                established=p.established,
                ping=p.ping_rtt,
                last_block_time=p.last_block_time,
                last_tx_time=p.last_tx_time,
                discouraged=p.discouraged,
            )
            for p in inbound
            if not p.has_permission(PermissionFlag.NOBAN)
        ]
        victim = select_to_evict(candidates, self._eviction_key)
        if victim is None:
            return False
        peer = self._peers[victim]
        log.info("peer %s evicted to make room for a new inbound connection", peer.label)
        self.counters.evictions += 1
        peer.close("evicted")
        return True

    def _add_peer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: Direction,
        kind: ConnectionKind,
        target: Address | None,
        discouraged: bool = False,
    ) -> Peer:
        cfg = self.config
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = Peer(
            peer_id=self._next_id,
            reader=reader,
            writer=writer,
            direction=direction,
            kind=kind,
            magic=self.magic,
            codec=self.codec,
            max_payload=cfg.max_payload,
            max_send_queue=cfg.max_send_queue,
            message_limit=TokenBucket(cfg.max_messages_per_second, cfg.message_burst),
            byte_limit=TokenBucket(cfg.max_bytes_per_second, cfg.byte_burst),
            target=target,
            permissions=permissions_for(str(peername[0]), cfg.permissions),
            discouraged=discouraged,
            payload_limit=self._limits.get,
            value_limit=self._value_limits.get,
        )
        self._next_id += 1
        self._peers[peer.id] = peer
        peer.start()
        task = self.spawn(Session(self, peer).run(), f"peer-{peer.id}")
        self._connection_tasks.add(task)
        task.add_done_callback(self._connection_tasks.discard)
        return peer

    # --- used by the sessions ----------------------------------------------------

    def handler(self, msg_type: str) -> MessageHandler | None:
        """The handler node/ registered for ``msg_type``, if any."""
        return self._handlers.get(msg_type)

    def forget(self, peer: Peer) -> None:
        """Drop a closed connection from the tables, keeping its traffic in the totals."""
        if self._peers.pop(peer.id, None) is not None:
            counters = self.counters
            counters.closed_bytes_in += peer.bytes_in
            counters.closed_bytes_out += peer.bytes_out
            counters.closed_messages_in += peer.messages_in
            counters.closed_messages_out += peer.messages_out
            counters.closed_bytes_in_by_type.update(peer.bytes_in_by_type)
            counters.closed_bytes_out_by_type.update(peer.bytes_out_by_type)

    async def ping(self, peer: Peer, timeout: float | None = None) -> float:
        """Ping ``peer`` now; return the round trip in seconds (see keepalive.ping)."""
        return await ping(peer, timeout if timeout is not None else self.config.ping_timeout)

    # --- misbehaviour and bans ----------------------------------------------------

    def misbehaving(self, peer: Peer, score: int, code: str, message: str = "") -> None:
        """Add ``score`` to the peer's misbehaviour; at BAN_THRESHOLD disconnect it and
        discourage its host, unless the peer has the NOBAN permission (Bitcoin Core:
        ``Misbehaving``, ``MaybeDiscourageAndDisconnect``).  Misbehaviour never bans: a
        ban is the operator's decision (``ban``)."""
        if peer.closed and peer.ban_score >= BAN_THRESHOLD:
            return
        peer.ban_score += score
        log.warning(
            "peer %s misbehaving (+%d = %d): %s%s",
            peer.label,
            score,
            peer.ban_score,
            code,
            f" ({message})" if message and message != code else "",
        )
        if peer.ban_score < BAN_THRESHOLD:
            return
        if peer.has_permission(PermissionFlag.NOBAN):
            log.warning("peer %s disconnected (noban: not discouraged): %s", peer.label, code)
        else:
            self.discouraged.discourage(peer.host, code)
            self.counters.discouraged += 1
            log.warning(
                "peer %s disconnected and discouraged %ds: %s",
                peer.label,
                self.config.discourage_seconds,
                code,
            )
        peer.close(code)

    def is_discouraged(self, host: str) -> bool:
        """``host`` misbehaved lately: evicted first, refused when full, never dialled."""
        return host in self.discouraged

    def is_shunned(self, host: str) -> bool:
        """Never dialled from the address book: banned or discouraged."""
        return self.banlist.is_banned(host) or host in self.discouraged

    def ban(self, host: str, seconds: float | None = None, reason: str = "manual") -> Ban:
        """Ban ``host`` (default ban_seconds) and close every connection from it."""
        entry = self.banlist.ban(host, seconds or self.config.ban_seconds, reason)
        self.counters.bans_issued += 1
        for peer in list(self._peers.values()):
            if canonical_host(peer.host) == entry.host:
                peer.close("banned")
        log.info(
            "host %s banned until %s: %s",
            entry.host,
            time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry.until)),
            reason,
        )
        return entry

    def unban(self, host: str) -> bool:
        """Lift the ban on ``host``; False if it was not banned."""
        lifted = self.banlist.unban(host)
        if lifted:
            log.info("host %s unbanned", canonical_host(host))
        return lifted

    def clear_bans(self) -> int:
        """Lift every ban (admin); returns how many there were."""
        count = len(self.banlist)
        self.banlist.clear()
        log.info("ban list cleared (%d ban(s))", count)
        return count

    def bans(self) -> list[Ban]:
        """Active bans."""
        return self.banlist.list()

    # --- sending ----------------------------------------------------------------

    def broadcast(
        self, msg_type: str, body: Any, exclude: Peer | Iterable[Peer] | None = None
    ) -> int:
        """Send one message to every established peer except ``exclude``; return the count."""
        skip = {exclude} if isinstance(exclude, Peer) else set(exclude or ())
        payload = encode_envelope(self.codec, msg_type, body)
        if len(payload) > self.config.max_payload:
            raise NetworkError("oversized-message", f"{msg_type} of {len(payload)} bytes")
        frame = encode_frame(self.magic, payload)
        return sum(1 for peer in self.peers() if peer not in skip and peer.send_frame(frame))

    # --- metrics ------------------------------------------------------------------

    def traffic_by_type(self) -> tuple[dict[str, int], dict[str, int]]:
        """Frame bytes received and sent by message type since start (closed connections
        included), for metrics."""
        received = Counter(self.counters.closed_bytes_in_by_type)
        sent = Counter(self.counters.closed_bytes_out_by_type)
        for peer in self._peers.values():
            received.update(peer.bytes_in_by_type)
            sent.update(peer.bytes_out_by_type)
        return dict(received), dict(sent)

    def bans_by_reason(self) -> dict[str, int]:
        """Hosts banned now, by the reason of their ban."""
        return dict(Counter(ban.reason for ban in self.banlist.list()))

    def stats(self) -> dict[str, int]:
        """Counters for metrics; traffic totals include closed connections."""
        live = list(self._peers.values())
        established = self.peers()
        counters = self.counters
        return {
            "peers": len(established),
            "inbound": sum(1 for p in established if p.direction is Direction.INBOUND),
            "outbound": sum(1 for p in established if p.direction is Direction.OUTBOUND),
            "connections": len(live),
            "bytes_in": counters.closed_bytes_in + sum(p.bytes_in for p in live),
            "bytes_out": counters.closed_bytes_out + sum(p.bytes_out for p in live),
            "messages_in": counters.closed_messages_in + sum(p.messages_in for p in live),
            "messages_out": counters.closed_messages_out + sum(p.messages_out for p in live),
            "bans": len(self.banlist),
            "bans_issued": counters.bans_issued,
            "discouraged": len(self.discouraged),
            "discouragements": counters.discouraged,
            "evictions": counters.evictions,
            "unknown_messages": counters.unknown_messages,
            "handler_errors": counters.handler_errors,
            "known_addresses": len(self.addrbook),
            "addr_rate_limited": counters.addr_rate_limited,
            "addr_skipped": counters.addr_skipped,
            "addr_relayed": counters.addr_relayed,
        }


def _with_body(handler: Handler) -> MessageHandler:
    """Deliver a message to ``handler(peer, body)``."""

    def deliver(peer: Peer, msg: ReceivedMessage) -> Awaitable[None]:
        return handler(peer, msg.body)

    return deliver


def _with_body_bytes(handler: BytesHandler) -> MessageHandler:
    """Deliver a message to ``handler(peer, body, body_bytes)``."""

    def deliver(peer: Peer, msg: ReceivedMessage) -> Awaitable[None]:
        return handler(peer, msg.body, msg.body_bytes())

    return deliver


def _canonical(address: Address) -> Address:
    return (canonical_host(address[0]), int(address[1]))


def _parse_address(address: Address | str) -> Address:
    if isinstance(address, str):
        host, _, port = address.rpartition(":")
        return _canonical((host.strip("[]"), int(port)))
    return _canonical(address)
