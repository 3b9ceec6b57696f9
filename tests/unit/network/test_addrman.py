"""The bucketed address book (issue 14, item 5): one source cannot push out what others
told us, every table stays bounded, select() picks by bucket, old files still load."""

from __future__ import annotations

import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from network import AddrBook
from network.addrman import (
    BUCKET_SIZE,
    FILE_FORMAT_VERSION,
    HORIZON,
    MAX_ENTRIES,
    NEW_BUCKETS_PER_SOURCE_GROUP,
)
from network.addrtable import RandomSet, Table
from network.netaddr import may_learn
from network.slots import netgroup
from tests.framework.hostile import global_host

NOW = 1_700_000_000.0  # unix seconds: the fixed clock of these tests


def clock() -> float:
    return NOW


def filled_by_many_sources(book: AddrBook, rng: random.Random, sources: int = 100) -> set:
    """Fill ``book`` from ``sources`` sources of distinct groups (an hour old each); return
    the addresses stored."""
    for _ in range(sources):
        source = global_host(rng)
        book.add([(global_host(rng), 8333, NOW - 3600) for _ in range(100)], source=source)
    return {(e.host, e.port) for e in book.entries()}


# --- scopes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "source", "learned"),
    [
        ("8.8.8.8", "1.2.3.4", True),  # global from anyone
        ("8.8.8.8", "10.0.0.1", True),
        ("8.8.8.8", "127.0.0.1", True),
        ("10.0.0.5", "10.0.0.1", True),  # private from a private peer: a private network
        ("10.0.0.5", "127.0.0.1", True),  # ... or from a local one
        ("10.0.0.5", "1.2.3.4", False),  # not from the internet
        ("fd00::5", "1.2.3.4", False),
        ("127.0.0.1", "127.0.0.2", True),  # loopback only from loopback: the local testnet
        ("::ffff:127.0.0.1", "127.0.0.2", True),
        ("127.0.0.1", "10.0.0.1", False),
        ("127.0.0.1", "1.2.3.4", False),
        ("127.0.0.1", "local", True),  # our own configuration
        ("0.0.0.0", "127.0.0.1", False),  # of no use to anyone
        ("224.0.0.1", "127.0.0.1", False),
        ("255.255.255.255", "127.0.0.1", False),
        ("203.0.113.7", "127.0.0.1", False),
        ("2001:db8::1", "127.0.0.1", False),
        ("::", "127.0.0.1", False),
        ("example.com", "127.0.0.1", False),
    ],
)
def test_who_may_tell_us_about_which_address(host, source, learned):
    assert may_learn(host, source) is learned
    book = AddrBook(None, clock=clock)
    assert book.add([(host, 8333, NOW)], source=source) == int(learned)


def test_netgroups_unchanged():
    """The address groups of the inbound slots, now shared with the book."""
    assert netgroup("10.1.2.3") == "4:10.1.0.0" and netgroup("2001:db8:1::1") == "6:2001:db8::"
    assert netgroup("127.0.0.2") == "local:127.0.0.2" and netgroup("x") == "name:x"


# --- the flood ------------------------------------------------------------------------------


def test_a_flood_from_one_source_evicts_nothing_other_sources_gave():
    """Issue 14, item 5: ten full `addr` from one peer replaced 9,980 of 10,000 entries.
    Now the flood fills only the few buckets of its own source group and takes no slot
    from an address that is not terrible."""
    rng = random.Random(1)
    book = AddrBook(None, clock=clock, rng=rng)
    others = filled_by_many_sources(book, rng)
    assert len(others) > MAX_ENTRIES // 2
    flood = [global_host(rng) for _ in range(10_000)]
    for start in range(0, len(flood), 1000):
        book.add([(host, 8333, NOW) for host in flood[start : start + 1000]], source="6.6.6.6")
    assert all(address in book for address in others)
    from_flood = sum(1 for host in flood if (host, 8333) in book)
    assert from_flood <= NEW_BUCKETS_PER_SOURCE_GROUP * BUCKET_SIZE
    assert len(book) <= MAX_ENTRIES
    book.check()


def test_select_picks_buckets_not_addresses():
    """A source that filled all its buckets is not picked in proportion to what it sent:
    each non-empty bucket is as likely as another (before: the freshest always won)."""
    rng = random.Random(2)
    book = AddrBook(None, clock=clock, rng=rng)
    honest = {(global_host(rng), 8333) for _ in range(300)}
    for i, address in enumerate(honest):  # each told by a source of its own group
        book.add([(*address, NOW - 3600)], source=f"{i % 200 + 1}.{i // 200}.0.1")
    book.add([(global_host(rng), 8333, NOW) for _ in range(5000)], source="6.6.6.6")
    picks = [book.select() for _ in range(1000)]
    share = sum(1 for p in picks if p not in honest) / len(picks)
    assert share < 0.2, f"the flooding source got {share:.0%} of the picks"


# --- properties -----------------------------------------------------------------------------

SMALL = {"new_buckets": 4, "tried_buckets": 2, "bucket_size": 4}  # collisions everywhere

hosts = st.builds(
    lambda a, b, c, d: f"{a}.{b}.{c}.{d}",
    st.integers(1, 223),
    st.integers(0, 255),
    st.sampled_from([0, 1, 2]),
    st.integers(1, 254),
)
announcements = st.lists(
    st.tuples(hosts, st.integers(0, 3), st.floats(NOW - 2 * HORIZON, NOW + 10**6)),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(hosts, st.integers(1, 3)), min_size=1, max_size=12),
    st.lists(announcements, max_size=6),
)
def test_no_sequence_of_adds_from_b_evicts_what_a_gave(given_by_a, floods):
    """Whatever source B sends (any hosts, ports, times, port 0 included), every address
    source A gave that the book kept is still there, with its slot: B only fills empty
    slots or those of terrible addresses, and the book never outgrows its tables."""
    book = AddrBook(None, clock=clock, rng=random.Random(0), **SMALL)
    book.add([(host, port, NOW) for host, port in given_by_a], source="1.1.1.1")
    kept = {e.address: book.table_of(e.address) for e in book.entries()}
    for flood in floods:
        book.add(flood, source="2.2.2.2")
        book.check()
        assert len(book) <= book.max_entries
    assert {a: book.table_of(a) for a in kept} == kept


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["add", "good", "failed", "attempt", "remove"]),
            hosts,
            st.integers(1, 2),
            st.sampled_from(["1.1.1.1", "2.2.2.2", "10.0.0.1", "127.0.0.1", "local"]),
            st.floats(0, 2 * HORIZON),
        ),
        max_size=80,
    )
)
def test_the_book_stays_consistent_and_bounded(operations):
    """Any mix of operations keeps each address in exactly one slot, its own."""
    now = [NOW]
    book = AddrBook(None, clock=lambda: now[0], rng=random.Random(0), max_failures=3, **SMALL)
    for op, host, port, source, age in operations:
        now[0] += 60
        if op == "add":
            book.add([(host, port, now[0] - age)], source=source)
        else:
            getattr(book, op)((host, port))
        book.check()
        assert len(book) <= book.max_entries
        assert book.table_sizes()[Table.TRIED] <= SMALL["tried_buckets"] * SMALL["bucket_size"]


@given(st.lists(st.tuples(st.booleans(), st.integers(0, 30)), max_size=100))
def test_random_set_holds_what_was_added_and_not_removed(operations):
    members: RandomSet[int] = RandomSet()
    model: set[int] = set()
    for add, value in operations:
        (members.add if add else members.discard)(value)
        (model.add if add else model.discard)(value)
    assert len(members) == len(model) and all(v in members for v in model)
    assert sorted(members.sample(random.Random(0))) == sorted(model)


# --- tried, select, gossip ------------------------------------------------------------------


def test_good_moves_to_tried_and_a_recently_good_occupant_keeps_its_slot():
    """One tried slot: the first good address takes it; a second, while the first was good
    within 4 hours, stays in new; later the second takes it and the first goes back to new."""
    now = [NOW]
    book = AddrBook(None, new_buckets=4, tried_buckets=1, bucket_size=1, clock=lambda: now[0])
    first, second = ("8.8.8.8", 1), ("9.9.9.9", 1)
    book.good(first)
    assert book.table_of(first) is Table.TRIED
    book.add([(*second, NOW)], source="1.1.1.1")
    book.good(second)
    assert book.table_of(second) is Table.NEW and book.get(second).last_success == NOW
    now[0] += 5 * 3600
    book.good(second)
    assert book.table_of(second) is Table.TRIED
    assert book.table_of(first) in (Table.NEW, None)  # back to new unless its slot was taken
    book.check()


def test_select_takes_tried_and_new_at_even_odds_and_never_an_excluded_address():
    book = AddrBook(None, clock=clock, rng=random.Random(3))
    old = [(f"8.8.{i}.1", 8333, NOW - 30 * 86400 + 60) for i in range(10)]
    book.add(old, source="1.1.1.1")
    book.good(("9.9.9.9", 8333))
    picks = [book.select(exclude=[("8.8.5.1", 8333)]) for _ in range(2000)]
    assert ("8.8.5.1", 8333) not in picks and None not in picks
    assert 0.4 < picks.count(("9.9.9.9", 8333)) / len(picks) < 0.6
    everything = [e.address for e in book.entries()]
    assert book.select(exclude=everything) is None
    assert book.select(is_banned=lambda host: True) is None


def test_for_gossip_samples_a_bounded_part_and_tells_nobody_what_they_may_not_learn():
    rng = random.Random(4)
    book = AddrBook(None, clock=clock, rng=rng)
    filled_by_many_sources(book, rng)
    sample = book.for_gossip(1000)
    assert len(sample) == 1000
    assert [e.last_seen for e in sample] == sorted((e.last_seen for e in sample), reverse=True)
    book = AddrBook(None, clock=clock)
    book.add([("10.0.0.7", 8333, NOW), ("127.0.0.9", 8333, NOW)], source="127.0.0.1")
    book.add([("8.8.8.8", 8333, NOW)], source="1.1.1.1")
    everything = {"10.0.0.7", "127.0.0.9", "8.8.8.8"}
    assert {e.host for e in book.for_gossip(100_000, to="127.0.0.2")} == everything
    assert {e.host for e in book.for_gossip(100_000, to="10.0.0.2")} == {"10.0.0.7", "8.8.8.8"}
    assert {e.host for e in book.for_gossip(100_000, to="1.2.3.4")} == {"8.8.8.8"}


def test_a_full_book_costs_an_add_what_an_empty_one_does():
    """No scan: 1,000 new addresses on a full book take about as long as on an empty one
    (before, each `addr` on a full book scored and sorted all 10,000 entries)."""
    rng = random.Random(5)
    full = AddrBook(None, clock=clock, rng=rng)
    filled_by_many_sources(full, rng, sources=200)
    empty = AddrBook(None, clock=clock)

    def cost(book: AddrBook) -> float:
        batch = [(global_host(rng), 8333, NOW) for _ in range(1000)]
        started = time.perf_counter()
        book.add(batch, source=global_host(rng))
        return time.perf_counter() - started

    assert min(cost(full) for _ in range(3)) < 3 * min(cost(empty) for _ in range(3))


# --- persistence ----------------------------------------------------------------------------


def test_save_and_load_keep_the_key_the_tables_and_every_field(tmp_path):
    path = tmp_path / "peers.json"
    rng = random.Random(6)
    book = AddrBook(path, clock=clock, rng=rng)
    filled_by_many_sources(book, rng, sources=20)
    book.good(("9.9.9.9", 8333))
    book.failed(("9.9.9.9", 8333))
    book.save()
    data = json.loads(path.read_text())
    assert data["version"] == FILE_FORMAT_VERSION == 2
    loaded = AddrBook(path, clock=clock)
    assert sorted(loaded.entries(), key=lambda e: e.address) == sorted(
        book.entries(), key=lambda e: e.address
    )
    assert loaded.table_of(("9.9.9.9", 8333)) is Table.TRIED
    loaded.check()


def test_a_version_1_file_is_placed_afresh_and_written_back_as_version_2(tmp_path):
    """The file of the unbucketed book (no key, no tables) loads: reached addresses go to
    tried, the rest to new, addresses their source could not have told us are dropped."""
    path = tmp_path / "peers.json"
    record = {"last_attempt": 0.0, "failures": 0, "port": 8333, "last_seen": NOW - 60}
    addresses = [
        {**record, "host": "8.8.8.8", "last_success": NOW - 60, "source": "local"},
        {**record, "host": "9.9.9.9", "last_success": 0.0, "source": "1.1.1.1"},
        {**record, "host": "127.0.0.1", "last_success": 0.0, "source": "1.1.1.1"},
    ]
    path.write_text(json.dumps({"version": 1, "addresses": addresses}))
    book = AddrBook(path, clock=clock)
    assert book.table_of(("8.8.8.8", 8333)) is Table.TRIED
    assert book.table_of(("9.9.9.9", 8333)) is Table.NEW
    assert ("127.0.0.1", 8333) not in book
    book.save()
    assert json.loads(path.read_text())["version"] == 2
    assert len(AddrBook(path, clock=clock)) == 2


@pytest.mark.parametrize(
    "contents",
    [
        {"version": 3, "addresses": []},
        {"version": 2, "key": "00", "addresses": []},
        {"version": 2, "addresses": [{"host": "8.8.8.8"}]},
        [1, 2, 3],
    ],
)
def test_unknown_or_malformed_files_are_ignored(tmp_path, contents):
    path = tmp_path / "peers.json"
    path.write_text(json.dumps(contents))
    book = AddrBook(path, clock=clock)
    assert len(book) == 0
    assert book.add([("8.8.8.8", 1, NOW)], source="1.1.1.1") == 1
