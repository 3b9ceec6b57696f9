"""Running this work tree's programs (``obol-node``, ``obol-wallet``, ``obol-testnet``) as
child processes: which command, which environment, which port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.framework.util import LOCALHOST, REPO_ROOT


def program(script: str, module: str) -> list[str]:
    """The console script ``script`` of this interpreter's environment, else
    ``python -m module`` (a venv without the entry points installed)."""
    path = Path(sys.executable).with_name(script)
    if path.exists():
        return [str(path)]
    return [sys.executable, "-m", module]


def process_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The test's environment without OBOL_* settings, importing this work tree's code
    (the venv's editable install may point at another checkout), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OBOL_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def free_port() -> int:
    """A TCP port free on 127.0.0.1 just now (another process may take it before we do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def killed_at_exit(proc: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """``proc`` for the block; at its end, killed if it still runs, reaped, its pipes closed.

    ``with Popen(...)`` would wait for the child instead, forever if it hangs; a test
    that stops or kills the child itself inside the block is unaffected.
    """
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
