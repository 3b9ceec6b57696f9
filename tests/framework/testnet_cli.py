"""``obol-testnet`` driven as a user drives it: one process per command, against one
network directory, and the state file it keeps (scripts/testnet_lib.py).  The scenario
files of the test networks (loopback, ``--hosts``, links) extend :class:`TestnetCli` with
the views of the nodes they need."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.framework.programs import process_env, program

COMMAND_TIMEOUT = 180.0  # seconds one obol-testnet command may take (up mines on regtest)


class TestnetCli:
    """``obol-testnet --dir DIR ...`` and DIR's state."""

    __test__ = False  # not a test class, whatever pytest makes of its name

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def run(
        self, *args: str, timeout: float = COMMAND_TIMEOUT, check: bool = True
    ) -> subprocess.CompletedProcess:
        """Run one command; with ``check``, fail the test unless it exits 0."""
        proc = subprocess.run(
            program("obol-testnet", "scripts.testnet") + ["--dir", str(self.dir), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=process_env(),
            stdin=subprocess.DEVNULL,
        )
        if check:
            assert proc.returncode == 0, (
                f"obol-testnet {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    @property
    def state(self) -> dict:
        return json.loads((self.dir / "testnet.json").read_text())

    def node(self, i: int) -> dict:
        return self.state["nodes"][i]
