"""Debian's Chromium for the page tests: where it is, and what happens when it is missing."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def require_chromium() -> str:
    """Chromium's path; without it the calling test module is skipped, or fails where CI requires it."""
    if not os.path.exists(CHROMIUM):
        # CI installs Debian's chromium (.ci/run) and sets LEADFLOW_REQUIRE_BROWSER, so there this fails instead.
        if os.environ.get("LEADFLOW_REQUIRE_BROWSER"):
            raise RuntimeError(f"no Chromium at {CHROMIUM}: apt-get install chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)
    return CHROMIUM
