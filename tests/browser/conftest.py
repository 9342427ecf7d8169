"""The console in headless Chromium: Debian's ``chromium`` (``make test`` installs it with
apt-get when it is missing) driven by Playwright for Python through ``executable_path``;
Playwright's own browser downloads are never used."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.support.dev_stack import DevStack, running_dev_stack

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("BRANCHLINE_SCREENSHOTS", ROOT / "test-artifacts" / "console"))


def chromium_path() -> str:
    for candidate in (os.environ.get("BRANCHLINE_CHROMIUM"), "chromium", "chromium-browser"):
        if candidate and (found := shutil.which(candidate)):
            return found
    pytest.fail(
        "Debian's chromium is needed for the browser tests: `make test` installs it "
        "(apt-get install chromium), or set BRANCHLINE_CHROMIUM to a Chromium binary"
    )


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture(scope="package")
def dev_stack() -> Iterator[DevStack]:
    # Not under pytest's tmp folder: that one is private to root, and PostgreSQL runs as its
    # own system user when the tests run as root.
    folder = Path(tempfile.mkdtemp(prefix="branchline-console-"))
    folder.chmod(0o755)
    data = folder / ".branchline"
    # The branch's time zone of the dates on every page (configurable per branch).
    zones = {"BRANCHLINE_FOLLOWUP_DEFAULT_TIMEZONE": "Asia/Shanghai"}
    try:
        with running_dev_stack(data, zones) as stack:
            yield stack
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
    )
    try:
        yield browser
    finally:
        browser.close()
