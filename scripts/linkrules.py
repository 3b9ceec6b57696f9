"""WAN links between network namespaces: the kernel rules and the emulator process.

A link is directed: packets from IPv4 address ``src`` to address ``dst``.  It is
emulated where the packets arrive: in ``dst``'s namespace, this module keeps one
iptables chain, ``OBOL-LINK`` in the ``mangle`` table, jumped to first from
``mangle PREROUTING``, one rule per link into the namespace::

    -s SRC/32 -d DST/32 -j NFQUEUE --queue-num 0   (loss, delay, jitter, rate: the emulator)

On the receiving side because a packet held on the sending side is still charged to its
socket: TCP's small-queue limit (about a millisecond of data per flow) then stalls the
sender, and a delayed TCP flow gets a fraction of the link's rate.  A packet that
crossed the veth is orphaned from its socket, as one on a WAN is.

The chain is in ``mangle`` so that it runs before ``filter``: an NFQUEUE verdict of
ACCEPT ends the packet's walk of the table it was queued from, and a partition's DROP
rules (``OBOL-PARTITION``, in ``filter``) must still see every packet.  There is no
``--queue-bypass``: while the emulator is not running, an emulated link carries nothing
(rather than silently becoming a plain wire).

The emulator (scripts/linkemu.py) is started first and told the links (a JSON file,
SIGHUP, and a status file that says which configuration it applied); the rules are
installed after, and removed before the emulator stops.  Removal is idempotent: ``down``
after a crash removes whatever is left.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .linkemu import QUEUE_NUM

CHAIN = "OBOL-LINK"
TABLE = "mangle"
HOOK = "PREROUTING"
EMULATOR_START_TIMEOUT = 15.0  # seconds for the emulator to apply its first configuration
EMULATOR_APPLY_TIMEOUT = 10.0  # seconds for it to apply a new one
EMULATOR_STOP_TIMEOUT = 5.0  # seconds after SIGTERM before SIGKILL


class LinkError(Exception):
    """A link could not be set up; the message says what is missing or wrong."""


@dataclass(frozen=True)
class LinkSpec:
    """What one directed link does to its packets."""

    delay: float = 0.0  # seconds of one-way delay
    jitter: float = 0.0  # seconds: delay varies uniformly by +- this much (FIFO kept)
    loss: float = 0.0  # fraction of packets lost at random, 0..1 (1: the link is cut)
    rate: float = 0.0  # bits per second (0: unlimited)

    @property
    def plain(self) -> bool:
        """A link that does nothing: no rules for it."""
        return self.delay == 0 and self.jitter == 0 and self.loss == 0 and self.rate == 0

    def describe(self) -> str:
        if self.plain:
            return "plain"
        parts = [f"{self.delay * 1000:g}ms"] if self.delay else []
        if self.jitter:
            parts.append(f"±{self.jitter * 1000:g}ms")
        if self.loss:
            parts.append("cut" if self.loss >= 1 else f"loss {self.loss * 100:g}%")
        if self.rate:
            parts.append(format_rate(self.rate))
        return " ".join(parts)


@dataclass(frozen=True)
class Link:
    """A directed link: from an address to one in namespace ``netns``, and what it does."""

    netns: str  # the namespace ``dst`` is in, where the packets arrive (`ip netns` name)
    src: str  # the source IPv4 address
    dst: str  # the destination IPv4 address
    spec: LinkSpec  # its delay, jitter, loss and rate


# --- units -----------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(us|ms|s)?\s*$")
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)?\s*$", re.I)
_SECONDS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, None: 1e-3}
# tc's units: "bit" suffixes are bits per second, "bps" suffixes bytes per second
_BITS = {
    "bit": 1,
    "kbit": 1e3,
    "mbit": 1e6,
    "gbit": 1e9,
    "bps": 8,
    "kbps": 8e3,
    "mbps": 8e6,
    "gbps": 8e9,
    None: 1,
}


def parse_duration(text: str) -> float:
    """``80ms``, ``1.5s``, ``250us`` (a bare number is milliseconds, as tc's) -> seconds."""
    m = _DURATION.match(text)
    if m is None:
        raise LinkError(f"not a duration: {text!r} (say 80ms, 1.5s or 250us)")
    return float(m.group(1)) * _SECONDS[m.group(2)]


def parse_rate(text: str) -> float:
    """``10mbit``, ``512kbit``, ``1gbit``, ``2mbps`` (bytes) -> bits per second."""
    m = _RATE.match(text)
    if m is None:
        raise LinkError(f"not a rate: {text!r} (say 10mbit, 512kbit or 1gbit)")
    unit = m.group(2).lower() if m.group(2) else None
    return float(m.group(1)) * _BITS[unit]


def parse_loss(text: str) -> float:
    """``1%`` or ``0.01`` -> a fraction 0..1."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise LinkError(f"not a loss rate: {text!r} (say 1% or 0.01)") from None
    if not 0 <= value <= 1:
        raise LinkError(f"a loss rate is 0%..100%, not {text!r}")
    return value


def format_rate(bits: float) -> str:
    for unit, scale in (("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3)):
        if bits >= scale:
            return f"{bits / scale:g}{unit}"
    return f"{bits:g}bit"


# --- the kernel's side -----------------------------------------------------------------------


def run_in(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=30
    )
    if check and proc.returncode != 0:
        raise LinkError(f"in namespace {netns}: {' '.join(argv)}: {proc.stderr.strip()}")
    return proc


def link_rules(links: Iterable[Link]) -> list[list[str]]:
    """The rules of one namespace's chain (iptables arguments after ``-A CHAIN``)."""
    return [
        ["-s", f"{link.src}/32", "-d", f"{link.dst}/32"]
        + ["-j", "NFQUEUE", "--queue-num", str(QUEUE_NUM)]
        for link in links
        if not link.spec.plain
    ]


def install_chain(netns: str, links: list[Link]) -> None:
    """Replace namespace ``netns``'s OBOL-LINK chain with these links' rules, atomically."""
    lines = ["*" + TABLE, f":{CHAIN} - [0:0]"]
    lines += [" ".join(["-A", CHAIN, *rule]) for rule in link_rules(links)]
    lines.append("COMMIT")
    proc = subprocess.run(
        ["ip", "netns", "exec", netns, "iptables-restore", "-w", "--noflush"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        raise LinkError(f"in namespace {netns}: iptables-restore: {proc.stderr.strip()}")
    jump = ["-t", TABLE, "-C", HOOK, "-j", CHAIN]
    if run_in(netns, "iptables", "-w", *jump, check=False).returncode != 0:
        run_in(netns, "iptables", "-w", "-t", TABLE, "-I", HOOK, "1", "-j", CHAIN)


def remove_chain(netns: str) -> None:
    """Remove the OBOL-LINK chain and its jump from ``netns``; nothing there is fine."""
    if not (Path("/run/netns") / netns).exists():
        return
    while run_in(netns, "iptables", "-w", "-t", TABLE, "-D", HOOK, "-j", CHAIN, check=False) \
            .returncode == 0:  # fmt: skip
        pass
    run_in(netns, "iptables", "-w", "-t", TABLE, "-F", CHAIN, check=False)
    run_in(netns, "iptables", "-w", "-t", TABLE, "-X", CHAIN, check=False)


def chain_rules(netns: str) -> list[str]:
    """The rules now in ``netns``'s OBOL-LINK chain (``iptables -S`` lines); [] if none."""
    proc = run_in(netns, "iptables", "-w", "-t", TABLE, "-S", CHAIN, check=False)
    if proc.returncode != 0:
        return []
    return [line for line in proc.stdout.splitlines() if line.startswith("-A ")]


def missing_tools() -> str | None:
    """Why links cannot be emulated here (None: they can)."""
    if os.geteuid() != 0:
        return "emulated links need root (network namespaces, iptables, NFQUEUE)"
    for tool in ("ip", "iptables", "iptables-restore"):
        if not any((Path(d) / tool).exists() for d in os.environ.get("PATH", "").split(":")):
            return f"emulated links need `{tool}` (Debian: make link-deps)"
    try:
        import netfilterqueue  # noqa: F401
    except ImportError:
        return (
            "emulated links need the NetfilterQueue package (pip install '.[link]', "
            "after `make link-deps` installs libnetfilter-queue-dev)"
        )
    return None


# --- the emulator process --------------------------------------------------------------------


class LinkSet:
    """The links of one set of namespaces, kept in directory ``home`` (config, status, log).

    ``home/links.json`` is the configuration the emulator reads; its pid is in
    ``home/linkemu.pid``.  Every method can be called by a fresh process (the CLI).
    """

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self.config = self.home / "links.json"
        self.status_file = self.home / "linkemu.status.json"
        self.pid_file = self.home / "linkemu.pid"
        self.log = self.home / "linkemu.log"

    # -- state --------------------------------------------------------------------------------

    def links(self) -> list[Link]:
        if not self.config.exists():
            return []
        data = json.loads(self.config.read_text())
        return [
            Link(
                r["netns"],
                r["src"],
                r["dst"],
                LinkSpec(r["delay"], r["jitter"], r["loss"], r["rate"]),
            )
            for r in data["links"]
        ]

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return None
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return None
        return pid if b"scripts.linkemu" in cmdline else None

    def status(self) -> dict[str, Any] | None:
        try:
            data: dict[str, Any] = json.loads(self.status_file.read_text())
            return data
        except (OSError, ValueError):
            return None

    # -- changes ------------------------------------------------------------------------------

    def apply(self, links: list[Link], namespaces: Iterable[str]) -> None:
        """Make ``links`` (every non-plain link) the links of ``namespaces``; rules follow."""
        why = missing_tools()
        if why is not None:
            raise LinkError(why)
        links = [link for link in links if not link.spec.plain]
        self.home.mkdir(parents=True, exist_ok=True)
        generation = time.time_ns()  # unique per apply: the emulator echoes it when done
        rows = [{"netns": k.netns, "src": k.src, "dst": k.dst} | asdict(k.spec) for k in links]
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(json.dumps({"generation": generation, "links": rows}))
        os.replace(tmp, self.config)
        if rows or self.pid() is not None:
            self._emulator_apply(generation)
        by_ns: dict[str, list[Link]] = {ns: [] for ns in namespaces}
        for link in links:
            by_ns.setdefault(link.netns, []).append(link)
        for netns, own in sorted(by_ns.items()):
            if own:
                install_chain(netns, own)
            else:
                remove_chain(netns)

    def clear(self, namespaces: Iterable[str]) -> None:
        """Remove every rule and stop the emulator; idempotent (after a crash too)."""
        for netns in sorted(set(namespaces) | {k.netns for k in self.links()}):
            remove_chain(netns)
        self.stop()
        self.config.unlink(missing_ok=True)
        self.status_file.unlink(missing_ok=True)

    def _emulator_apply(self, generation: int) -> None:
        pid = self.pid()
        started: subprocess.Popen[bytes] | None = None
        if pid is None:
            started = self._start()
            pid = started.pid
            timeout = EMULATOR_START_TIMEOUT
        else:
            os.kill(pid, signal.SIGHUP)
            timeout = EMULATOR_APPLY_TIMEOUT
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            applied = status is not None and status.get("pid") == pid
            if applied and status is not None and status.get("generation") == generation:
                return
            alive = started.poll() is None if started is not None else self.pid() is not None
            if not alive:
                raise LinkError(f"the link emulator exited: see {self.log}")
            if time.monotonic() > deadline:
                raise LinkError(
                    f"the link emulator did not apply its configuration in {timeout:g}s: "
                    f"see {self.log}"
                )
            time.sleep(0.05)

    def _start(self) -> subprocess.Popen[bytes]:
        self.status_file.unlink(missing_ok=True)
        with open(self.log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "scripts.linkemu", "--config", str(self.config)]
                + ["--status", str(self.status_file)],
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + EMULATOR_STOP_TIMEOUT
            while self.pid() is not None and time.monotonic() < deadline:
                _reap(pid)
                time.sleep(0.05)
            if self.pid() is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _reap(pid)
        self.pid_file.unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
