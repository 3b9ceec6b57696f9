"""``obol-testnet run`` (what ``make run`` starts): one command brings up a regtest
network that mines and moves coins, serves the dashboard on one URL while it runs, and
on SIGTERM stops every node and the dashboard and exits 0.
"""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from scripts.testnet_lib import State, node_running
from tests.framework.programs import free_port, killed_at_exit, process_env, program
from tests.framework.util import poll_until, scenario_log

pytestmark = pytest.mark.system
log = scenario_log(__name__)

RUN_TIMEOUT = 180.0  # seconds for the network to come up, mine and pay


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def lines_of(proc: subprocess.Popen) -> queue.Queue[str]:
    """The process's stdout, line by line, read by a thread (so waits can time out)."""
    out: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return out


def test_run_serves_the_dashboard_mines_pays_and_stops_on_sigterm(tmp_path: Path) -> None:
    net = tmp_path / "testnet"
    port = free_port()
    cmd = program("obol-testnet", "scripts.testnet") + [
        "--dir", str(net), "run", "--nodes", "2", "--miners", "1", "--network", "regtest",
        "--rate", "4", "--block-interval", "0.5", "--dashboard-port", str(port),
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=process_env(),
    )
    with killed_at_exit(proc):
        out = lines_of(proc)
        seen: list[str] = []

        def saw(pattern: str) -> re.Match[str] | None:
            while not out.empty():
                seen.append(out.get())
            return next((m for line in seen if (m := re.search(pattern, line))), None)

        url = f"http://127.0.0.1:{port}/"
        poll_until(lambda: saw("dashboard: " + re.escape(url)), RUN_TIMEOUT, "the dashboard URL")
        log.info("run says the dashboard is at %s", url)
        poll_until(lambda: saw(r"traffic: [1-9]\d* tx sent"), RUN_TIMEOUT, "a payment sent by run")
        doc = get_json(url + "state.json")
        assert [n["running"] for n in doc["nodes"]] == [True, True]
        assert doc["nodes"][0]["height"] > 0
        with urllib.request.urlopen(url, timeout=10) as page:
            assert b"dashboard.js" in page.read()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, "\n".join(seen)
        state = State.from_json(json.loads((net / "testnet.json").read_text()))
        assert not any(node_running(n) for n in state.nodes)
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=5)
