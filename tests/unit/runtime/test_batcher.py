"""Natural batching: items queued while a batch runs form the next one; outcomes reach
futures or callbacks, exceptions included."""

from __future__ import annotations

import asyncio

from node.runtime.batcher import Batcher


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
    await asyncio.sleep(0)  # the first batch starts with one item
    told: list = []
    futures = [batcher.enqueue(i) for i in (2, -3)]
    assert batcher.enqueue(4, on_outcome=told.append) is None
    batcher.enqueue(5, on_outcome=told.append)  # over max_batch: a third batch
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


async def test_with_finish_the_next_batch_is_processed_before_the_previous_is_finished():
    """A two-stage pipeline: when ``process`` returns for a batch, everything queued
    meanwhile is handed to ``process`` as the next batch before the first is finished;
    ``finish`` sees each batch's items and outcomes, and its submitters hear of the
    outcomes only after it."""
    events: list = []
    gates = {1: asyncio.Event(), 2: asyncio.Event()}

    async def work(items: list[int]) -> list:
        if items[0] in gates:
            await gates[items[0]].wait()
        return [i * 10 for i in items]

    def process(items: list[int]) -> asyncio.Future:  # starts at the call, as Node.chain_future
        events.append(("process", items))
        return asyncio.ensure_future(work(items))

    def finish(items: list[int], outcomes: list) -> None:
        events.append(("finish", items, outcomes))

    batcher = Batcher(process, max_batch=10, name="test", finish=finish)
    first = batcher.enqueue(1)
    await asyncio.sleep(0)
    second = [batcher.enqueue(i) for i in (2, 3)]
    later: list = []
    gates[1].set()
    assert await first == 10
    # batch [2, 3] was handed to process before [1] was finished and told
    assert events[:3] == [("process", [1]), ("process", [2, 3]), ("finish", [1], [10])]
    batcher.enqueue(4, on_outcome=later.append)  # arrives while [2, 3] is processed
    gates[2].set()
    assert [await f for f in second] == [20, 30]
    while not later:
        await asyncio.sleep(0)
    assert later == [40]
    assert events[3:] == [("process", [4]), ("finish", [2, 3], [20, 30]), ("finish", [4], [40])]


async def test_a_failing_finish_still_tells_every_submitter(caplog):
    async def process(items: list[int]) -> list:
        return items

    def finish(items, outcomes):
        raise RuntimeError("finish bug")

    batcher = Batcher(process, max_batch=10, name="test", finish=finish)
    assert await batcher.enqueue(7) == 7
    assert "finishing a batch of 1 failed" in caplog.text
