"""Natural batching: items submitted while a batch is being processed form the next one.

Each ``enqueue`` returns the future of its own outcome; nothing waits to fill a batch, so an
idle node processes a lone item at once, and a busy one (initial sync, a
flood of transactions) amortises per-batch costs (an LMDB commit, a parallel
signature check) over many items.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar, overload

log = logging.getLogger("obol.node")
TELL_TURN = 0.001  # seconds of outcome callbacks before other tasks get a turn
Item = TypeVar("Item")


class Batcher(Generic[Item]):
    """Queue items; ``process`` takes a list and returns one outcome per item
    (a value, or an exception to raise in that item's submitter).

    With ``finish`` (a plain function of the items and their outcomes) the work is a
    two-stage pipeline: as soon as ``process`` returns for one batch, the items queued
    meanwhile go to ``process`` as the next batch, and only then is the first one
    finished and its submitters told.  ``process`` should then start its work when
    called (return a future, as ``Node.chain_future``), not when first awaited.  The
    chain thread behind ``process`` never waits for the event loop to relay a finished
    batch, and each batch is everything that arrived while the previous one was
    processed."""

    def __init__(
        self,
        process: Callable[[list[Item]], Awaitable[list[Any]]],
        max_batch: int,
        name: str,
        finish: Callable[[list[Item], list[Any]], None] | None = None,
    ) -> None:
        self.process = process
        self.max_batch = max_batch
        self.name = name
        self.finish = finish
        # each item with its future, or with the function to call with its outcome
        self._queue: list[tuple[Item, asyncio.Future | Callable[[Any], None]]] = []
        self._draining = False
        self._drain_task: asyncio.Task[None] | None = None  # the task draining the queue

    @overload
    def enqueue(self, item: Item, on_outcome: None = None) -> asyncio.Future[Any]: ...

    @overload
    def enqueue(self, item: Item, on_outcome: Callable[[Any], None]) -> None: ...

    def enqueue(
        self, item: Item, on_outcome: Callable[[Any], None] | None = None
    ) -> asyncio.Future[Any] | None:
        """Queue ``item`` and return the future of its outcome (no task per item); or, with
        ``on_outcome``, no future: it is called with the outcome (a value or an exception)
        as soon as the batch is done (a flood of P2P transactions needs no future each)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] | None = None
        if on_outcome is None:
            future = loop.create_future()
            self._queue.append((item, future))
        else:
            self._queue.append((item, on_outcome))
        if not self._draining:
            self._draining = True
            # kept: the loop holds only a weak reference to a task
            self._drain_task = loop.create_task(self._drain(), name=self.name)
        return future

    def _start(self) -> tuple[list, asyncio.Future]:
        """Take the next batch off the queue and start processing it."""
        batch = self._queue[: self.max_batch]
        del self._queue[: self.max_batch]
        return batch, asyncio.ensure_future(self.process([item for item, _ in batch]))

    async def _drain(self) -> None:
        running: asyncio.Future | None = None
        try:
            batch, running = self._start()
            while True:
                try:
                    outcomes = await running
                except BaseException as exc:  # an internal error: every waiter hears of it
                    running = None
                    for _, waiter in batch:
                        self._tell(waiter, exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    log.exception("%s: a batch of %d failed", self.name, len(batch))
                    outcomes = None
                running = None
                following = self._start() if self._queue and self.finish is not None else None
                if following is not None:
                    running = following[1]  # processing while this batch is finished
                if outcomes is not None:
                    await self._complete(batch, outcomes)
                if following is None:
                    if not self._queue:
                        return
                    following = self._start()
                batch, running = following
        finally:
            if running is not None:
                running.cancel()
            self._draining = False

    async def _complete(self, batch: list, outcomes: list) -> None:
        """``finish`` the batch (if given), then tell each submitter its outcome; other
        tasks get a turn every TELL_TURN seconds (outcome callbacks may be costly: an
        orphan transaction of 700 inputs costs ~2 ms, and a batch holds thousands)."""
        if self.finish is not None:
            try:
                self.finish([item for item, _ in batch], outcomes)
            except Exception:
                log.exception("%s: finishing a batch of %d failed", self.name, len(batch))
        clock = asyncio.get_running_loop().time
        turn_ends = clock() + TELL_TURN
        for (_, waiter), outcome in zip(batch, outcomes, strict=True):
            self._tell(waiter, outcome)
            if clock() >= turn_ends:
                await asyncio.sleep(0)
                turn_ends = clock() + TELL_TURN

    def _tell(self, waiter: asyncio.Future | Callable[[Any], None], outcome: Any) -> None:
        if not isinstance(waiter, asyncio.Future):
            try:
                waiter(outcome)
            except Exception:
                log.exception("%s: an outcome callback failed", self.name)
        elif waiter.done():  # its submitter gave up (cancelled): nobody to tell
            return
        elif isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
