"""Tests that need a tool outside Python (Debian's chromium, poppler's pdfsig and pdftotext).

Without the tool such a test is skipped on a developer's machine, but in CI (``CI`` set, as
``.ci/run`` does) it fails and says what to install: CI must never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def needs(*commands: str, package: str) -> pytest.MarkDecorator:
    """Mark a test that runs ``commands`` (found on PATH or as absolute paths)."""
    missing = [c for c in commands if not (shutil.which(c) or os.path.exists(c))]
    return pytest.mark.needs_tool(missing=missing, package=package)


def check_tools(item: pytest.Item) -> None:
    """Skip, or in CI fail, a test whose ``needs_tool`` commands are missing."""
    for marker in item.iter_markers("needs_tool"):
        missing = marker.kwargs["missing"]
        if missing:
            what = f"{', '.join(missing)} not found (apt-get install {marker.kwargs['package']})"
            if IN_CI:
                pytest.fail(f"CI runs this test and needs it: {what}", pytrace=False)
            pytest.skip(what)
