"""Waiting for a condition, and where things are.

Tests never sleep a fixed time: they poll the condition they need with a
deadline, and fail saying what they waited for.  A condition is checked
first, so a test that needs no wait loses no time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]  # the work tree the tests belong to
LOCALHOST = "127.0.0.1"  # every test listens and dials here (or on other 127/8 addresses)

WAIT_TIMEOUT = 20.0  # seconds a test waits for a condition before failing (busy 2-core CI)
ASYNC_POLL = 0.01  # seconds between checks inside the event loop
BLOCKING_POLL = 0.05  # seconds between checks of another process (each check is a request)

Description = str | Callable[[], str]  # what is awaited; a callable is asked at the timeout


def scenario_log(module: str) -> logging.Logger:
    """The logger a scenario narrates its steps with (Bitcoin Core's ``self.log.info``):
    its INFO lines appear under "Captured log" when the test fails."""
    log = logging.getLogger("scenario." + module.rpartition(".")[2])
    log.setLevel(logging.INFO)
    return log


def _describe(what: Description) -> str:
    return what() if callable(what) else what


async def wait_until(
    predicate: Callable[[], Any],
    timeout: float = WAIT_TIMEOUT,
    what: Description = "condition",
    interval: float = ASYNC_POLL,
) -> Any:
    """Poll ``predicate`` in the event loop until it returns a truthy value, and return it;
    AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {_describe(what)}")
        await asyncio.sleep(interval)


def poll_until(
    predicate: Callable[[], Any],
    timeout: float = WAIT_TIMEOUT,
    what: Description = "condition",
    interval: float = BLOCKING_POLL,
) -> Any:
    """:func:`wait_until` for tests that drive other processes from a plain thread.

    A separate name, because an async ``wait_until`` called without ``await``
    would check nothing and let the test pass.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {_describe(what)}")
        time.sleep(interval)
