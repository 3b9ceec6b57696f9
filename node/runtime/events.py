"""A small publish/subscribe hub for node events (new tips, reorgs, mempool entries).

Each subscriber gets its own bounded asyncio queue; a subscriber that does not
keep up loses its oldest events rather than slowing the node down.
"""

from __future__ import annotations

import asyncio
from typing import Any

SUBSCRIBER_QUEUE = 1000  # events buffered per subscriber


class EventHub:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue] = set()
        self.subscriptions = 0  # subscribers ever added (WebSocket clients), for metrics
        self.published = 0  # events published
        self.dropped = 0  # events a slow subscriber lost (its queue was full)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        self.subscriptions += 1
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    @property
    def listened(self) -> bool:
        """True if anyone subscribes (publishers may skip building events nobody reads)."""
        return bool(self._subscribers)

    def publish(self, event: dict[str, Any]) -> None:
        self.published += 1
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)
