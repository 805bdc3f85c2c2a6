"""The instrumentation manifest a serving process traces by: the document Scope Web exports
(Tracing → a manifest → Export YAML, or ``manage.py manifest export SERVICE``), read from a file.

JSON needs nothing; YAML needs PyYAML (``pip install pyyaml``). Only the sampling and capture
fields are read here (``sample_rate``, ``rules``, ``forensic_windows``, ``max_tokens_capture``,
``top_k``, ``saes``); Scope Web samples again on arrival with its own current version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA_ID = "scopeweb.instrumentation-manifest/v1"


class ManifestFileError(ValueError):
    """The file is not a manifest this tracer can read; the message says why."""


def load_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest document in ``path`` (``.json``, or YAML otherwise)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestFileError(f"{path}: cannot be read ({exc})") from None
    if path.suffix.lower() == ".json":
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ManifestFileError(f"{path}: not valid JSON ({exc})") from None
    else:
        try:
            import yaml
        except ImportError:
            raise ManifestFileError(f"{path}: reading YAML needs PyYAML") from None
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ManifestFileError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(document, dict) or document.get("schema", SCHEMA_ID) != SCHEMA_ID:
        raise ManifestFileError(f"{path}: not a Scope Web instrumentation manifest ({SCHEMA_ID})")
    rate = document.get("sample_rate", 0.01)
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not 0 <= rate <= 1:
        raise ManifestFileError(f"{path}: sample_rate must be a number from 0 to 1")
    return document
