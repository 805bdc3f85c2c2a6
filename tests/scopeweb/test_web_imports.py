"""The web process stays small: loading every route never imports torch or transformers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = """
import sys, django
django.setup()
import scopeweb.wsgi, scopeweb.urls
from django.urls import get_resolver
get_resolver().url_patterns
heavy = sorted(m for m in ("torch", "transformers", "gguf") if m in sys.modules)
print(",".join(heavy) or "none")
"""


def test_web_process_never_imports_torch() -> None:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"
