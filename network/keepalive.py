"""Keep-alive: pinging an established peer, and dropping it when it stops answering.

Every session pings its peer right after the handshake and then every
``ping_interval``; the manager also pings on request (``PeerManager.ping``).
Both use :func:`ping`, which lives here rather than in the session or the
manager so that neither has to import the other to reach it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from .errors import NetworkError
from .peer import Peer
from .protocol import NONCE_BITS, PING

log = logging.getLogger("obol.net")


async def ping(peer: Peer, timeout: float) -> float:
    """Ping ``peer`` and return the round trip in seconds.

    A peer that does not answer within ``timeout`` is disconnected
    (``ping-timeout``, never banned).  While one of our handlers is still busy
    with this peer's messages the wait is extended: our own slowness is not
    the peer's fault.  Raises NetworkError if the peer closes or times out.
    """
    if peer.closed or not peer.established:
        raise NetworkError("not-connected", f"peer {peer.label} is not established")
    nonce = secrets.randbits(NONCE_BITS)
    future = peer.expect_pong(nonce)
    peer.send(PING, [nonce])
    try:
        while True:
            try:
                return await asyncio.wait_for(asyncio.shield(future), timeout)
            except TimeoutError:
                if peer.busy and not peer.closed:
                    continue
                if not peer.closed:
                    log.info("peer %s disconnected: no pong within %.1fs", peer.label, timeout)
                    peer.close("ping-timeout")
                raise NetworkError("ping-timeout", peer.label) from None
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if future.cancelled() and task is not None and not task.cancelling():
                    raise NetworkError("peer-closed", peer.label) from None
                raise
    finally:
        peer.forget_ping(nonce)


async def ping_loop(peer: Peer, interval: float, timeout: float) -> None:
    """Ping ``peer`` at once, then every ``interval`` seconds, until it closes or times out."""
    while not peer.closed:
        try:
            await ping(peer, timeout)
        except NetworkError:
            return
        await asyncio.sleep(interval)
