"""The link emulator: delay, jitter and rate for packets between network namespaces.

This machine's kernel (and CI's) has no ``netem`` qdisc, so a WAN link is built from
what is there (docs/testnet.md, "WAN links"):

* iptables in the destination's namespace sends every packet arriving on an emulated
  link to an NFQUEUE (scripts/linkrules.py installs the rules, and says why on the
  receiving side); this process takes each packet,
  decides whether the link loses it and when it leaves the link, and gives the kernel
  its verdict then.  Loss is drawn here rather than by iptables' ``statistic`` match so
  that one place counts what each link did.

One process serves every namespace: a netlink socket stays in the namespace it was
opened in, so the emulator enters each namespace (setns) only while it opens that
namespace's queue, then serves all queues from one asyncio loop.

The link model, per directed link (source IPv4 address, destination IPv4 address):

* a packet arriving at ``t`` is serialized behind the packets before it at the link's
  rate: ``tx_end = max(t, busy_until) + bits / rate`` (no rate: ``tx_end = t``);
* it then propagates for ``delay + U(-jitter, +jitter)`` (clamped at 0), but never
  leaves before the packet ahead of it: a link is a FIFO, as a cable is.  Jitter on a
  real path comes from queues, which do not reorder one flow; netem's default (which
  reorders when jitter exceeds the gap between packets) would have TCP see reordering
  no WAN shows.  The cost: packets sent closer together than the jitter are delayed a
  little more than ``delay`` on average (measured in docs/testnet.md);
* the buffer is bounded like a router's: a packet that would wait more than
  ``LINK_BUFFER_BYTES`` of backlog for serialization, or would make more than
  ``LINK_MAX_PACKETS`` packets held on the link, is dropped (tail drop).

The configuration is a JSON file (written by scripts/linkrules.py) re-read on SIGHUP;
after each (re)load and every ``STATS_INTERVAL`` the emulator writes a status file with
the configuration generation it applied and per-link counters.

    python -m scripts.linkemu --config FILE --status FILE
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import logging
import os
import random
import resource
import signal
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("linkemu")

QUEUE_NUM = 0  # the NFQUEUE number the rules use, in every namespace (each has its own)
QUEUE_MAXLEN = 16_384  # packets the kernel holds per namespace awaiting a verdict
COPY_RANGE = 20  # bytes of each packet copied to us: the IPv4 header, no payload
LINK_MAX_PACKETS = 4_096  # packets held on one link at most (memory bound); beyond: dropped
LINK_BUFFER_BYTES = 128 * 1024  # serialization backlog of a rate-limited link; beyond: dropped
STATS_INTERVAL = 1.0  # seconds between status-file writes
CLONE_NEWNET = 0x40000000  # setns(2) nstype of a network namespace
NETNS_DIR = Path("/run/netns")  # where `ip netns add` keeps its namespaces


class PacketLike(Protocol):
    """What the link model needs of a queued packet (netfilterqueue.Packet has it)."""

    def accept(self) -> None: ...

    def drop(self) -> None: ...


@dataclass(frozen=True)
class LinkParams:
    """One directed link's emulated properties (loss is applied by the kernel, not here)."""

    delay: float  # seconds of one-way propagation delay
    jitter: float  # seconds: each packet's delay is delay + U(-jitter, +jitter), FIFO kept
    loss: float  # fraction 0..1 of packets lost at random (1: the link is cut)
    rate: float  # bits per second of the link (0: not limited)


@dataclass
class LinkCounters:
    """What happened on one link since the emulator started."""

    packets: int = 0  # packets that entered the link
    bytes: int = 0  # their IP lengths, summed
    lost: int = 0  # lost at random (the link's loss rate)
    dropped: int = 0  # tail-dropped by the buffer bounds
    held_max: int = 0  # the most packets held at once


@dataclass
class Link:
    """One directed link's state: its parameters and the packets on it, oldest first."""

    params: LinkParams
    rng: random.Random
    held: deque[tuple[float, PacketLike]] = field(default_factory=deque)  # (leaves at, packet)
    busy_until: float = 0.0  # when the last packet's serialization ends
    last_due: float = 0.0  # when the newest packet leaves the link
    timer: asyncio.TimerHandle | None = None  # the release of held[0]
    counters: LinkCounters = field(default_factory=LinkCounters)

    def admit(self, now: float, size: int) -> float | None:
        """When a packet of ``size`` bytes arriving at ``now`` leaves; None: tail drop."""
        p = self.params
        if len(self.held) >= LINK_MAX_PACKETS:
            return None
        start = max(now, self.busy_until)
        if p.rate > 0 and (start - now) * p.rate / 8 + size > LINK_BUFFER_BYTES:
            return None
        tx_end = start + (size * 8 / p.rate if p.rate > 0 else 0.0)
        self.busy_until = tx_end
        spread = self.rng.uniform(-p.jitter, p.jitter) if p.jitter > 0 else 0.0
        due = max(tx_end + max(0.0, p.delay + spread), self.last_due)
        self.last_due = due
        return due


class Emulator:
    """Every configured link, the queue of each namespace, and the release timers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seed: int) -> None:
        self.loop = loop
        self.seed = seed
        # (netns, packed source IPv4 and destination IPv4) -> link
        self.links: dict[tuple[str, bytes], Link] = {}
        self.queues: dict[str, Any] = {}  # netns -> its bound NetfilterQueue
        self.inodes: dict[str, int] = {}  # netns -> the inode of the namespace it is bound in
        self.generation = -1
        self.unknown = 0  # packets queued for a destination no link is configured for

    # -- configuration ------------------------------------------------------------------------

    def configure(self, config: dict[str, Any], open_queue: Callable[[str], Any]) -> None:
        """Apply a configuration: links' parameters, queues opened/closed per namespace."""
        wanted: dict[tuple[str, bytes], LinkParams] = {}
        for row in config["links"]:
            key = (row["netns"], socket.inet_aton(row["src"]) + socket.inet_aton(row["dst"]))
            wanted[key] = LinkParams(row["delay"], row["jitter"], row["loss"], row["rate"])
        for netns in sorted(self.queues):
            if self.inodes[netns] != netns_inode(netns):  # deleted, maybe made again
                self.close_queue(netns)
        for netns in sorted({k[0] for k in wanted} - set(self.queues)):
            self.inodes[netns] = netns_inode(netns)
            self.queues[netns] = open_queue(netns)
            log.info("queue opened in namespace %s", netns)
        for netns in sorted(set(self.queues) - {k[0] for k in wanted}):
            self.close_queue(netns)
        for key, params in wanted.items():
            link = self.links.get(key)
            if link is None:
                rng = random.Random(f"{self.seed}:{row_name(key)}")
                self.links[key] = Link(params, rng)
            else:
                link.params = params
        for key in set(self.links) - set(wanted):
            self.flush(self.links.pop(key))
        self.generation = config["generation"]
        log.info("configuration %d applied: %d links", self.generation, len(self.links))

    def close_queue(self, netns: str) -> None:
        nfq = self.queues.pop(netns)
        del self.inodes[netns]
        for key in [k for k in self.links if k[0] == netns]:
            self.flush(self.links.pop(key))
        self.loop.remove_reader(nfq.get_fd())
        nfq.unbind()
        log.info("queue closed in namespace %s", netns)

    def flush(self, link: Link) -> None:
        """A removed link lets its held packets go at once (a link cleared is a plain wire)."""
        if link.timer is not None:
            link.timer.cancel()
        while link.held:
            link.held.popleft()[1].accept()

    # -- packets ------------------------------------------------------------------------------

    def on_packet(self, netns: str, pkt: Any) -> None:
        header = pkt.get_payload()
        if len(header) < 20:
            pkt.accept()
            return
        link = self.links.get((netns, header[12:20]))
        if link is None:
            self.unknown += 1
            pkt.accept()
            return
        size = struct.unpack_from("!H", header, 2)[0]
        self.enqueue(link, pkt, size)

    def enqueue(self, link: Link, pkt: PacketLike, size: int) -> None:
        c = link.counters
        if link.params.loss > 0 and link.rng.random() < link.params.loss:
            c.lost += 1
            pkt.drop()
            return
        due = link.admit(self.loop.time(), size)
        if due is None:
            c.dropped += 1
            pkt.drop()
            return
        c.packets += 1
        c.bytes += size
        link.held.append((due, pkt))
        c.held_max = max(c.held_max, len(link.held))
        if len(link.held) == 1:
            link.timer = self.loop.call_at(due, self.release, link)

    def release(self, link: Link) -> None:
        """Accept every packet whose time has come, oldest first; re-arm for the next."""
        link.timer = None
        now = self.loop.time()
        while link.held and link.held[0][0] <= now:
            link.held.popleft()[1].accept()
        if link.held:
            link.timer = self.loop.call_at(link.held[0][0], self.release, link)

    def status(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "pid": os.getpid(),
            "generation": self.generation,
            "time": time.time(),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
            "max_rss_kib": usage.ru_maxrss,
            "unknown": self.unknown,
            "links": [
                {
                    "netns": netns,
                    "src": socket.inet_ntoa(pair[:4]),
                    "dst": socket.inet_ntoa(pair[4:]),
                    "held": len(link.held),
                    **vars(link.counters),
                }
                for (netns, pair), link in sorted(self.links.items())
            ],
        }


# --- namespaces and queues -------------------------------------------------------------------


def row_name(key: tuple[str, bytes]) -> str:
    return f"{key[0]}:{socket.inet_ntoa(key[1][:4])}>{socket.inet_ntoa(key[1][4:])}"


def netns_inode(name: str) -> int:
    """The identity of namespace ``name`` (-1: none): a namespace made again is another."""
    try:
        return (NETNS_DIR / name).stat().st_ino
    except OSError:
        return -1


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # Python 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the body in network namespace ``name`` (this thread), then come back."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            _setns(target)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(own)


def queue_opener(emu: Emulator) -> Callable[[str], Any]:
    from netfilterqueue import COPY_PACKET, NetfilterQueue

    def open_queue(netns: str) -> Any:
        with in_netns(netns):
            nfq = NetfilterQueue()
            nfq.bind(
                QUEUE_NUM,
                lambda pkt: emu.on_packet(netns, pkt),
                max_len=QUEUE_MAXLEN,
                mode=COPY_PACKET,
                range=COPY_RANGE,
            )
        emu.loop.add_reader(nfq.get_fd(), lambda: nfq.run(block=False))
        return nfq

    return open_queue


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


async def serve(config_path: Path, status_path: Path, seed: int) -> None:
    loop = asyncio.get_running_loop()
    emu = Emulator(loop, seed)
    open_queue = queue_opener(emu)
    stop = asyncio.Event()

    def reload() -> None:
        try:
            emu.configure(json.loads(config_path.read_text()), open_queue)
        except (OSError, ValueError, KeyError) as exc:
            log.error("configuration %s not applied: %s", config_path, exc)
        write_json(status_path, emu.status())

    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    reload()
    log.info("link emulator serving (pid %d)", os.getpid())
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATS_INTERVAL)
        write_json(status_path, emu.status())
    for netns in list(emu.queues):
        emu.close_queue(netns)
    log.info("link emulator stopped")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="linkemu", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, type=Path, help="links (JSON), re-read on SIGHUP")
    ap.add_argument("--status", required=True, type=Path, help="where to write counters (JSON)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the jitter draws")
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    asyncio.run(serve(args.config, args.status, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
