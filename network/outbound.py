"""Outbound dialling: persistent peers and the address-book slots.

* A persistent peer is redialled whenever its connection drops, after a
  delay that starts at ``reconnect_initial`` and doubles up to
  ``reconnect_max`` while attempts keep failing; a completed handshake resets
  it.  Persistent and manual connections do not count against max_outbound.
* With ``discover`` on, up to ``max_outbound`` automatic connections are kept
  to addresses chosen by the address book.  The dialler wakes when addresses
  are learned or a connection closes, and otherwise every
  ``outbound_retry_interval``.
* An address found to be ourselves (our own nonce came back) is never dialled
  again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Iterator
from typing import Any, Protocol

from .addrman import AddrBook
from .bans import BanList
from .config import NetConfig
from .errors import NetworkError
from .peer import Address, ConnectionKind, Direction, Peer
from .protocol import canonical_host, format_address

log = logging.getLogger("obol.net")

#: close reasons after which a dialled address is not worth retrying automatically
FORGET_REASONS = frozenset({"wrong-network", "obsolete-version", "self-connection"})


def _key(address: Address) -> Address:
    return (canonical_host(address[0]), int(address[1]))


class DialHost(Protocol):
    """What a Dialler needs of its owner (the PeerManager): exactly this, so the two
    modules do not import each other and a test can dial through a stand-in."""

    @property
    def config(self) -> NetConfig: ...

    @property
    def running(self) -> bool: ...

    @property
    def addrbook(self) -> AddrBook: ...

    @property
    def banlist(self) -> BanList: ...

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...

    def is_shunned(self, host: str) -> bool: ...  # banned or discouraged: never dialled

    def connections(self) -> list[Peer]: ...

    def find_connected(self, address: Address) -> Peer | None: ...

    def busy_addresses(self) -> set[Address]: ...

    async def dial(self, host: str, port: int, kind: ConnectionKind) -> Peer: ...


class Dialler:
    """Keeps the outbound connections of one PeerManager."""

    def __init__(self, manager: DialHost) -> None:
        self._manager = manager  # owner: configuration, address book, bans, the dial itself
        self._persistent: dict[Address, Address] = {}  # canonical key -> (host, port) as given
        self._persistent_tasks: dict[Address, asyncio.Task[None]] = {}  # key -> redial loop
        self._dialling: set[Address] = set()  # canonical targets with a dial in progress
        self._automatic_pending: set[Address] = set()  # address-book dials in progress
        self._self_addresses: set[Address] = set()  # canonical addresses that are ourselves
        self._nonces: dict[Address, int] = {}  # canonical target -> nonce of the node seen there
        self._wake = asyncio.Event()  # something changed: reconsider the outbound slots
        self._started = False

    def start(self) -> None:
        self._started = True
        for key in self._persistent:
            self._start_persistent(key)
        if self._manager.config.discover:
            self._manager.spawn(self._slot_loop(), "net-dialler")

    def wake(self) -> None:
        """Reconsider the outbound slots now."""
        self._wake.set()

    # --- bookkeeping used by the manager ------------------------------------------

    def is_self(self, address: Address) -> bool:
        return _key(address) in self._self_addresses

    def is_dialling(self, address: Address) -> bool:
        return _key(address) in self._dialling

    @contextlib.contextmanager
    def dialling(self, address: Address) -> Iterator[None]:
        """Mark ``address`` as being dialled for the duration of the block."""
        key = _key(address)
        self._dialling.add(key)
        try:
            yield
        finally:
            self._dialling.discard(key)

    def known_nonce(self, address: Address) -> int | None:
        """Nonce of the node last met at ``address`` (to spot it behind another address)."""
        return self._nonces.get(_key(address))

    def self_connection(self, peer: Peer) -> None:
        """We met our own nonce: drop both ends of the link and never redial that address."""
        ends = [peer] + [
            other
            for other in self._manager.connections()
            if other is not peer
            and other.direction is Direction.OUTBOUND
            and other.local_address == peer.address
        ]
        for end in ends:
            if end.target is not None:
                for address in (end.target, end.listen_address):
                    if address is not None:
                        self._self_addresses.add(_key(address))
                        self._manager.addrbook.remove(address)
            if not end.closed:
                log.info("peer %s disconnected: connected to ourselves", end.label)
                end.close("self-connection")

    def handshake_succeeded(self, peer: Peer) -> None:
        """An outbound handshake completed: the address is good."""
        assert peer.target is not None and peer.listen_address is not None
        if peer.nonce is not None:
            self._nonces[_key(peer.target)] = peer.nonce
            self._nonces[_key(peer.listen_address)] = peer.nonce
        self._manager.addrbook.good(peer.listen_address)

    def connection_closed(self, peer: Peer) -> None:
        """Account a closed connection in the address book and wake the slot loop."""
        if peer.direction is Direction.OUTBOUND and not peer.established and peer.target:
            book = self._manager.addrbook
            if peer.close_reason in FORGET_REASONS:
                book.remove(peer.target)
            elif peer.kind is ConnectionKind.AUTOMATIC and peer.close_reason != "shutdown":
                book.failed(peer.target)
        self._wake.set()

    # --- persistent peers -----------------------------------------------------------

    def add_persistent(self, host: str, port: int) -> None:
        key = _key((host, port))
        if key in self._persistent:
            return
        self._persistent[key] = (host, port)
        if self._started and self._manager.running:
            self._start_persistent(key)

    def remove_persistent(self, host: str, port: int) -> bool:
        key = _key((host, port))
        if self._persistent.pop(key, None) is None:
            return False
        task = self._persistent_tasks.pop(key, None)
        if task is not None:
            task.cancel()
        return True

    def _start_persistent(self, key: Address) -> None:
        host, port = self._persistent[key]
        self._persistent_tasks[key] = self._manager.spawn(
            self._persistent_loop(key), f"persistent-{format_address(host, port)}"
        )

    async def _persistent_loop(self, key: Address) -> None:
        """Keep one connection to a configured peer, redialling with back-off."""
        cfg = self._manager.config
        host, port = self._persistent[key]
        label = format_address(host, port)
        delay = cfg.reconnect_initial
        while self._manager.running and key in self._persistent:
            existing = self._manager.find_connected((host, port))
            if existing is not None:
                await existing.wait_closed()
                continue
            try:
                peer = await self._manager.dial(host, port, ConnectionKind.PERSISTENT)
            except NetworkError as exc:
                if exc.code == "self-connection":
                    log.info("persistent peer %s is ourselves: not redialling", label)
                    return
                log.debug("persistent peer %s: %s; retrying in %.1fs", label, exc, delay)
            else:
                await peer.wait_closed()
                if peer.close_reason == "self-connection":
                    log.info("persistent peer %s is ourselves: not redialling", label)
                    return
                if peer.established:
                    delay = cfg.reconnect_initial
                log.info(
                    "persistent peer %s dropped (%s); redialling in %.1fs",
                    label,
                    peer.close_reason,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, cfg.reconnect_max)

    # --- address-book slots -----------------------------------------------------------

    def _automatic_count(self) -> int:
        open_automatic = sum(
            1 for p in self._manager.connections() if p.kind is ConnectionKind.AUTOMATIC
        )
        return open_automatic + len(self._automatic_pending)

    async def _slot_loop(self) -> None:
        """Fill free automatic outbound slots from the address book."""
        manager = self._manager
        cfg = manager.config
        while manager.running:
            self._wake.clear()
            while self._automatic_count() < cfg.max_outbound:
                exclude = (
                    manager.busy_addresses()
                    | self._dialling
                    | self._self_addresses
                    | self._automatic_pending
                )
                candidate = manager.addrbook.select(exclude=exclude, is_banned=manager.is_shunned)
                if candidate is None:
                    break
                manager.addrbook.attempt(candidate)
                self._automatic_pending.add(candidate)
                manager.spawn(self._dial_automatic(candidate), f"dial-{format_address(*candidate)}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), cfg.outbound_retry_interval)

    async def _dial_automatic(self, address: Address) -> None:
        started = time.monotonic()
        try:
            await self._manager.dial(*address, ConnectionKind.AUTOMATIC)
        except NetworkError as exc:
            log.debug(
                "dial %s failed after %.2fs: %s",
                format_address(*address),
                time.monotonic() - started,
                exc,
            )
            if exc.code == "connect-failed":
                self._manager.addrbook.failed(address)
        finally:
            self._automatic_pending.discard(address)
            self._wake.set()
