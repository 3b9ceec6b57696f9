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
                 name: str, in_flight: int = 1) -> None:
        self.process = process
        self.max_batch = max_batch
        self.name = name
        # batches being processed at once: with 2, the next batch is already queued for the
        # chain thread while the event loop hands out the outcomes of the previous one
        self.in_flight = in_flight
        # each item with its future, or with the function to call with its outcome
        self._queue: list[tuple[Item, asyncio.Future | Callable[[Any], None]]] = []
        self._drains = 0          # drain tasks running (at most in_flight)

    def enqueue(self, item: Item, on_outcome: Callable[[Any], None] | None = None
                ) -> asyncio.Future | None:
        """Queue ``item`` and return the future of its outcome (no task per item); or, with
        ``on_outcome``, no future: it is called with the outcome (a value or an exception)
        as soon as the batch is done (a flood of P2P transactions needs no future each)."""
        loop = asyncio.get_running_loop()
        waiter = on_outcome if on_outcome is not None else loop.create_future()
        self._queue.append((item, waiter))
        if self._drains < self.in_flight:
            self._drains += 1
            loop.create_task(self._drain(), name=self.name)
        return waiter if on_outcome is None else None

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch = self._queue[:self.max_batch]
                del self._queue[:self.max_batch]
                try:
                    outcomes = await self.process([item for item, _ in batch])
                except BaseException as exc:  # an internal error: every waiter hears of it
                    for _, waiter in batch:
                        self._tell(waiter, exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    log.exception("%s: a batch of %d failed", self.name, len(batch))
                    continue
                for (_, waiter), outcome in zip(batch, outcomes):
                    self._tell(waiter, outcome)
        finally:
            self._drains -= 1

    def _tell(self, waiter: asyncio.Future | Callable[[Any], None], outcome: Any) -> None:
        if not isinstance(waiter, asyncio.Future):
            try:
                waiter(outcome)
            except Exception:
                log.exception("%s: an outcome callback failed", self.name)
        elif waiter.done():        # its submitter gave up (cancelled): nobody to tell
            return
        elif isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
