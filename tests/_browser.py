"""Headless Debian Chromium driven by Playwright, for the browser tests (never a download)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.conftest import require

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A launched browser; skips (or fails under STREAMKIT_REQUIRE_BROWSER=1) when unavailable."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require("BROWSER", "Playwright is not installed: pip install -e '.[dev]'")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if executable is None:
        require("BROWSER", f"{CHROMIUM} is missing: install Debian's chromium (apt-get)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=ARGS, timeout=30_000)
        try:
            yield browser
        finally:
            browser.close()
