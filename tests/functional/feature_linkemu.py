"""Emulated WAN links between real network namespaces: what the link really adds.

Two namespaces made by the test (scripts/link_measure.netns_pair, 10.77.0.0/24 on a veth
inside them), links set through scripts/linkrules.py, the real emulator process
(scripts/linkemu.py) and the kernel's NFQUEUE.  Bounds are statistical and generous:
the machine is shared and noisy; docs/testnet.md has the measured figures.

Needs root, iptables and NetfilterQueue (make link-deps); skipped, saying why, otherwise.
"""

from __future__ import annotations

import os
import signal
import statistics
from pathlib import Path

import pytest

from scripts.link_measure import netns_pair, ping_rtts, tcp_throughput, udp_loss
from scripts.linkrules import LinkSpec, chain_rules, missing_tools

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(missing_tools() is not None, reason=str(missing_tools())),
]

WAN = LinkSpec(delay=0.080, jitter=0.010, loss=0.01, rate=10e6)  # each direction


def test_delay_jitter_and_loss_are_what_was_asked(tmp_path: Path) -> None:
    with netns_pair(tmp_path) as pair:
        pair.set(WAN)
        rtts = ping_rtts(pair.a, pair.ip_b, count=80, interval=0.02)
        # each echo and reply may be lost (1% each way): most come back
        assert len(rtts) >= 70
        mean = statistics.fmean(rtts)
        assert 0.155 <= mean <= 0.190, mean  # 2 x 80 ms, plus the loop's ~1 ms
        spread = statistics.quantiles(rtts, n=10)
        assert 0.004 <= spread[-1] - spread[0] <= 0.040, spread  # two draws of +-10 ms
        lost = udp_loss(pair, count=4000, interval=0.0002)
        assert 0.002 <= lost <= 0.025, lost  # 1% of 4000: 40 +- 6.3


def test_rate_limits_a_tcp_transfer(tmp_path: Path) -> None:
    with netns_pair(tmp_path) as pair:
        pair.set(LinkSpec(delay=0.010, rate=10e6))
        bits = tcp_throughput(pair, 2_000_000)
        assert 5e6 <= bits <= 10.3e6, bits  # a veth without the link: gigabits


def test_clear_removes_rules_and_emulator_even_after_a_crash(tmp_path: Path) -> None:
    with netns_pair(tmp_path) as pair:
        pair.set(LinkSpec(delay=0.050))
        assert chain_rules(pair.a) and chain_rules(pair.b)
        assert min(ping_rtts(pair.a, pair.ip_b, count=3, interval=0.05)) >= 0.095
        pid = pair.links.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # the emulator crashes: the links carry nothing
        assert ping_rtts(pair.a, pair.ip_b, count=2, interval=0.05) == []
        pair.links.clear([pair.a, pair.b])
        pair.links.clear([pair.a, pair.b])  # twice: nothing left to remove is fine
        assert chain_rules(pair.a) == [] and chain_rules(pair.b) == []
        assert pair.links.pid() is None
        assert max(ping_rtts(pair.a, pair.ip_b, count=3, interval=0.05)) < 0.02
