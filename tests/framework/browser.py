"""Headless Chromium for the explorer tests, driven by selenium through chromedriver.

Debian's ``chromium`` and ``chromium-driver`` are installed by the project's set-up
(``make browser``, run by ``.ci/run``); where they or selenium are missing, the tests skip
and say which.  The flags keep Chromium from reaching out (this machine's network refuses
it and the test must not depend on it): no background networking, component updates,
sync or QUIC, a fresh profile per browser.  Every console message of level SEVERE is an
error the tests fail on (``console_errors``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.framework.util import WAIT_TIMEOUT

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
)
PAGE_TIMEOUT = 60.0  # seconds a page load may take on a loaded machine
# set to a directory: the tests write a screenshot of each page there (docs/screenshots/)
SCREENSHOTS_ENV = "OBOL_SCREENSHOTS"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} missing: install Debian's {package} (make browser)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium missing: pip install -e '.[test]'"
    return None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a selenium WebDriver), or the test skips with the reason."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="obol-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(PAGE_TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    """SEVERE console messages since the last call (reading the log empties it)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str) -> Any:
    """Poll ``condition(driver)`` until truthy (WAIT_TIMEOUT seconds, tripled for a
    browser on a busy machine)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 3 * WAIT_TIMEOUT, poll_frequency=0.1).until(
        condition, message=f"timed out waiting for {what}"
    )


def screenshot(driver: Any, name: str) -> None:
    """Save the page as ``$OBOL_SCREENSHOTS/<name>.png`` when the variable is set."""
    target = os.environ.get(SCREENSHOTS_ENV)
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(target) / f"{name}.png"))
