"""Measure what an emulated link really does, between two namespaces made for the purpose.

Used by the ``linkemu`` benchmark section (scripts/bench_wan.py) and by
tests/functional/feature_linkemu.py: a pair of fresh network namespaces joined by a veth
(addresses in 10.77.0.0/24, inside those namespaces only), links set through
scripts/linkrules.py, and

* RTT by ``ping`` (ICMP echo, both directions of the link),
* one-way loss by counting UDP datagrams sent from one namespace and received in the other,
* throughput by a TCP transfer from one namespace to the other,
* the emulator's sustained packets/s and its CPU, by a UDP flood through a delayed link.

Sockets are opened inside a namespace (scripts/linkemu.in_netns) and keep it, so one
process measures both ends.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .linkemu import in_netns
from .linkrules import Link, LinkSet, LinkSpec

PAIR_NET = "10.77.0"  # the veth pair's addresses: 10.77.0.1 (a) and 10.77.0.2 (b)
UDP_PORT = 9077  # the receiver's port in namespace b
TCP_PORT = 9078
PING_TIMEOUT = 120.0  # seconds for one ping run


@dataclass(frozen=True)
class Pair:
    """Two namespaces joined by a veth, and the link set between them."""

    a: str  # namespace a's name
    b: str  # namespace b's name
    ip_a: str  # a's address
    ip_b: str  # b's address
    links: LinkSet  # the emulator and its files

    def set(self, spec: LinkSpec) -> None:
        """Both directions a->b and b->a get ``spec``."""
        self.links.apply(
            [Link(self.b, self.ip_a, self.ip_b, spec), Link(self.a, self.ip_b, self.ip_a, spec)],
            [self.a, self.b],
        )


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def netns_pair(home: Path, tag: str = "") -> Iterator[Pair]:
    """Make the pair (and remove it, rules and emulator, whatever happens)."""
    a, b = f"obol-lm{tag}{os.getpid()}a", f"obol-lm{tag}{os.getpid()}b"
    ip_a, ip_b = f"{PAIR_NET}.1", f"{PAIR_NET}.2"
    pair = Pair(a, b, ip_a, ip_b, LinkSet(home))
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        _ip("link", "add", "lm0", "netns", a, "type", "veth", "peer", "name", "lm1", "netns", b)
        for ns, dev, ip in ((a, "lm0", ip_a), (b, "lm1", ip_b)):
            _ip("-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        pair.links.clear([a, b])
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def ping_rtts(netns: str, dst: str, count: int, interval: float) -> list[float]:
    """Round-trip times (seconds) of the echoes answered, by ``ping`` in ``netns``."""
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, "ping", "-U", "-n", "-c", str(count), "-i", f"{interval:g}"]
        + ["-W", "2", dst],
        capture_output=True,
        text=True,
        timeout=PING_TIMEOUT,
    )
    return [float(ms) / 1000 for ms in re.findall(r"time=([0-9.]+) ms", proc.stdout)]


def socket_in(netns: str, kind: int) -> socket.socket:
    with in_netns(netns):
        return socket.socket(socket.AF_INET, kind)


def udp_loss(pair: Pair, count: int, interval: float) -> float:
    """The fraction of ``count`` datagrams a->b that did not arrive."""
    rx = socket_in(pair.b, socket.SOCK_DGRAM)
    tx = socket_in(pair.a, socket.SOCK_DGRAM)
    with rx, tx:
        rx.bind((pair.ip_b, UDP_PORT))
        rx.settimeout(0.5)
        seen: set[int] = set()

        def receive() -> None:
            with contextlib.suppress(TimeoutError):
                while len(seen) < count:
                    seen.add(int(rx.recv(64)))

        reader = threading.Thread(target=receive)
        reader.start()
        for i in range(count):
            tx.sendto(str(i).encode(), (pair.ip_b, UDP_PORT))
            time.sleep(interval)  # paces the sender (not a wait for anything)
        reader.join()
    return 1 - len(seen) / count


def tcp_throughput(pair: Pair, nbytes: int) -> float:
    """Bits per second of one TCP transfer a->b of ``nbytes`` (first byte to last)."""
    server = socket_in(pair.b, socket.SOCK_STREAM)
    client = socket_in(pair.a, socket.SOCK_STREAM)
    result: list[float] = []
    with server, client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((pair.ip_b, TCP_PORT))
        server.listen(1)

        def receive() -> None:
            conn, _ = server.accept()
            with conn:
                got = len(conn.recv(65536))
                start = time.monotonic()
                while got < nbytes:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    got += len(chunk)
                result.append(got * 8 / (time.monotonic() - start))

        reader = threading.Thread(target=receive)
        reader.start()
        client.connect((pair.ip_b, TCP_PORT))
        client.sendall(b"\0" * nbytes)
        client.shutdown(socket.SHUT_WR)
        reader.join(timeout=120)
    return result[0] if result else 0.0


@dataclass(frozen=True)
class Flood:
    """A UDP flood a->b through a delayed link: what the emulator sustained."""

    sent_pps: float  # datagrams per second offered
    received_pps: float  # datagrams per second that arrived
    cpu_share: float  # the emulator's CPU seconds per second of the flood
    received: int  # datagrams that arrived


def udp_flood(pair: Pair, seconds: float, size: int = 64) -> Flood:
    """Send datagrams a->b as fast as one socket can for ``seconds``; count arrivals."""
    rx = socket_in(pair.b, socket.SOCK_DGRAM)
    tx = socket_in(pair.a, socket.SOCK_DGRAM)
    status0 = pair.links.status() or {}
    with rx, tx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        rx.bind((pair.ip_b, UDP_PORT + 1))
        rx.settimeout(1.0)
        got = [0]

        def receive() -> None:
            with contextlib.suppress(TimeoutError):
                while True:
                    rx.recv(2048)
                    got[0] += 1

        reader = threading.Thread(target=receive)
        reader.start()
        payload = b"x" * size
        sent = 0
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            for _ in range(100):
                with contextlib.suppress(OSError):
                    tx.sendto(payload, (pair.ip_b, UDP_PORT + 1))
                    sent += 1
        elapsed = time.monotonic() - start
        reader.join()
    status1 = fresh_status(pair.links, time.time())
    cpu = status1.get("cpu_seconds", 0.0) - status0.get("cpu_seconds", 0.0)
    return Flood(sent / elapsed, got[0] / elapsed, cpu / elapsed, got[0])


def fresh_status(links: LinkSet, after: float, timeout: float = 10.0) -> dict[str, Any]:
    """The emulator's status as written after wall-clock time ``after`` (every second)."""
    deadline = time.monotonic() + timeout
    while True:
        status = links.status() or {}
        if status.get("time", 0.0) > after or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def summary(rtts: list[float]) -> dict[str, float]:
    """Mean, p10, p50, p90 and standard deviation of some RTTs, in milliseconds."""
    q = statistics.quantiles(rtts, n=10)
    return {
        "mean": statistics.fmean(rtts) * 1000,
        "p10": q[0] * 1000,
        "p50": statistics.median(rtts) * 1000,
        "p90": q[-1] * 1000,
        "stdev": statistics.stdev(rtts) * 1000,
    }
