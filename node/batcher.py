"""Natural batching: items submitted while a batch is being processed form the next one.

Each ``enqueue`` returns the future of its own outcome; nothing waits to fill a batch, so an
idle node processes a lone item at once, and a busy one (initial sync, a
flood of transactions) amortises per-batch costs (an LMDB commit, a parallel
signature check) over many items.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Generic, TypeVar

log = logging.getLogger("obol.node")
Item = TypeVar("Item")


class Batcher(Generic[Item]):
    """Queue items; ``process`` takes a list and returns one outcome per item
    (a value, or an exception to raise in that item's submitter)."""

    def __init__(self, process: Callable[[list[Item]], Awaitable[list[Any]]], max_batch: int,
                 name: str) -> None:
        self.process = process
        self.max_batch = max_batch
        self.name = name
        self._queue: list[tuple[Item, asyncio.Future]] = []
        self._draining = False

    def enqueue(self, item: Item) -> asyncio.Future:
        """Queue ``item`` and return the future of its outcome (no task per item)."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.append((item, future))
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain(), name=self.name)
        return future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[:self.max_batch]
                del self._queue[:self.max_batch]
                try:
                    outcomes = await self.process([item for item, _ in batch])
                except BaseException as exc:  # an internal error: every waiter hears of it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    log.exception("%s: a batch of %d failed", self.name, len(batch))
                    continue
                for (_, future), outcome in zip(batch, outcomes):
                    if future.done():
                        continue
                    if isinstance(outcome, BaseException):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            self._draining = False
