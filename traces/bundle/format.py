"""The bundle format's constants and file names, the rounding of stored values, the
canonical top-k order and the trace hash (see the package docstring)."""

from __future__ import annotations

import hashlib

import numpy as np

BUNDLE_FORMAT = "scopeweb-trace-bundle/4"  # /2 and /3 (no ``redacted`` column) read the same way
ROW_GROUP_TOKENS = 2048  # +6 % bytes over one row group per chunk; a trace reads 1/8 of it
ARRAY_NAMES = ("token_ids", "top_idx", "top_val", "l0", "recon_err", "resid_norm", "is_completion")
TOKEN_COLUMNS = {  # array name -> (column, dtype)
    "token_ids": ("token_id", np.int32),
    "l0": ("l0", np.int16),
    "recon_err": ("recon_err", np.float32),
    "resid_norm": ("resid_norm", np.float32),
    "is_completion": ("is_completion", np.uint8),
    "redacted": ("redacted", np.uint8),
}
CHUNK_PARTS = ("tokens", "features")
VALUE_MANTISSA_BITS = 5
METRIC_MANTISSA_BITS = 8


def chunk_file_name(chunk: int, part: str) -> str:
    """The file name of a chunk's ``part`` ("tokens" or "features") inside its bundle."""
    return f"chunk-{chunk:05d}.{part}.parquet"


def chunk_name(prefix: str, chunk: int, part: str) -> str:
    """The storage name of a chunk's ``part`` of the bundle under ``prefix``."""
    return f"{prefix}/{chunk_file_name(chunk, part)}"


PENDING_SUFFIX = ".partial"


def pending_chunk_name(prefix: str, chunk: int, part: str, attempt: str) -> str:
    """Where attempt ``attempt`` (letters and digits) stores a chunk's ``part`` until its
    commit holds: never a name the bundle lists, so no reader meets it."""
    return f"{chunk_name(prefix, chunk, part)}.{attempt}{PENDING_SUFFIX}"


def parse_pending_chunk_name(file_name: str) -> tuple[int, str, str] | None:
    """(chunk, part, attempt) of a pending file's name (without its folder); None for others."""
    if not file_name.endswith(PENDING_SUFFIX):
        return None
    stem, _, attempt = file_name.removesuffix(PENDING_SUFFIX).rpartition(".")
    for part in CHUNK_PARTS:
        head, found, tail = stem.partition(f".{part}.parquet")
        if found and not tail and head.startswith("chunk-") and head[6:].isdigit():
            return (int(head[6:]), part, attempt) if attempt.isalnum() else None
    return None


def round_values(values: np.ndarray) -> np.ndarray:
    """float16 with ``VALUE_MANTISSA_BITS`` mantissa bits, rounded to nearest (ties up)."""
    return _round_mantissa(np.asarray(values, dtype=np.float16), VALUE_MANTISSA_BITS)


def round_metric(values: np.ndarray) -> np.ndarray:
    """float32 with ``METRIC_MANTISSA_BITS`` mantissa bits (relative error at most 2^-9)."""
    return _round_mantissa(np.asarray(values, dtype=np.float32), METRIC_MANTISSA_BITS)


def _round_mantissa(values: np.ndarray, keep: int) -> np.ndarray:
    """Non-negative floats rounded to ``keep`` mantissa bits; the dropped bits become zero,
    which is what lets the column compress."""
    unsigned = {np.dtype(np.float16): (np.uint16, 10), np.dtype(np.float32): (np.uint32, 23)}
    kind, mantissa = unsigned[values.dtype]
    drop = mantissa - keep
    bits = values.view(kind).astype(np.uint64)
    rounded = ((bits + (1 << (drop - 1))) >> drop) << drop
    return rounded.astype(kind).view(values.dtype)


def canonical_top_k(idx: np.ndarray, val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round values and order each token's latents by value (descending), then feature; latents
    whose value rounds to zero count as inactive (-1, 0) and go last."""
    values = round_values(val)
    active = (idx >= 0) & (values > 0)
    idx = np.where(active, idx, -1).astype(np.int32)
    values = np.where(active, values, np.float16(0))
    order = np.lexsort((idx, -values.astype(np.float32), ~active), axis=-1)
    return np.take_along_axis(idx, order, -1), np.take_along_axis(values, order, -1)


def canonicalize(arrays: dict[str, np.ndarray]) -> None:
    """Round and order a chunk's dense arrays, in place, to exactly what is stored."""
    arrays["top_idx"], arrays["top_val"] = canonical_top_k(arrays["top_idx"], arrays["top_val"])
    for name in ("recon_err", "resid_norm"):
        arrays[name] = round_metric(arrays[name])


def trace_hash(arrays: dict[str, np.ndarray], start: int, stop: int) -> str:
    digest = hashlib.sha256()
    for name in ARRAY_NAMES:
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(arrays[name][start:stop]).tobytes())
    redacted = arrays.get("redacted")
    if redacted is not None and redacted[start:stop].any():
        digest.update(b"redacted")
        digest.update(np.ascontiguousarray(redacted[start:stop], dtype=np.uint8).tobytes())
    return digest.hexdigest()
