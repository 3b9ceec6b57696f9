"""Unit tests of permissions, discouragement and inbound eviction (network/)."""

from __future__ import annotations

import pytest

from network.discourage import DiscouragedSet
from network.permissions import (
    LOCAL_PERMISSIONS,
    Permission,
    PermissionFlag,
    decode_grants,
    encode_grants,
    permissions_for,
)
from network.slots import Candidate, netgroup, select_to_evict

KEY = b"k" * 16


def test_permissions_parse_like_core_whitelist():
    """``FLAGS@NETWORK`` as Core's -whitelist; hosts inside the network match."""
    rule = Permission.parse("noban,mempool@10.1.0.0/16")
    assert rule.covers("10.1.200.3") and not rule.covers("10.2.0.1")
    assert rule.covers("::ffff:10.1.0.9") and not rule.covers("::1")
    assert Permission.parse("mempool@::1").covers("::1")
    for bad in ("noban", "nosuch@127.0.0.1", "noban@not-an-ip", "@10.0.0.0/8"):
        with pytest.raises(ValueError):
            Permission.parse(bad)


def test_loopback_has_noban_and_mempool_by_default():
    both = PermissionFlag.NOBAN | PermissionFlag.MEMPOOL
    assert permissions_for("127.0.0.9", LOCAL_PERMISSIONS) == both
    assert permissions_for("::1", LOCAL_PERMISSIONS) == both
    assert permissions_for("10.0.0.1", LOCAL_PERMISSIONS) == PermissionFlag.NONE
    assert decode_grants(encode_grants(both)) == PermissionFlag.MEMPOOL  # noban is not told


def test_discouraged_set_is_bounded_and_expires():
    now = [1000.0]
    bans = DiscouragedSet(60, capacity=3, clock=lambda: now[0])
    for i in range(5):
        bans.discourage(f"10.0.0.{i}", "flood")
    assert len(bans) == 3 and "10.0.0.0" not in bans and "10.0.0.4" in bans
    assert "::ffff:10.0.0.3" in bans
    now[0] += 61
    assert len(bans) == 0 and "10.0.0.4" not in bans


def test_netgroups():
    assert netgroup("10.1.2.3") == netgroup("10.1.200.9") != netgroup("10.2.0.1")
    assert netgroup("2001:db8:1::1") == netgroup("2001:db8:ffff::2") != netgroup("2001:db9::1")
    assert netgroup("127.0.0.1") != netgroup("127.0.0.2")  # each loopback host alone
    assert netgroup("::ffff:10.1.0.1") == netgroup("10.1.9.9")


def candidate(i, group, **fields):
    values = {
        "connected_seconds": 1000.0 - i,
        "established": False,
        "ping": None,
        "last_block_time": 0.0,
        "last_tx_time": 0.0,
        "discouraged": False,
    }
    values.update(fields)
    return Candidate(id=i, group=group, **values)


def test_eviction_takes_the_youngest_of_the_biggest_group():
    """30 silent sockets of one group, 2 of others: the youngest of the big group goes."""
    pool = [candidate(i, "4:10.0.0.0") for i in range(30)]
    pool += [candidate(30, "4:10.1.0.0"), candidate(31, "4:10.2.0.0")]
    assert select_to_evict(pool, KEY) == 29


def test_eviction_protects_block_and_tx_givers_and_low_pings():
    pool = [candidate(i, f"4:10.{i}.0.0") for i in range(32)]
    # the youngest established peers, with what earns protection
    pool[31] = candidate(31, "4:10.31.0.0", established=True, last_block_time=5.0)
    pool[30] = candidate(30, "4:10.30.0.0", established=True, last_tx_time=5.0)
    pool[29] = candidate(29, "4:10.29.0.0", established=True, ping=0.001)
    victims = set()
    rest = list(pool)
    while (victim := select_to_evict(rest, KEY)) is not None:
        victims.add(victim)
        rest = [c for c in rest if c.id != victim]
    assert victims and not victims & {29, 30, 31}


def test_eviction_prefers_discouraged_and_may_find_nobody():
    pool = [candidate(i, f"4:10.{i}.0.0") for i in range(32)]
    pool[0] = candidate(0, "4:10.0.0.0", discouraged=True, connected_seconds=0.0)
    assert select_to_evict(pool, KEY) == 0
    assert select_to_evict(pool[:4], KEY) is None  # all protected by group
