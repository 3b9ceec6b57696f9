"""NetCounters: the network layer's running totals, kept by the manager and its sessions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class NetCounters:
    """Running totals since start, for metrics."""

    closed_bytes_in: int = 0  # bytes read by connections that have since closed
    closed_bytes_out: int = 0  # bytes written by connections that have since closed
    closed_messages_in: int = 0  # messages received on connections that have since closed
    closed_messages_out: int = 0  # messages sent on connections that have since closed
    bans_issued: int = 0  # hosts banned by the operator (misbehaviour no longer bans)
    discouraged: int = 0  # peers disconnected for misbehaviour whose host was discouraged
    evictions: int = 0  # inbound connections closed to make room for a new one (slots.py)
    unknown_messages: int = 0  # messages of a type nobody handles
    handler_errors: int = 0  # unexpected exceptions raised by node/ handlers and callbacks
    addr_rate_limited: int = 0  # addresses of `addr` messages dropped unread (gossip.py)
    addr_skipped: int = 0  # `addr` messages not even decoded: their sender had no tokens left
    addr_relayed: int = 0  # addresses passed on to other peers (gossip.py)
    # frame bytes by message type of connections that have since closed
    closed_bytes_in_by_type: Counter[str] = field(default_factory=Counter)
    closed_bytes_out_by_type: Counter[str] = field(default_factory=Counter)
