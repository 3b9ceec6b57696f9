"""Run a real ``obol-node`` process for tests, and talk to its HTTP API.

Everything listens on 127.0.0.1 on free ports; the daemon's stdout/stderr go
to files (no pipe to fill up); waits poll a condition with a timeout.
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.framework.programs import free_port, process_env, program

STARTUP_TIMEOUT = 30.0  # seconds for the API to answer
STOP_TIMEOUT = 30.0  # seconds for the process to exit after SIGTERM


def node_command() -> list[str]:
    """The ``obol-node`` script of this interpreter's environment
    (else ``python -m node.daemon``)."""
    return program("obol-node", "node.daemon")


def run_node(
    args: list[str],
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    """Run ``obol-node args`` to completion (for start-up failures)."""
    return subprocess.run(
        node_command() + args,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=process_env(env),
        cwd=cwd,
    )


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


class Client:
    """A tiny synchronous HTTP client for one API (a connection per request)."""

    def __init__(self, port: int, token: str | None = None) -> None:
        self.port = port
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        token: str | None | bool = True,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> Response:
        """``path`` is relative to /api/v1 unless it starts with '/'. ``token=True``: our token."""
        url = path if path.startswith("/") else "/api/v1/" + path
        hdrs = dict(headers or {})
        if token is True:
            token = self.token
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
        if data is not None:  # raw bytes too: a client sending broken JSON still says JSON
            hdrs.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, url, body=data, headers=hdrs)
            resp = conn.getresponse()
            return Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw) -> Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw) -> Response:
        return self.request("POST", path, body, **kw)

    def delete(self, path: str, **kw) -> Response:
        return self.request("DELETE", path, **kw)

    def ok(self, method: str, path: str, body: Any = None, **kw) -> Any:
        """The JSON of a request that must answer 200."""
        resp = self.request(method, path, body, **kw)
        assert resp.status == 200, resp
        return resp.json


class Daemon:
    """An ``obol-node`` process on a datadir, with its API client."""

    def __init__(
        self,
        datadir: Path,
        network: str = "regtest",
        args: list[str] = (),
        env: dict[str, str] | None = None,
        api: bool = True,
        auto_ports: bool = True,
        api_port: int = 0,
        chain: Path | None = None,
    ) -> None:
        self.datadir = Path(datadir)
        self.network = network
        self.chain = chain  # a chain spec file: --chain FILE instead of --network
        self.args = list(args)
        self.env = env
        self.api = api
        self.proc: subprocess.Popen | None = None
        self.auto_ports = auto_ports  # False: ``args``/``env`` give --network/--datadir/ports
        self.p2p_port = 0
        self.api_port = api_port
        self.client: Client | None = None
        self.log_path = self.datadir.parent / f"{self.datadir.name}.log"

    def start(self, timeout: float = STARTUP_TIMEOUT) -> Daemon:
        """Start on fresh free ports (retried if another process grabbed one first)."""
        (self.datadir / "api.token").unlink(missing_ok=True)  # wait for this run's token
        for attempt in range(3):
            if self.auto_ports:
                self.p2p_port, self.api_port = free_port(), free_port()
                args = [
                    *(["--chain", str(self.chain)] if self.chain else ["--network", self.network]),
                    "--datadir",
                    str(self.datadir),
                    "--listen",
                    f"127.0.0.1:{self.p2p_port}",
                    "--api",
                    f"127.0.0.1:{self.api_port}" if self.api else "none",
                    *self.args,
                ]
            else:  # the caller's args (config file, env) choose network, datadir and ports
                args = list(self.args)
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log:  # the child keeps its own descriptor
                self.proc = subprocess.Popen(
                    node_command() + args,
                    stdout=log,
                    stderr=log,
                    stdin=subprocess.DEVNULL,
                    env=process_env(self.env),
                )
            try:
                self._wait_ready(timeout)
                return self
            except RuntimeError as exc:
                if "already in use" not in str(exc) or attempt == 2 or not self.auto_ports:
                    raise
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> None:
        token_path = self.datadir / "api.token"
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"obol-node exited with {self.proc.returncode}:\n{self.log()}")
            if self.api and token_path.exists():
                self.client = Client(self.api_port, token_path.read_text().strip())
                try:
                    if self.client.get("status", timeout=5).status == 200:
                        return
                except OSError:
                    pass
            elif not self.api and "obol-node" in self.log():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"obol-node did not answer within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM and wait; the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(
                f"obol-node did not stop within {timeout}s:\n{self.log()}"
            ) from None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Daemon:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc) -> None:
        if self.running:
            code = self.stop()
            if exc[0] is None:
                assert code == 0, f"obol-node exited with {code}:\n{self.log()}"
