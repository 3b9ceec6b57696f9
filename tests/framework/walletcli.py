"""Run ``obol-wallet`` for tests: as a subprocess, or in-process through ``wallet.cli.main``.

Wallets made here use a cheap keystore KDF (``OBOL_WALLET_KDF_N``) and a
HOME inside the test's temporary directory, so nothing touches ~/.obol.
"""

from __future__ import annotations

import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.framework.programs import process_env, program

TEST_KDF_N = "1024"  # scrypt n for test (regtest) wallets (the default is 2**17)
PASSPHRASE = "correct horse battery staple"


def wallet_command() -> list[str]:
    """The ``obol-wallet`` script of this interpreter's environment
    (else ``python -m wallet.cli``)."""
    return program("obol-wallet", "wallet.cli")


def wallet_env(home: Path, passphrase: str | None = PASSPHRASE, **extra: str) -> dict[str, str]:
    env = {"HOME": str(home), "OBOL_WALLET_KDF_N": TEST_KDF_N}
    if passphrase is not None:
        env["OBOL_WALLET_PASSPHRASE"] = passphrase
    env.update(extra)
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    def error_line(self) -> str:
        """The single stderr line of a failed command."""
        lines = [line for line in self.err.splitlines() if line.strip()]
        assert len(lines) == 1, self
        assert lines[0].startswith("obol-wallet: error: "), self
        assert "Traceback" not in self.err, self
        return lines[0]

    def error_code(self) -> str:
        return self.error_line()[len("obol-wallet: error: ") :].split(":", 1)[0]


def run_wallet(
    args: list[str], env: dict[str, str], input: str | None = "", timeout: float = 60.0
) -> Result:
    """``obol-wallet args`` as a subprocess (stdin is ``input``, not a terminal)."""
    proc = subprocess.run(
        wallet_command() + args,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=process_env(env),
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def call_wallet(args: list[str], env: dict[str, str], input: str = "") -> Result:
    """``wallet.cli.main(args)`` in this process, capturing its output."""
    from wallet.cli import main

    out, err = io.StringIO(), io.StringIO()
    code = main(args, stdin=io.StringIO(input), stdout=out, stderr=err, env=env)
    return Result(code, out.getvalue(), err.getvalue())
