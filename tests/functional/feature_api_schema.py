"""The HTTP API against its own OpenAPI document: schemathesis, seeded and with every
check, against a real regtest ``obol-node`` (issue 14, item 14).

Schemathesis reads the document the node serves (``GET /api/v1/openapi.json``),
generates requests from it (examples, boundary values, fuzzing, and sequences that
follow the document's links), valid ones and invalid ones, and checks each answer:
no 5xx, a status, content type, headers and body as documented, schema-valid input
accepted and schema-invalid input refused, admin routes refused without the token.
Any difference between the server and its document fails the test.

What the run needs beyond the document is in ``schemathesis.toml`` (beside this file,
with the reason for each line) and ``tests/framework/schema_hooks.py``.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.framework.daemon import Daemon
from tests.framework.programs import process_env, program
from tests.framework.util import REPO_ROOT, scenario_log

log = scenario_log(__name__)

SEED = 14  # the number: one fixed set of requests, the same every run
EXAMPLES = 10  # test cases per operation and phase: the run takes some 20 s
RUN_TIMEOUT = 240.0  # seconds the run may take on a busy machine before the test fails
CONFIG = Path(__file__).with_name("schemathesis.toml")
HOOKS = REPO_ROOT / "tests" / "framework" / "schema_hooks.py"


@pytest.fixture
def daemon(tmp_path):
    with Daemon(tmp_path / "node") as d:
        yield d
    assert "Traceback" not in d.log(), d.log()


def schemathesis_command(daemon: Daemon) -> list[str]:
    return [
        *program("schemathesis", "schemathesis.cli"),
        "--config-file",
        str(CONFIG),
        "run",
        f"http://127.0.0.1:{daemon.api_port}/api/v1/openapi.json",
        "--checks",
        "all",
        "--seed",
        str(SEED),
        "--max-examples",
        str(EXAMPLES),
        "--header",
        f"Authorization: Bearer {daemon.client.token}",
        "--no-color",
    ]


def test_the_api_is_what_its_document_says(daemon, tmp_path):
    log.info("Run schemathesis (seed %d, %d examples per operation)", SEED, EXAMPLES)
    started = time.monotonic()
    run = subprocess.run(
        schemathesis_command(daemon),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=tmp_path,  # its cache and reports stay out of the work tree
        env=process_env({"SCHEMATHESIS_HOOKS": str(HOOKS)}),
    )
    seconds = time.monotonic() - started
    report = run.stdout + run.stderr
    generated = re.search(r"(\d+) generated", report)
    log.info("%s test cases in %.1f s", generated.group(1) if generated else "unknown", seconds)
    assert run.returncode == 0, report
    assert generated and int(generated.group(1)) > 0, report
    log.info("The node is still up and answers")
    assert daemon.client.get("status").status == 200
