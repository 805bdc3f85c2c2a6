"""Trace bundles: chunk arrays as safetensors plus a ``manifest.json`` (JSON Schema in
``traces/bundle.schema.json``). Everything goes through Django's storage API, so the bundle lives
on local disk or in S3 alike, and any safetensors reader opens the arrays without this project.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from safetensors.numpy import save as save_arrays

SCHEMA_PATH = Path(__file__).with_name("bundle.schema.json")
BUNDLE_FORMAT = "scopeweb-trace-bundle/1"


def chunk_name(prefix: str, chunk: int) -> str:
    return f"{prefix}/chunk-{chunk:05d}.safetensors"


def write_chunk(prefix: str, chunk: int, arrays: dict[str, np.ndarray]) -> str:
    """Store one chunk (replacing what an interrupted attempt left); returns its name."""
    data = save_arrays({k: np.ascontiguousarray(v) for k, v in arrays.items()})
    name = chunk_name(prefix, chunk)
    if default_storage.exists(name):
        default_storage.delete(name)
    saved = default_storage.save(name, ContentFile(data))
    if saved != name:  # a storage that renamed instead of replacing would break the manifest
        raise RuntimeError(f"storage saved {name} as {saved}")
    return name


def write_manifest(prefix: str, manifest: dict[str, Any]) -> str:
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    name = f"{prefix}/manifest.json"
    if default_storage.exists(name):
        default_storage.delete(name)
    default_storage.save(name, ContentFile(data))
    return hashlib.sha256(data).hexdigest()
