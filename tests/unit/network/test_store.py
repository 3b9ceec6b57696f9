"""Ban list, address book and token bucket, without sockets."""

from __future__ import annotations

import json
import random

from network import AddrBook, BanList
from network.ratelimit import TokenBucket


class Clock:
    """A settable wall clock."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# --- ban list ------------------------------------------------------------------------


def test_ban_expires(tmp_path):
    """A ban holds until its expiry, then drops out of the list by itself."""
    clock = Clock()
    bans = BanList(tmp_path / "bans.json", clock=clock)
    bans.ban("10.0.0.1", 60, "bad-checksum")
    assert bans.is_banned("10.0.0.1")
    assert [(b.host, b.reason) for b in bans.list()] == [("10.0.0.1", "bad-checksum")]
    clock.now += 61
    assert not bans.is_banned("10.0.0.1")
    assert bans.list() == []


def test_ban_is_per_host_and_canonical(tmp_path):
    """Bans cover the host whatever the port, and IPv4-mapped IPv6 text maps to IPv4."""
    bans = BanList(None)
    bans.ban("::ffff:10.0.0.2", 100, "flood")
    assert bans.is_banned("10.0.0.2")
    assert not bans.is_banned("10.0.0.3")
    bans.ban("2001:DB8::1", 100, "x")
    assert bans.is_banned("2001:db8:0::1")


def test_ban_persists_atomically(tmp_path):
    """Bans survive a reload from the JSON file; unban and clear persist too."""
    path = tmp_path / "sub" / "bans.json"
    clock = Clock()
    bans = BanList(path, clock=clock)
    bans.ban("10.0.0.1", 3600, "bad-magic")
    bans.ban("10.0.0.2", 3600, "manual")
    assert json.loads(path.read_text())["version"] == 1
    assert not list(path.parent.glob("*.tmp"))
    again = BanList(path, clock=clock)
    assert {b.host for b in again.list()} == {"10.0.0.1", "10.0.0.2"}
    assert again.unban("10.0.0.1") and not again.unban("10.0.0.1")
    assert {b.host for b in BanList(path, clock=clock).list()} == {"10.0.0.2"}
    again.clear()
    assert BanList(path, clock=clock).list() == []


def test_ban_keeps_longer_ban(tmp_path):
    """Re-banning for a shorter time does not shorten an existing ban."""
    clock = Clock()
    bans = BanList(None, clock=clock)
    long = bans.ban("10.0.0.1", 1000, "a")
    assert bans.ban("10.0.0.1", 10, "b").until == long.until


def test_corrupt_ban_file_is_ignored(tmp_path):
    """An unreadable ban file starts an empty list instead of crashing the node."""
    path = tmp_path / "bans.json"
    path.write_text("{not json")
    assert BanList(path).list() == []


# --- address book ------------------------------------------------------------------------


def test_addrbook_add_and_skip_unusable():
    """Only IP literals with a non-zero port are learned; last_seen only moves forward."""
    clock = Clock()
    book = AddrBook(None, clock=clock)
    added = book.add(
        [
            ("10.0.0.1", 8333, clock.now - 100),
            ("example.com", 1, 0),
            ("10.0.0.2", 0, 0),
            ("::1", 9000, clock.now),
        ],
        source="127.0.0.2",  # a local peer may tell us about private and loopback addresses
    )
    assert added == 2 and len(book) == 2
    book.add([("10.0.0.1", 8333, clock.now - 500)], source="x")
    assert book.get(("10.0.0.1", 8333)).last_seen == clock.now - 100
    book.add([("10.0.0.1", 8333, clock.now + 10**6)], source="x")  # future: clamped
    assert book.get(("10.0.0.1", 8333)).last_seen == clock.now


def test_addrbook_select_prefers_recently_good_and_skips_excluded_banned():
    """select returns the recently good address and never an excluded or banned one.

    select draws at random (Core's Select) and may miss the one usable address of a
    book in 100 draws: the key and the draws are fixed, so the test is deterministic."""
    clock = Clock()
    book = AddrBook(None, clock=clock, rng=random.Random(1), key=bytes(32))
    old = [(f"10.0.1.{i}", 8333, clock.now - 30 * 86400) for i in range(10)]
    book.add(old, source="gossip")
    book.add([("10.0.0.9", 8333, clock.now)], source="gossip")
    book.good(("10.0.0.9", 8333))
    ranked = book.entries()
    assert ranked[0].address == ("10.0.0.9", 8333)
    assert book.select() in {e.address for e in ranked[:3]}
    assert book.select(exclude=[e.address for e in ranked if e.host != "10.0.1.5"]) == (
        "10.0.1.5",
        8333,
    )
    assert (
        book.select(
            exclude=[e.address for e in ranked if e.host != "10.0.1.5"],
            is_banned=lambda h: h == "10.0.1.5",
        )
        is None
    )


def test_addrbook_failure_backoff_and_forgetting():
    """Failures delay the next attempt exponentially; too many in a row forget the address."""
    clock = Clock()
    book = AddrBook(None, clock=clock, retry_base=10, retry_max=100, max_failures=4)
    address = ("10.0.0.1", 8333)
    book.add([(*address, clock.now)], source="x")
    book.failed(address)
    assert book.select() is None
    clock.now += 10
    assert book.select() == address
    book.failed(address)
    clock.now += 19
    assert book.select() is None
    clock.now += 1
    assert book.select() == address
    book.good(address)
    assert book.get(address).failures == 0
    for _ in range(4):
        book.failed(address)
    assert address not in book


def test_addrbook_full_slot_keeps_its_occupant_unless_terrible():
    """The book holds at most one address per slot: a newcomer whose slot is taken is
    dropped, unless the occupant is terrible (here: unseen for over 30 days)."""
    clock = Clock()
    book = AddrBook(None, new_buckets=1, tried_buckets=1, bucket_size=1, clock=clock)
    assert book.max_entries == 2
    book.add([("10.0.0.1", 1, clock.now - 31 * 86400)], source="x")
    book.add([(f"10.0.0.{i}", 1, clock.now - i * 3600) for i in range(2, 11)], source="x")
    assert len(book) == 1
    assert book.get(("10.0.0.2", 1)) is not None  # took the terrible one's slot, kept it


def test_addrbook_gossip_and_persistence(tmp_path):
    """for_gossip returns fresh, non-failing addresses; save/load keeps every field."""
    clock = Clock()
    path = tmp_path / "peers.json"
    book = AddrBook(path, clock=clock)
    book.add(
        [
            ("10.0.0.1", 1, clock.now),
            ("10.0.0.2", 2, clock.now - 60 * 86400),
            ("10.0.0.3", 3, clock.now - 10),
        ],
        source="x",
    )
    for _ in range(3):
        book.failed(("10.0.0.3", 3))
    assert [e.host for e in book.for_gossip(10)] == ["10.0.0.1"]
    book.save()
    loaded = AddrBook(path, clock=clock)
    assert sorted(loaded.entries(), key=lambda e: e.host) == sorted(
        book.entries(), key=lambda e: e.host
    )


# --- token bucket -------------------------------------------------------------------------


def test_token_bucket_burst_and_refill():
    """A bucket allows its burst at once, then refills at its rate."""
    clock = Clock(0.0)
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert all(bucket.consume() for _ in range(5))
    assert not bucket.consume()
    clock.now += 0.1
    assert bucket.consume() and not bucket.consume()
    clock.now += 100
    assert bucket.tokens == 5
