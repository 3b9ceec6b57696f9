"""Natural batching: items queued while a batch runs form the next one; outcomes reach
futures or callbacks, exceptions included."""
from __future__ import annotations

import asyncio

from node.batcher import Batcher


async def test_items_queued_during_a_batch_form_the_next_one():
    batches: list[list[int]] = []
    release = asyncio.Event()

    async def process(items: list[int]) -> list:
        batches.append(items)
        if len(batches) == 1:
            await release.wait()
        return [ValueError(i) if i < 0 else i * 10 for i in items]

    batcher = Batcher(process, max_batch=3, name="test")
    first = batcher.enqueue(1)
    await asyncio.sleep(0)                       # the first batch starts with one item
    told: list = []
    futures = [batcher.enqueue(i) for i in (2, -3)]
    assert batcher.enqueue(4, on_outcome=told.append) is None
    batcher.enqueue(5, on_outcome=told.append)   # over max_batch: a third batch
    release.set()
    assert await first == 10
    assert await futures[0] == 20
    try:
        await futures[1]
        raise AssertionError("expected the item's exception")
    except ValueError as exc:
        assert exc.args == (-3,)
    while len(told) < 2:
        await asyncio.sleep(0)
    assert told == [40, 50]
    assert batches == [[1], [2, -3, 4], [5]]


async def test_a_failing_callback_does_not_stop_the_others(caplog):
    async def process(items: list[int]) -> list:
        return items

    told: list = []

    def broken(_):
        raise RuntimeError("callback bug")

    batcher = Batcher(process, max_batch=10, name="test")
    batcher.enqueue(1, on_outcome=broken)
    future = batcher.enqueue(2)
    batcher.enqueue(3, on_outcome=told.append)
    assert await future == 2
    while not told:
        await asyncio.sleep(0)
    assert told == [3]
    assert "outcome callback failed" in caplog.text


async def test_two_in_flight_starts_the_next_batch_while_one_runs_and_routes_outcomes():
    """in_flight=2: a second batch is handed to ``process`` while the first still runs
    (the chain thread's queue is never empty between batches); at most two run at once,
    and every outcome reaches its own waiter."""
    running: list[list[int]] = []
    most = 0
    gates = {1: asyncio.Event(), 2: asyncio.Event()}

    async def process(items: list[int]) -> list:
        nonlocal most
        running.append(items)
        most = max(most, len(running))
        if items[0] in gates:
            await gates[items[0]].wait()
        running.remove(items)
        return [i * 10 for i in items]

    batcher = Batcher(process, max_batch=2, name="test", in_flight=2)
    first = batcher.enqueue(1)
    await asyncio.sleep(0)
    second = batcher.enqueue(2)
    await asyncio.sleep(0)
    assert running == [[1], [2]]                  # both in flight
    later = [batcher.enqueue(i) for i in (3, 4, 5)]
    gates[2].set()                                # the second finishes first
    assert await second == 20
    gates[1].set()
    assert [await first] + [await f for f in later] == [10, 30, 40, 50]
    assert most == 2
