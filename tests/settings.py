"""Test settings: the product's settings with a data directory of the tests' own.

The model cache stays shared with the development data directory so that the tokenizer is built
once per checkout, not once per test run.
"""

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("SCOPEWEB_DATA_DIR", str(_ROOT / "var" / "test"))
os.environ.setdefault("SCOPEWEB_MODEL_CACHE_DIR", str(_ROOT / "var" / "models"))
# No test is throttled by accident; tests/scopeweb/test_throttles.py lowers a rate to see a 429.
for _scope in ("API", "API_ANON", "INGEST", "GATE"):
    os.environ.setdefault(f"SCOPEWEB_{_scope}_RATE", "100000/minute")

from scopeweb.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast; tests only
