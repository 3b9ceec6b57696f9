"""The callables node/ hands the network layer, and the one form the session calls.

node/ registers a :data:`Handler` per message type it owns (or a
:data:`BytesHandler`, which also gets the body's bytes as they came) and
appends :data:`PeerCallback` s to ``on_established``/``on_disconnected``.  At
registration the manager wraps either kind of handler into a
:data:`MessageHandler`, so a session delivers every message the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from .peer import Peer, ReceivedMessage

#: ``await handler(peer, body)`` for each message of a registered type
Handler = Callable[[Peer, Any], Awaitable[None]]
#: ``await handler(peer, body, body_bytes)``: also the body's canonical bytes, as received
BytesHandler = Callable[[Peer, Any, bytes], Awaitable[None]]
#: ``await callback(peer)`` when a peer completes its handshake or disconnects
PeerCallback = Callable[[Peer], Awaitable[None]]
#: what a session calls with each received message of a registered type
MessageHandler = Callable[[Peer, ReceivedMessage], Awaitable[None]]
