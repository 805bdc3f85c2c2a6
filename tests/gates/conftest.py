"""Fixtures of the gate tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reports.pdf.signing import dev_key_create


@pytest.fixture
def dev_key(settings: Any, tmp_path: Path) -> Path:
    """A self-signed development key of this test's own, as ``init_signing_key`` makes it."""
    path = tmp_path / "signing" / "key.p12"
    dev_key_create(path, common_name="Scope Web gate pages test")
    settings.SIGNING_P12_PATH = path
    settings.SIGNING_P12_PASSPHRASE = None
    settings.SIGNING_TSA_URL = ""
    return path
