"""``obol-testnet dashboard`` in headless Chromium, against a real 3-node loopback test
network: the graph shows every node and link, a partition as cut links and split tips,
and the heal as links up again and one tip (tests/framework/browser.py; skipped, with the
reason, without Chromium).  With ``OBOL_SCREENSHOTS=DIR`` the dashboard is saved as PNGs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.framework.browser import chromium, console_errors, screenshot, wait_for
from tests.framework.programs import free_port, killed_at_exit, process_env, program
from tests.framework.util import poll_until, scenario_log

pytestmark = pytest.mark.system
log = scenario_log(__name__)


def obol_testnet(directory: Path, *args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        program("obol-testnet", "scripts.testnet") + ["--dir", str(directory), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=process_env(),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"obol-testnet {args}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


def links(driver: Any) -> dict[str, str]:
    return dict(
        driver.execute_script(
            "return [...document.querySelectorAll('line')]"
            ".map(l => [l.dataset.link, l.dataset.state])"
        )
    )


def tips(driver: Any) -> set[str]:
    return set(
        driver.execute_script(
            "return [...document.querySelectorAll('g[data-node]')].map(g => g.dataset.tip)"
        )
    )


def test_the_dashboard_shows_a_partition_and_its_heal(tmp_path):
    with chromium() as browser:
        net = tmp_path / "testnet"
        try:
            obol_testnet(
                net,
                "up",
                "--nodes",
                "3",
                "--miners",
                "3",
                "--network",
                "regtest",
                "--topology",
                "line",
            )
            port = free_port()
            server = subprocess.Popen(
                program("obol-testnet", "scripts.testnet")
                + ["--dir", str(net), "dashboard", "--port", str(port)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=process_env(),
            )
            with killed_at_exit(server):
                assert server.stdout is not None
                assert f"http://127.0.0.1:{port}/" in server.stdout.readline().decode()
                browser.get(f"http://127.0.0.1:{port}/")
                wait_for(browser, lambda d: links(d) == {"0-1": "up", "1-2": "up"}, "both links up")
                wait_for(
                    browser,
                    lambda d: d.execute_script("return document.body.dataset.converged") == "true",
                    "one tip",
                )
                screenshot(browser, "dashboard")

                log.info("Partition 0,1 | 2 and mine on both sides")
                obol_testnet(net, "partition", "0,1", "2")
                obol_testnet(net, "mine", "2", "--node", "0")
                obol_testnet(net, "mine", "1", "--node", "2")
                wait_for(browser, lambda d: links(d) == {"0-1": "up", "1-2": "cut"}, "the cut link")
                wait_for(browser, lambda d: len(tips(d)) == 2, "two tips")
                assert "partitioned 0,1 | 2" in browser.find_element("id", "summary").text
                screenshot(browser, "dashboard-partition")

                log.info("Heal: the link comes back and the network converges")
                obol_testnet(net, "heal")
                wait_for(
                    browser, lambda d: links(d) == {"0-1": "up", "1-2": "up"}, "the healed link"
                )
                wait_for(
                    browser,
                    lambda d: (
                        len(tips(d)) == 1
                        and d.execute_script("return document.body.dataset.converged") == "true"
                    ),
                    "convergence",
                )
                shown = browser.find_element("id", "events").text
                assert "partition 0,1 | 2" in shown and "healed" in shown, shown
                assert console_errors(browser) == []
                screenshot(browser, "dashboard-healed")
                server.terminate()
                poll_until(lambda: server.poll() is not None, what="the dashboard to stop")
        finally:
            if (net / "testnet.json").exists():
                obol_testnet(net, "down", timeout=120)
        state = json.loads((net / "testnet.json").read_text())
        for n in state["nodes"]:
            assert "Traceback" not in Path(n["log"]).read_text(errors="replace"), n["index"]
