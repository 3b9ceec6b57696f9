"""Headers presync (node/chain/presync.py): a low-work header chain is validated twice
and only released to be stored once it has reached the work asked of it."""

from __future__ import annotations

import dataclasses
import random

import pytest

from node.chain.index import locator, next_bits
from node.chain.presync import (
    HEADER_COMMITMENT_PERIOD,
    REDOWNLOAD_BUFFER_SIZE,
    HeadersPresync,
    Phase,
    _ChainEnd,
    anti_dos_work,
)
from node.consensus.params import REGTEST
from node.consensus.pow import bits_to_target, block_work
from node.primitives.block import BlockHeader
from node.primitives.errors import BlockValidationError
from tests.framework.blocktools import NEUTRAL_STEP, header_chain
from tests.framework.chains import opened_chain

NOW_AHEAD = 10**7  # seconds: a clock far enough ahead that no test header is "too new"


def _now(headers) -> int:
    return headers[-1].timestamp + NOW_AHEAD


def _feed_all(presync: HeadersPresync, headers, batch: int, now: int):
    """Feed ``headers`` in batches (the last one short); the steps, one per batch."""
    steps = []
    for start in range(0, len(headers), batch):
        part = headers[start : start + batch]
        steps.append(presync.feed(part, start + batch < len(headers), now))
        if presync.phase is not Phase.PRESYNC and steps[-1].locator == locator(presync.fork):
            break  # the first pass is over: the chain is asked for again from the fork
    return steps


def test_the_bits_followed_without_an_index_are_the_index_bits(tmp_path, uparams):
    """_ChainEnd computes ASERT bits, median time and work from a few remembered facts:
    along a retargeting chain with uneven spacing they equal the index's, from genesis
    and from a fork point in the middle."""
    rng = random.Random(7)
    with opened_chain(tmp_path / "c", uparams) as chain:
        genesis = chain.tip
        headers = []
        entry = genesis
        for _ in range(60):
            step = rng.choice([NEUTRAL_STEP // 2, NEUTRAL_STEP, 2 * NEUTRAL_STEP, 3 * NEUTRAL_STEP])
            [header] = header_chain(chain, entry, 1, time_step=step)
            headers.append(header)
            entry = chain.index[header.hash]
        for start in (genesis, chain.index[headers[29].hash]):
            end = _ChainEnd.at(start)
            for header in headers[start.height :]:
                parent = chain.index[header.prev_hash]
                assert end.expected_bits(uparams) == next_bits(uparams, parent)
                assert end.median_time_past() == chain.median_time_past(parent)
                end.extend(header, uparams, _now(headers))
                assert end.work == chain.index[header.hash].chain_work
        assert len({h.bits for h in headers}) > 3  # the target did move


def test_a_chain_with_the_work_is_released_in_order_after_the_second_pass(tmp_path, uparams):
    """The first pass stores nothing and asks on from the end of each batch; the second
    holds back REDOWNLOAD_BUFFER_SIZE headers and releases the rest as it goes, then all
    once the chain has the work again: exactly the chain up to where it had the work."""
    with opened_chain(tmp_path / "a", uparams) as source:
        headers = header_chain(source, source.tip, REDOWNLOAD_BUFFER_SIZE + 700)
        goal = source.index[headers[REDOWNLOAD_BUFFER_SIZE + 500].hash]
    with opened_chain(tmp_path / "b", uparams) as chain:
        fork, now = chain.tip, _now(headers)
        presync = HeadersPresync(uparams, fork, goal.chain_work, now, salt=b"s")
        first = _feed_all(presync, headers, 1000, now)
        assert all(step.release == [] for step in first)
        assert [s.locator[0] for s in first[:-1]] == [
            headers[i].hash for i in (999, 1999, 2999, 3999, 4999)
        ]
        assert first[-1].locator == locator(fork)
        assert presync.phase is Phase.REDOWNLOAD and presync.presync_height == goal.height
        assert len(chain.index) == 1  # nothing was added

        released = []
        for start in range(0, len(headers), 1000):
            step = presync.feed(headers[start : start + 1000], True, now)
            released.extend(step.release)
            assert presync.buffered <= REDOWNLOAD_BUFFER_SIZE
            if presync.phase is Phase.DONE:
                break
        assert step.outcome == "stored" and step.locator is None
        assert released == headers[: goal.height]
        chain.accept_headers(released)
        assert chain.best_header.hash == goal.hash


def test_a_chain_that_ends_short_of_the_work_is_dropped(tmp_path):
    with opened_chain(tmp_path / "a", REGTEST) as source:
        headers = header_chain(source, source.tip, 300)
        fork = source.tip
        work = fork.chain_work + block_work(bits_to_target(REGTEST.genesis_bits)) * 301
        presync = HeadersPresync(REGTEST, fork, work, _now(headers))
        steps = _feed_all(presync, headers, 100, _now(headers))
    assert presync.phase is Phase.DONE and steps[-1].outcome == "low-work"
    assert all(step.release == [] for step in steps)
    assert steps[-1].locator is None


def test_another_chain_on_the_second_pass_fails_its_commitment(tmp_path, uparams):
    """A peer that shows a chain with the work, then sends a different one (of no work)
    is caught at the first committed height where the bits differ."""
    count = 2 * HEADER_COMMITMENT_PERIOD
    with opened_chain(tmp_path / "a", uparams) as a, opened_chain(tmp_path / "b", uparams) as b:
        shown, swapped = header_chain(a, a.tip, count), header_chain(b, b.tip, count)
        work = a.best_header.chain_work
        now = _now(shown)
        for salt in (bytes([i]) for i in range(64)):  # one where a committed bit differs
            probe = HeadersPresync(uparams, a.tip, work, now, salt=salt)
            first = next(
                h for h in range(1, count + 1) if h % HEADER_COMMITMENT_PERIOD == probe._offset
            )
            if probe._bit(shown[first - 1]) != probe._bit(swapped[first - 1]):
                break
        presync = HeadersPresync(uparams, a.tip, work, now, salt=salt)
        presync.feed(shown, True, now)
        assert presync.phase is Phase.REDOWNLOAD
        with pytest.raises(BlockValidationError) as caught:
            presync.feed(swapped, True, now)
    assert caught.value.code == "presync-commitment-mismatch"


def test_an_invalid_header_ends_the_presync_with_its_rule(tmp_path, uparams):
    with opened_chain(tmp_path / "a", uparams) as source:
        headers = header_chain(source, source.tip, 20)
        good = headers[10]
        bad = BlockHeader.create(
            1, good.prev_hash, good.merkle_root, good.timestamp, good.bits + 1, 0
        )
        presync = HeadersPresync(uparams, source.tip, 1 << 200, _now(headers))
        with pytest.raises(BlockValidationError) as caught:
            presync.feed(headers[:10] + [bad], True, _now(headers))
    assert caught.value.code in ("bad-diffbits", "high-hash")


def test_a_header_that_does_not_continue_is_a_mismatch(tmp_path):
    with opened_chain(tmp_path / "a", REGTEST) as source:
        headers = header_chain(source, source.tip, 5)
        presync = HeadersPresync(REGTEST, source.tip, 1 << 200, _now(headers))
        with pytest.raises(BlockValidationError) as caught:
            presync.feed(headers[1:], True, _now(headers))
    assert caught.value.code == "presync-mismatch"


def test_the_anti_dos_work_is_144_blocks_below_the_tip_or_the_minimum(tmp_path):
    with opened_chain(tmp_path / "a", REGTEST) as chain:
        header_chain(chain, chain.tip, 200)
        one = block_work(bits_to_target(REGTEST.genesis_bits))
        tip = chain.best_header
        assert anti_dos_work(REGTEST, tip) == tip.chain_work - 144 * one
        assert anti_dos_work(REGTEST, chain.index[REGTEST.genesis_hash]) == 0
        pinned = dataclasses.replace(REGTEST, min_chain_work=10**9)
        assert anti_dos_work(pinned, tip) == 10**9
