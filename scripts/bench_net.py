"""Real ``obol-node`` processes and a raw P2P peer for ``scripts/bench.py``.

Everything listens on 127.0.0.1 on free ports.  A node's output goes to a log
file next to its datadir.  Every wait has a deadline; every process started
here is stopped here, by its own pid.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import aiohttp

from network.frames import FrameDecoder, encode_frame
from node.consensus.params import NetworkParams
from node.primitives import encoding
from scripts.bench_chain import die_with_parent
from scripts.testnet_lib import program

REPO_ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0  # seconds for a node's API to answer
STOP_TIMEOUT = 60.0  # seconds for a node to exit after POST /stop or SIGTERM


class BenchError(RuntimeError):
    """A benchmark could not run as designed (its figure would be meaningless)."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_status_kb(pid: int, key: str) -> int:
    """A ``/proc/<pid>/status`` memory line (VmHWM, VmRSS...) in kB."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} in /proc/{pid}/status")


def memory_mb(pid: int) -> dict[str, float]:
    """Peak and current resident memory of a process, and the current split between
    anonymous memory (the heap) and file pages (LMDB's memory map) in MB."""
    return {
        key: proc_status_kb(pid, key) / 1024 for key in ("VmHWM", "VmRSS", "RssAnon", "RssFile")
    }


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system, every thread) of ``pid``, or of this process."""
    if pid is None:
        return time.process_time()
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Cores used by some processes (and by this one, the client) over a timed phase."""

    def __init__(self, **pids: int) -> None:
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.start["bench client"] = cpu_seconds()
        self.began = time.perf_counter()
        self.cores: dict[str, float] = {}

    def stop(self) -> str:
        wall = time.perf_counter() - self.began
        now = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        now["bench client"] = cpu_seconds()
        self.cores = {name: (now[name] - self.start[name]) / wall for name in now}
        return ", ".join(f"{name} {cores:.2f}" for name, cores in self.cores.items())


async def wait_for(
    predicate: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Await ``predicate()`` until truthy (returned); BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(interval)


class NodeProc:
    """One ``obol-node --network regtest`` process and its HTTP API."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        session: aiohttp.ClientSession,
        network: str = "regtest",
        args: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.datadir = workdir / name
        self.network = network
        self.args = ["--no-discover", *args]  # only the --peer links we ask for
        self.session = session
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        # chosen now, before start: a node of a line names the one before it in --peer
        self.p2p_port, self.api_port = free_port(), free_port()
        self.token = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/api/v1/"

    @property
    def p2p(self) -> str:
        return f"127.0.0.1:{self.p2p_port}"

    async def start(self, peers: tuple[NodeProc, ...] = ()) -> NodeProc:
        self.datadir.mkdir(parents=True, exist_ok=True)
        (self.datadir / "api.token").unlink(missing_ok=True)
        args = [
            "--network",
            self.network,
            "--datadir",
            str(self.datadir),
            "--listen",
            self.p2p,
            "--api",
            f"127.0.0.1:{self.api_port}",
            "--log-level",
            "WARNING",
            *[a for p in peers for a in ("--peer", p.p2p)],
            *self.args,
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("OBOL_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                program("obol-node", "node.daemon") + args,
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=die_with_parent,
            )
        self.proc = proc
        await wait_for(
            functools.partial(self._ready, proc), START_TIMEOUT, f"node {self.name} to start"
        )
        return self

    async def _ready(self, proc: subprocess.Popen[bytes]) -> bool:
        if proc.poll() is not None:
            raise BenchError(
                f"node {self.name} exited with {proc.returncode}: "
                f"{self.log_path.read_text(errors='replace')[-2000:]}"
            )
        token = self.datadir / "api.token"
        if not token.exists():
            return False
        self.token = token.read_text().strip()
        try:
            await self.get("status")
            return True
        except (aiohttp.ClientError, OSError):
            return False

    async def request(
        self, method: str, path: str, body: Any = None, timeout: float = 120.0
    ) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"}
        async with self.session.request(
            method,
            self.url + path,
            json=body,
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise BenchError(f"{self.name}: {method} {path} -> {resp.status} {data}")
            return data

    async def get(self, path: str, **kw) -> Any:
        return await self.request("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw) -> Any:
        return await self.request("POST", path, body if body is not None else {}, **kw)

    async def status(self) -> dict:
        return await self.get("status", timeout=30.0)

    async def wait_height(self, height: int, timeout: float, interval: float = 0.02) -> float:
        """Poll /status until the tip is at ``height``; the monotonic time it was seen."""

        async def reached():
            return (await self.status())["height"] >= height

        await wait_for(reached, timeout, f"{self.name} to reach height {height}", interval)
        return time.perf_counter()

    async def mine(self, blocks: int, address: str) -> dict:
        return await self.post("mine", {"blocks": blocks, "address": address}, timeout=600.0)

    async def timed_posts(
        self, path: str, body: dict, count: int, pause: float, timeout: float = 30.0
    ) -> list[float]:
        """Seconds each of ``count`` sequential ``POST path`` took, ``pause`` seconds apart,
        over one keep-alive connection with the request encoded once: the node's latency,
        without a client library's (aiohttp's client adds ~0.5 ms per request here)."""
        payload = json.dumps(body).encode()
        conn = await KeepAlive.open(self, timeout)
        seconds: list[float] = []
        try:
            for _ in range(count):
                started = time.perf_counter()
                await conn.ok("POST", path, payload)
                seconds.append(time.perf_counter() - started)
                await asyncio.sleep(pause)
        finally:
            conn.close()
        return seconds

    def memory_kb(self, key: str = "VmHWM") -> int:
        return proc_status_kb(self.pid, key)

    def memory_mb(self) -> dict[str, float]:
        return memory_mb(self.pid)

    async def metrics(self) -> dict[str, float]:
        """The Prometheus text of /metrics as {sample name: value} (labels kept in the name)."""
        async with self.session.get(
            self.url + "metrics", timeout=aiohttp.ClientTimeout(total=30)
        ) as resp:
            text = await resp.text()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[name] = float(value)
        return out

    async def stop(self) -> None:
        """POST /stop, then SIGTERM, then SIGKILL: each with a deadline."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            await self.post("stop", timeout=10.0)
        except (TimeoutError, aiohttp.ClientError, OSError, BenchError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait, 10)

    def kill(self) -> None:
        """Last resort at exit: SIGKILL this node's own process."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


class KeepAlive:
    """One keep-alive HTTP/1.1 connection to a node's API, requests written by hand: the
    node's latency per request, without a client library's (aiohttp's client adds ~0.5 ms
    per request here).  One request at a time."""

    def __init__(
        self,
        node: NodeProc,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        timeout: float,
    ) -> None:
        self.node = node
        self.reader = reader
        self.writer = writer
        self.timeout = timeout  # seconds for each answer

    @classmethod
    async def open(cls, node: NodeProc, timeout: float = 30.0) -> KeepAlive:
        reader, writer = await asyncio.open_connection("127.0.0.1", node.api_port)
        return cls(node, reader, writer, timeout)

    def head(self, method: str, path: str, length: int | None) -> bytes:
        """The request line and headers of ``method /api/v1/path``."""
        body = f"Content-Type: application/json\r\nContent-Length: {length}\r\n"
        return (
            f"{method} /api/v1/{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {self.node.token}\r\n"
            f"{body if length is not None else ''}\r\n"
        ).encode()

    async def request(
        self, method: str, path: str, payload: bytes | None = None
    ) -> tuple[int, bytes]:
        """(status, body) of one request."""
        length = None if payload is None else len(payload)
        self.writer.write(self.head(method, path, length) + (payload or b""))
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), self.timeout)
        status, *headers = head.decode("latin-1").split("\r\n")
        fields = dict(h.split(":", 1) for h in headers if h)
        size = int(next(v for k, v in fields.items() if k.lower() == "content-length"))
        answer = await asyncio.wait_for(self.reader.readexactly(size), self.timeout)
        return int(status.split()[1]), answer

    async def ok(self, method: str, path: str, payload: bytes | None = None) -> bytes:
        """The body of a request that must answer 200."""
        status, answer = await self.request(method, path, payload)
        if status != 200:
            raise BenchError(f"{method} /{path} on {self.node.name}: {status}: {answer[:300]!r}")
        return answer

    def close(self) -> None:
        self.writer.close()


class WirePeer:
    """A raw P2P peer (as tests/framework/wire.py): handshake, then streams pre-encoded frames.

    A reader task answers pings and counts (and drops) everything else the node sends.
    """

    def __init__(
        self, params: NetworkParams, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.params = params
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder(params.magic, 8 * 1024 * 1024)
        self.received: collections.Counter[str] = collections.Counter()
        # called with (type, body) of every message the node sends, if set
        self.watch: Callable[[str, Any], None] | None = None
        self._handshake = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task | None = None

    @classmethod
    async def connect(
        cls, params: NetworkParams, port: int, timeout: float = 10.0, source: str | None = None
    ) -> WirePeer:
        """A handshaken peer of the node at 127.0.0.1:``port``, connecting from the
        loopback address ``source`` if given (a node's ``--whitelist`` may single it out)."""
        local = (source, 0) if source is not None else None
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=local), timeout
        )
        peer = cls(params, reader, writer)
        peer._task = asyncio.get_running_loop().create_task(peer._read())
        peer.send(
            "version",
            [
                1,
                params.magic,
                params.genesis_hash,
                0,
                0,
                int.from_bytes(os.urandom(8), "big"),
                "/obol-bench:0/",
                int(time.time()),
            ],
        )
        await asyncio.wait_for(peer._handshake, timeout)
        return peer

    def frame(self, msg_type: str, body: Any) -> bytes:
        return encode_frame(self.params.magic, encoding.encode([msg_type, body]))

    def send(self, msg_type: str, body: Any) -> None:
        self.writer.write(self.frame(msg_type, body))

    async def send_frames(self, frames: list[bytes], batch: int = 256) -> None:
        for i in range(0, len(frames), batch):
            self.writer.write(b"".join(frames[i : i + batch]))
            await self.writer.drain()

    async def _read(self) -> None:
        got_version = got_verack = False
        try:
            while True:
                data = await self.reader.read(1 << 16)
                if not data:
                    break
                self.decoder.feed(data)
                while (payload := self.decoder.next_payload()) is not None:
                    msg_type, body = encoding.decode(payload)
                    self.received[msg_type] += 1
                    if self.watch is not None:
                        self.watch(msg_type, body)
                    if msg_type == "version":
                        got_version = True
                        self.send("verack", [])
                    elif msg_type == "verack":
                        got_verack = True
                    elif msg_type == "ping":
                        self.send("pong", body)
                    if got_version and got_verack and not self._handshake.done():
                        self._handshake.set_result(True)
        except (ConnectionError, OSError):
            pass
        finally:
            if not self._handshake.done():
                self._handshake.set_exception(BenchError("the node closed the P2P connection"))

    @property
    def closed(self) -> bool:
        return self._task is not None and self._task.done()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(TimeoutError, OSError):
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def tx_frame(params: NetworkParams, raw_tx: bytes) -> bytes:
    """A ``tx`` message carrying already-encoded transaction bytes (no re-encoding)."""
    return encode_frame(params.magic, b"\x92" + encoding.encode("tx") + raw_tx)


class Profiler:
    """``py-spy record`` of one process while a phase runs (``--profile DIR``); else nothing."""

    RATE = 250  # samples per second per thread

    # native: C frames too (msgpack, hashlib, LMDB, the GIL); py-spy then pauses the process
    # for each sample, so its timings are slower than the others'
    MODES: ClassVar[Mapping[str, tuple[str, ...]]] = {
        "cpu": ("--nonblocking",),
        "gil": ("--gil", "--nonblocking"),
        "wall": ("--idle", "--nonblocking"),
        "native": ("--native",),
    }

    def __init__(self, outdir: Path | None, mode: str = "cpu") -> None:
        self.outdir = outdir
        # cpu: running threads; gil: the thread holding the GIL; wall: every thread;
        # native: running threads with their C frames
        self.mode = mode
        self.files: dict[str, tuple[Path, float]] = {}  # name -> (raw stacks, seconds recorded)
        self._running: dict[int, tuple[str, float]] = {}

    def attach(self, name: str | None, pid: int) -> subprocess.Popen | None:
        if self.outdir is None or name is None:
            return None
        self.outdir.mkdir(parents=True, exist_ok=True)
        out = self.outdir / f"{name}.txt"
        pyspy = Path(sys.executable).with_name("py-spy")
        cmd = [
            str(pyspy) if pyspy.exists() else "py-spy",
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            str(self.RATE),
            "--threads",
            "--output",
            str(out),
            "--duration",
            "900",
            *self.MODES[self.mode],
        ]
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent
        )
        time.sleep(1.0)  # py-spy attaches (not timed)
        self._running[proc.pid] = (name, time.perf_counter())
        self.files[name] = (out, 0.0)
        return proc

    def detach(self, proc: subprocess.Popen | None) -> None:
        if proc is None:
            return
        name, started = self._running.pop(proc.pid)
        self.files[name] = (self.files[name][0], time.perf_counter() - started)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _function(frame: str) -> str:
    """'f (node/x.py:12)' -> 'node/x.py:f' (lines of one function merged)."""
    name, _, where = frame.rpartition(" (")
    return f"{where.rsplit(':', 1)[0]}:{name}" if name else frame


def summarize_profile(
    path: Path, seconds: float, rate: float = Profiler.RATE, top: int = 8
) -> list[str]:
    """py-spy's raw stacks, per thread group (sigcheck_0 and sigcheck_1 are one group): how busy
    the threads were (samples / (rate × seconds): 1.0 = one core all the time), and the
    functions with the most samples of their own, as shares of the group's samples."""
    groups: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    inclusive: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    totals: collections.Counter[str] = collections.Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or ";" not in stack:
            continue
        thread, *frames = stack.split(";")
        group = thread.split(": ", 1)[-1].rstrip("0123456789").rstrip("_") or thread
        n = int(count)
        totals[group] += n
        funcs = [_function(f) for f in frames]
        groups[group][funcs[-1]] += n
        for f in set(funcs):
            if f.startswith(("node/", "network/")):
                inclusive[group][f] += n
    out = []
    for group, n in totals.most_common():
        out.append(f"  thread {group}: {n / (rate * seconds):.2f} cores busy ({n} samples)")
        for func, c in groups[group].most_common(top):
            out.append(f"    self {c / n:6.1%}  {func}")
        for func, c in inclusive[group].most_common(top):
            out.append(f"    incl {c / n:6.1%}  {func}")
    return out
