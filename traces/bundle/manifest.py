"""A run's manifest: ``manifest.json`` beside its chunk files, its JSON Schema
(``schema.json``), building it when a run finishes, and reading it back checked against the
sha256 the run recorded.

The manifest pins everything a run read and wrote: model weights, tokenizer, SAE parameters,
prompt file, software versions, device, each chunk file's sha256 and size, and each trace's
sha256 (``traces.bundle.format.trace_hash``).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scopeweb.redaction.custom import custom_patterns_of
from scopeweb.storage import Digest, bytes_sha256, read_bytes, store, stored_digest
from traces.bundle.format import (
    BUNDLE_FORMAT,
    CHUNK_PARTS,
    VALUE_MANTISSA_BITS,
    chunk_file_name,
    chunk_name,
)
from traces.bundle.redaction import REDACTION_RUN_START, redaction_codes
from traces.models import AnalysisRun, Trace

MANIFEST_NAME = "manifest.json"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
SCHEMA_NAME = "manifest.schema.json"  # what the schema is called beside an exported manifest
ChunkFiles = dict[int, dict[str, Digest]]  # chunk -> part -> its stored file's sha256 and size


def manifest_path(prefix: str) -> str:
    """The storage name of the manifest of the bundle under ``prefix``."""
    return f"{prefix}/{MANIFEST_NAME}"


class ManifestError(Exception):
    """A run's manifest that cannot be used; the message says why."""


class ManifestMissing(ManifestError):
    """No manifest is stored: the run is still running, or its bundle was purged."""


@dataclass(frozen=True)
class StoredManifest:
    """A run's stored manifest: its bytes, their sha256, and what it records of each chunk."""

    name: str
    data: bytes
    sha256: str
    content: dict[str, Any]
    chunk_files: dict[int, dict[str, str]]  # chunk -> part -> the sha256 recorded for its file


def manifest_load(run: AnalysisRun) -> StoredManifest:
    """The run's stored manifest, checked against the sha256 the run recorded when it
    finished. Raises ``ManifestMissing`` when none is stored and ``ManifestError`` when it
    changed since or cannot be read."""
    name = manifest_path(run.artifact_prefix)
    try:
        data = read_bytes(name)
    except OSError as exc:
        raise ManifestMissing(f"Run {run.pk} has no stored manifest ({name}).") from exc
    sha256 = bytes_sha256(data)
    if run.manifest_sha256 and sha256 != run.manifest_sha256:
        raise ManifestError(
            f"The manifest of run {run.pk} changed since the run finished "
            f"(sha256 {sha256}, recorded {run.manifest_sha256})."
        )
    try:
        content = json.loads(data)
        recorded = {
            int(chunk["index"]): {part: chunk["files"][part]["sha256"] for part in CHUNK_PARTS}
            for chunk in content["chunks"]
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"The manifest of run {run.pk} cannot be read ({exc}).") from exc
    return StoredManifest(name, data, sha256, content, recorded)


def manifest_write(prefix: str, manifest: dict[str, Any]) -> str:
    """Store the manifest of the bundle under ``prefix``; returns its sha256."""
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    store(manifest_path(prefix), data)
    return bytes_sha256(data)


def chunk_digests(run: AnalysisRun) -> ChunkFiles:
    """The sha256 and size of each of the run's chunk files as storage holds them now (not as
    they were sent: a chunk may come from an earlier attempt)."""
    return {
        index: {
            part: stored_digest(chunk_name(run.artifact_prefix, index, part))
            for part in CHUNK_PARTS
        }
        for index in range(run.chunks_total)
    }


def manifest_build(run: AnalysisRun, files: ChunkFiles) -> dict[str, Any]:
    """The manifest of a finished run: its settings, pins, software, device, redaction rule,
    every chunk file with its sha256 and size (``files``: what storage holds, from
    ``chunk_digests``) and every trace with its sha256."""
    import numpy
    import pyarrow
    import torch
    import transformers

    traces = Trace.objects.filter(run=run).select_related("prompt").order_by("prompt__position")
    chunks: dict[int, int] = {}
    for trace in traces:
        chunks[trace.chunk] = chunks.get(trace.chunk, 0) + trace.tokens
    return {
        "format": BUNDLE_FORMAT,
        "run": run.pk,
        "created_at": run.created_at.isoformat(),
        "settings": {
            "top_k": run.top_k,
            "capture_limit": run.capture_limit,
            "dtype": run.dtype,
            "generate_tokens": run.generate_tokens,
            "seed": run.seed,
            "chunk_prompts": run.chunk_prompts,
            "model": run.sae.model_name,
            "hook_point": run.sae.hook_point,
            "sae": run.sae.name,
            "retention_profile": run.profile.code,
        },
        "pins": run.pins,
        "software": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "pyarrow": pyarrow.__version__,
            "numpy": numpy.__version__,
        },
        "device": run.device_kind,
        "redaction": _redaction(run),
        "files": {
            "tokens": {
                "token_id": "int32, the Gemma token id (the first row of a trace is BOS)",
                "l0": "int16, active latents at this token",
                "recon_err": "float32, squared error of the SAE reconstruction",
                "resid_norm": "float32, L2 norm of the residual at the hook",
                "is_completion": "uint8, 1 for generated tokens",
                "redacted": "uint8, 0 when stored as given; else the redaction category's code "
                "(see redaction.codes; +128 on the first token of a span), token_id then "
                "being the pad id",
            },
            "features": {
                "feature": "int32, latent index (rows sorted by feature, then row)",
                "row": "int32, the token's row in the chunk's tokens file",
                "value": f"float16 activation, rounded to {VALUE_MANTISSA_BITS} mantissa bits; "
                f"each token keeps its top {run.top_k} active latents",
            },
        },
        "chunks": [
            {
                "index": index,
                "tokens": tokens,
                "files": {
                    part: {
                        "file": chunk_file_name(index, part),
                        "sha256": files[index][part].sha256,
                        "bytes": files[index][part].size,
                    }
                    for part in CHUNK_PARTS
                },
            }
            for index, tokens in sorted(chunks.items())
        ],
        "traces": [
            {
                "prompt_position": trace.prompt.position,
                "prompt_id": trace.prompt.external_id or None,
                "chunk": trace.chunk,
                "row": trace.row,
                "tokens": trace.tokens,
                "prompt_tokens": trace.prompt_tokens,
                "truncated": trace.truncated,
                "sha256": trace.arrays_sha256,
            }
            for trace in traces
        ],
    }


def _redaction(run: AnalysisRun) -> dict[str, Any]:
    """The manifest's ``redaction``: the profile's rule and, when token strings were redacted
    before storage, the code table of the ``redacted`` column."""
    found: dict[str, Any] = {"rule": run.profile.redaction, "before_storage": False}
    if run.profile.redacts_before_storage:
        patterns = custom_patterns_of(run.profile.custom_patterns)
        codes = redaction_codes([category for _, _, category in patterns])
        found |= {
            "before_storage": True,
            "codes": {str(code): category for category, code in sorted(codes.items())},
            "span_start_flag": REDACTION_RUN_START,
        }
    return found
