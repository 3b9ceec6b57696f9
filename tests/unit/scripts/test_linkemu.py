"""The link emulator's model (scripts/linkemu.py) and the link rules' units and rules."""

from __future__ import annotations

import asyncio
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scripts.linkemu import LINK_BUFFER_BYTES, LINK_MAX_PACKETS, Emulator, Link, LinkParams
from scripts.linkrules import Link as RuleLink
from scripts.linkrules import (
    LinkError,
    LinkSpec,
    link_rules,
    parse_duration,
    parse_loss,
    parse_rate,
)

arrivals = st.lists(
    st.tuples(st.floats(0, 0.05), st.integers(40, 1500)), min_size=1, max_size=60
)  # (gap before the packet in seconds, its size in bytes)
params = st.builds(
    LinkParams,
    delay=st.floats(0, 0.3),
    jitter=st.floats(0, 0.05),
    loss=st.just(0.0),
    rate=st.sampled_from([0.0, 1e5, 1e6, 1e7]),
)


def run(link: Link, gaps_sizes: list[tuple[float, int]]) -> list[tuple[float, float | None, int]]:
    now, out = 0.0, []
    for gap, size in gaps_sizes:
        now += gap
        out.append((now, link.admit(now, size), size))
    return out


@given(params, arrivals)
def test_a_link_is_fifo_and_never_early(p: LinkParams, gaps_sizes) -> None:
    link = Link(p, random.Random(1))
    last = 0.0
    for now, due, size in run(link, gaps_sizes):
        if due is None:  # tail drop: only a rate-limited link's buffer overflows
            assert p.rate > 0
            continue
        assert due >= last
        serialize = size * 8 / p.rate if p.rate else 0.0
        assert due >= now + serialize + max(0.0, p.delay - p.jitter) - 1e-9
        last = due


@given(st.floats(0, 0.3), arrivals)
def test_without_jitter_or_rate_every_packet_takes_the_delay(delay: float, gaps_sizes) -> None:
    link = Link(LinkParams(delay, 0.0, 0.0, 0.0), random.Random(1))
    for now, due, _ in run(link, gaps_sizes):
        assert due == pytest.approx(now + delay)


def test_a_rate_limited_link_serializes_and_drops_beyond_its_buffer() -> None:
    rate = 1e6
    link = Link(LinkParams(0.0, 0.0, 0.0, rate), random.Random(1))
    dues = [link.admit(0.0, 1000) for _ in range(LINK_BUFFER_BYTES // 1000 + 10)]
    kept = [d for d in dues if d is not None]
    assert len(kept) == LINK_BUFFER_BYTES // 1000
    assert kept == pytest.approx([(i + 1) * 1000 * 8 / rate for i in range(len(kept))])


def test_a_link_holds_at_most_its_packet_bound() -> None:
    link = Link(LinkParams(1.0, 0.0, 0.0, 0.0), random.Random(1))
    for _ in range(LINK_MAX_PACKETS):
        link.held.append((1.0, Record([], None)))
    assert link.admit(0.0, 100) is None


class Record:
    """A packet that notes its verdict (the kernel's side is tested in feature_linkemu)."""

    def __init__(
        self, verdicts: list[tuple[str, object]], tag: object, done: asyncio.Event | None = None
    ) -> None:
        self.verdicts, self.tag, self.done = verdicts, tag, done

    def accept(self) -> None:
        self.verdicts.append(("accept", self.tag))
        if self.done is not None:
            self.done.set()

    def drop(self) -> None:
        self.verdicts.append(("drop", self.tag))


async def test_the_emulator_releases_in_order_after_the_delay() -> None:
    loop = asyncio.get_running_loop()
    emu = Emulator(loop, seed=7)
    link = Link(LinkParams(0.02, 0.015, 0.0, 0.0), random.Random(3))
    verdicts: list[tuple[str, object]] = []
    done = asyncio.Event()
    start = loop.time()
    for i in range(50):
        emu.enqueue(link, Record(verdicts, i, done if i == 49 else None), 100)
    await asyncio.wait_for(done.wait(), 5.0)
    assert verdicts == [("accept", i) for i in range(50)]
    assert loop.time() - start >= 0.02 - 0.015


async def test_a_lossy_link_loses_about_its_share() -> None:
    emu = Emulator(asyncio.get_running_loop(), seed=7)
    link = Link(LinkParams(0.0, 0.0, 0.25, 0.0), random.Random(3))
    verdicts: list[tuple[str, object]] = []
    for i in range(2000):
        emu.enqueue(link, Record(verdicts, i), 100)
    assert 400 < link.counters.lost < 600
    assert all(v == "drop" for v, _ in verdicts)


@pytest.mark.parametrize(
    ("text", "seconds"), [("80ms", 0.08), ("1.5s", 1.5), ("250us", 0.00025), ("10", 0.01)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "bits"), [("10mbit", 1e7), ("512kbit", 512e3), ("1gbit", 1e9), ("2mbps", 16e6)]
)
def test_rates(text: str, bits: float) -> None:
    assert parse_rate(text) == pytest.approx(bits)


def test_loss_and_bad_units() -> None:
    assert parse_loss("1%") == pytest.approx(0.01)
    assert parse_loss("0.25") == pytest.approx(0.25)
    for bad in (
        lambda: parse_loss("101%"),
        lambda: parse_duration("fast"),
        lambda: parse_rate("x"),
    ):
        with pytest.raises(LinkError):
            bad()


def test_one_queue_rule_per_link_that_does_something() -> None:
    links = [
        RuleLink("nb", "10.0.0.1", "10.0.0.2", LinkSpec(delay=0.08)),
        RuleLink("nb", "10.0.0.3", "10.0.0.2", LinkSpec()),
    ]
    assert link_rules(links) == [
        ["-s", "10.0.0.1/32", "-d", "10.0.0.2/32", "-j", "NFQUEUE", "--queue-num", "0"]
    ]
