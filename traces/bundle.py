"""Trace bundles: per chunk, two Parquet files plus one ``manifest.json`` per run (JSON Schema in
``traces/bundle.schema.json``). Everything goes through Django's storage API, so a bundle lives
on local disk or in S3 alike, and pandas or pyarrow open the files without this project's code.

- ``chunk-NNNNN.tokens.parquet``: one row per captured token (``token_id``, ``l0``,
  ``recon_err``, ``resid_norm``, ``is_completion``, ``redacted``); a trace is rows
  ``[row, row + tokens)``.
- ``chunk-NNNNN.features.parquet``: one row per kept (token, latent): ``feature``, ``row`` (the
  token's row in the tokens file) and ``value``, sorted by feature then row within each block
  of ``ROW_GROUP_TOKENS`` tokens. That order makes the row column a run of small steps and lets
  Parquet's delta encoding plus zstd store a top-32 token in about 60 bytes instead of 200.

Both files hold one Parquet row group per block of ``ROW_GROUP_TOKENS`` token rows (format /3),
so a reader decodes only the blocks a trace's rows fall in: a 1000-token trace of a 32-prompt
chunk reads 2 of 32 blocks. Row groups are found from the row counts (tokens) and the ``row``
column's min/max statistics (features), which is also how files of format /2 (one sorted row
group per chunk) still read, whole.

Activation values are float16 rounded to ``VALUE_MANTISSA_BITS`` mantissa bits (relative error
at most 2^-6, 1.6 %), and ``recon_err``/``resid_norm`` float32 rounded to
``METRIC_MANTISSA_BITS`` (2^-9, 0.2 %): that is what lets them compress. The engine rounds before it
hashes (``canonicalize``), so the stored values are exactly the hashed ones.

A trace's sha256 covers its dense arrays (``trace_hash``): for each name in ``ARRAY_NAMES``, the
name in UTF-8, then the C-order bytes of its rows, where ``top_idx``/``top_val`` are
``[tokens, top_k]`` ordered by value (descending) then feature, padded with -1 / 0; then, only
when one of its tokens is redacted, ``redacted`` the same way (so a trace without redaction
hashes as in format /3).

Redaction before storage (format /4, profiles that redact before storage): the model reads the
original text, but a token inside a PII span is stored with ``token_id`` = the tokenizer's pad
id and ``redacted`` = its category's code (``REDACTION_CODES``; ``REDACTION_RUN_START`` set on
the first token of each redacted span), so its string never reaches storage while its
activations stay in place. Each tokens file carries its code table in the Parquet key-value
metadata (``REDACTION_TABLE_KEY``) and the manifest repeats it. Files without the column
(formats /2 and /3) read as "nothing redacted".
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import IO, Any, Literal, overload

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage

log = logging.getLogger(__name__)
SCHEMA_PATH = Path(__file__).with_name("bundle.schema.json")
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
# Redaction category codes (bits 0-6; 0: not redacted). Built-in categories have fixed codes;
# an admin pattern's category gets one from CUSTOM_CODE_BASE on, per run (see the file's table).
REDACTION_CODES = {
    "EMAIL": 1,
    "PHONE": 2,
    "CREDIT_CARD": 3,
    "IBAN": 4,
    "IP_ADDRESS": 5,
    "UK_NHS": 6,
    "UK_NINO": 7,
    "FR_NIR": 8,
    "US_SSN": 9,
}
CUSTOM_CODE_BASE = 32
OTHER_CODE = 127  # a category missing from the table (never expected): still redacted
OTHER_CATEGORY = "PII"
REDACTION_RUN_START = 0x80
REDACTION_TABLE_KEY = b"scopeweb.redaction_codes"
CHUNK_PARTS = ("tokens", "features")
VALUE_MANTISSA_BITS = 5
METRIC_MANTISSA_BITS = 8
_PARQUET = {"compression": "zstd", "write_statistics": True}


def chunk_name(prefix: str, chunk: int, part: str) -> str:
    return f"{prefix}/chunk-{chunk:05d}.{part}.parquet"


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


def redaction_codes(categories: list[str] | tuple[str, ...] = ()) -> dict[str, int]:
    """Category -> code: the built-in ones, then ``categories`` not among them (sorted)."""
    extra = sorted(set(categories) - set(REDACTION_CODES))
    table = dict(REDACTION_CODES)
    for offset, category in enumerate(extra):
        if CUSTOM_CODE_BASE + offset >= OTHER_CODE:
            break  # more categories than codes: the rest read as OTHER_CATEGORY
        table[category] = CUSTOM_CODE_BASE + offset
    return table


def redaction_code(category: str, codes: dict[str, int], *, first: bool) -> int:
    """The stored ``redacted`` byte of a token of ``category`` (``first``: of its span)."""
    return codes.get(category, OTHER_CODE) | (REDACTION_RUN_START if first else 0)


def redaction_table(files: dict[str, bytes]) -> dict[int, str]:
    """Code -> category of a chunk, from its tokens file (the built-in table when it has none)."""
    meta = pq.ParquetFile(io.BytesIO(files["tokens"])).schema_arrow.metadata or {}
    raw = meta.get(REDACTION_TABLE_KEY)
    table = {code: category for category, code in REDACTION_CODES.items()}
    if raw:
        table |= {int(code): str(category) for code, category in json.loads(raw).items()}
    return table | {OTHER_CODE: OTHER_CATEGORY}


def redacted_texts(codes: list[int], table: dict[int, str]) -> list[str | None]:
    """Per token: None when kept, ``[CATEGORY]`` on the first token of a redacted span (and on
    the first of ``codes`` when it starts inside one), "" on the rest of the span."""
    shown: list[str | None] = []
    previous = 0
    for code in codes:
        if not code:
            shown.append(None)
        elif code & REDACTION_RUN_START or not previous:
            category = table.get(code & ~REDACTION_RUN_START & 0xFF, OTHER_CATEGORY)
            shown.append(f"[{category}]")
        else:
            shown.append("")
        previous = code
    return shown


def redacted_category(code: int, table: dict[int, str]) -> str | None:
    return table.get(code & ~REDACTION_RUN_START & 0xFF, OTHER_CATEGORY) if code else None


def encode_chunk(
    arrays: dict[str, np.ndarray], codes: dict[str, int] | None = None
) -> dict[str, bytes]:
    """The chunk's two Parquet files, from its dense arrays (``redacted`` all 0 when absent;
    ``codes``: the redaction code table to store with them)."""
    count = len(arrays["token_ids"])
    tokens = pa.table(
        {
            column: np.asarray(
                arrays[name] if name in arrays else np.zeros(count, dtype), dtype=dtype
            )
            for name, (column, dtype) in TOKEN_COLUMNS.items()
        }
    )
    table = {str(code): category for category, code in (codes or REDACTION_CODES).items()}
    tokens = tokens.replace_schema_metadata(
        {REDACTION_TABLE_KEY: json.dumps(table, sort_keys=True).encode()}
    )
    idx, val = arrays["top_idx"], arrays["top_val"]
    rows, _ = np.nonzero(idx >= 0)
    features, values = idx[idx >= 0], val[idx >= 0]
    order = np.lexsort((rows, features, rows // ROW_GROUP_TOKENS))
    kept = pa.table(
        {
            "feature": features[order].astype(np.int32),
            "row": rows[order].astype(np.int32),
            "value": values[order].astype(np.float16),
        }
    )
    # One row group per block of ROW_GROUP_TOKENS token rows, in both files (at least one).
    starts = range(0, max(len(idx), 1), ROW_GROUP_TOKENS)
    ends = np.searchsorted(rows[order] // ROW_GROUP_TOKENS, np.arange(1, len(starts) + 1))
    return {
        "tokens": _parquet(
            [tokens.slice(at, ROW_GROUP_TOKENS) for at in starts],
            level=9,
            use_dictionary=["token_id", "l0", "is_completion", "redacted"],
            column_encoding={"recon_err": "BYTE_STREAM_SPLIT", "resid_norm": "BYTE_STREAM_SPLIT"},
        ),
        "features": _parquet(
            [kept.slice(a, b - a) for a, b in zip([0, *ends[:-1]], ends, strict=True)],
            level=19,  # about 1 byte per token less than level 9, for 0.1 s per chunk
            use_dictionary=["value"],
            column_encoding={"feature": "DELTA_BINARY_PACKED", "row": "DELTA_BINARY_PACKED"},
        ),
    }


def _parquet(groups: list[pa.Table], level: int, **options: Any) -> bytes:
    """One Parquet file with one row group per table of ``groups`` (same schema)."""
    buffer = io.BytesIO()
    with pq.ParquetWriter(
        buffer, groups[0].schema, compression_level=level, **_PARQUET, **options
    ) as writer:
        for group in groups:
            writer.write_table(group, row_group_size=max(group.num_rows, 1))
    return buffer.getvalue()


def _tokens_groups(meta: pq.FileMetaData, start: int, stop: int) -> tuple[list[int], int]:
    """Row groups of a tokens file holding rows ``[start, stop)``, and the first one's row."""
    groups: list[int] = []
    first = at = 0
    for g in range(meta.num_row_groups):
        rows = meta.row_group(g).num_rows
        if at < stop and at + rows > start:
            if not groups:
                first = at
            groups.append(g)
        at += rows
    return groups, first


def _feature_groups(meta: pq.FileMetaData, start: int, stop: int) -> list[int]:
    """Row groups of a features file that may hold rows in ``[start, stop)`` (by the ``row``
    column's statistics; a group without them is kept)."""
    column = meta.schema.to_arrow_schema().get_field_index("row")
    groups = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(column).statistics
        if stats is None or not stats.has_min_max or (stats.min < stop and stats.max >= start):
            groups.append(g)
    return groups


def token_rows(
    files: dict[str, bytes],
    start: int = 0,
    stop: int | None = None,
    columns: list[str] | None = None,
) -> pa.Table:
    """Rows ``[start, stop)`` of a chunk's tokens file (``columns``, default all), reading
    only the row groups they lie in."""
    handle = pq.ParquetFile(io.BytesIO(files["tokens"]))
    stop = handle.metadata.num_rows if stop is None else stop
    groups, first = _tokens_groups(handle.metadata, start, stop)
    names = handle.schema_arrow.names
    wanted = [c for c in columns if c in names] if columns is not None else names
    if not groups:
        table = handle.schema_arrow.empty_table().select(wanted)
    else:
        table = handle.read_row_groups(groups, columns=wanted).slice(start - first, stop - start)
    for column in columns or ():
        if column not in names:  # ``redacted`` in a file of format /3 or older: all kept
            dtype = dict(TOKEN_COLUMNS.values())[column]
            table = table.append_column(column, pa.array(np.zeros(table.num_rows, dtype)))
    return table


def feature_rows(
    files: dict[str, bytes], start: int, stop: int, feature: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, feature, value) of the kept latents of rows ``[start, stop)`` (only ``feature``'s
    when given), reading only the row groups that hold those rows. Rows are chunk rows."""
    handle = pq.ParquetFile(io.BytesIO(files["features"]))
    groups = _feature_groups(handle.metadata, start, stop)
    if not groups:
        empty = np.zeros(0, np.int32)
        return empty, empty, np.zeros(0, np.float16)
    kept = handle.read_row_groups(groups)
    rows = kept.column("row").to_numpy()
    features = kept.column("feature").to_numpy()
    wanted = (rows >= start) & (rows < stop)
    if feature is not None:
        wanted &= features == feature
    values = kept.column("value").to_numpy()
    return rows[wanted], features[wanted], values[wanted]


@overload
def feature_activations(
    files: dict[str, bytes], feature: int, start: int, stop: int, fired: Literal[False] = ...
) -> np.ndarray: ...
@overload
def feature_activations(
    files: dict[str, bytes], feature: int, start: int, stop: int, fired: Literal[True]
) -> np.ndarray | None: ...
def feature_activations(
    files: dict[str, bytes], feature: int, start: int, stop: int, fired: bool = False
) -> np.ndarray | None:
    """``feature``'s value at each of rows ``[start, stop)`` (float32, 0 where it is not among
    the token's kept latents), without decoding the other features. With ``fired``, None when
    it is kept at none of them."""
    rows, _, values = feature_rows(files, start, stop, feature)
    if fired and not len(rows):
        return None
    dense = np.zeros(stop - start, dtype=np.float32)
    dense[rows - start] = values.astype(np.float32)
    return dense


def _canonical_order(rows: np.ndarray, features: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The order that puts kept latents by row, then value (descending), then feature: the
    canonical top-k order. One sort of a packed 64-bit key (row, inverted float16 bits,
    feature), about 7x faster than a three-key ``lexsort``; stored values are positive, so
    their float16 bit patterns sort as the values do. Falls back to ``lexsort`` where a row or
    feature would not fit its bits."""
    if len(rows) and (int(rows.max()) >= 1 << 24 or int(features.max()) >= 1 << 24):
        return np.lexsort((features, -values.astype(np.float32), rows))
    inverted = np.uint64(0xFFFF) - np.asarray(values, np.float16).view(np.uint16).astype(np.uint64)
    key = (
        (rows.astype(np.uint64) << np.uint64(40))
        | (inverted << np.uint64(24))
        | features.astype(np.uint64)
    )
    return np.argsort(key)


def decode_rows(
    files: dict[str, bytes], top_k: int, start: int = 0, stop: int | None = None
) -> dict[str, np.ndarray]:
    """Dense arrays for rows ``[start, stop)`` of a chunk, as the engine hashed them. Reads
    only the row groups those rows lie in."""
    tokens = token_rows(files, start, stop, columns=[c for c, _ in TOKEN_COLUMNS.values()])
    stop = start + tokens.num_rows
    arrays = {
        name: tokens.column(column).to_numpy().astype(dtype)
        for name, (column, dtype) in TOKEN_COLUMNS.items()
    }
    rows, features, values = feature_rows(files, start, stop)
    rows = rows - start
    order = _canonical_order(rows, features, values)
    rows, features, values = rows[order], features[order], values[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    top_idx = np.full((stop - start, top_k), -1, dtype=np.int32)
    top_val = np.zeros((stop - start, top_k), dtype=np.float16)
    top_idx[rows, rank] = features
    top_val[rows, rank] = values
    return arrays | {"top_idx": top_idx, "top_val": top_val}


def write_chunk(
    prefix: str, chunk: int, arrays: dict[str, np.ndarray], codes: dict[str, int] | None = None
) -> list[str]:
    """Store one chunk's files (replacing what an interrupted attempt left); returns names."""
    names = []
    for part, data in encode_chunk(arrays, codes).items():
        name = chunk_name(prefix, chunk, part)
        store_artifact(name, data)
        names.append(name)
    return names


def stored_chunk_files(prefix: str, chunk: int) -> dict[str, bytes] | None:
    """``read_chunk_files``, or None when the chunk is gone (purged by retention, or not
    written yet): pages show what remains instead of failing."""
    try:
        return read_chunk_files(prefix, chunk)
    except OSError as exc:
        log.info("chunk %s of %s unreadable (%s)", chunk, prefix, exc)
        return None


def read_chunk_files(prefix: str, chunk: int) -> dict[str, bytes]:
    files = {}
    for part in CHUNK_PARTS:
        with default_storage.open(chunk_name(prefix, chunk, part), "rb") as handle:
            files[part] = handle.read()
    return files


def write_manifest(prefix: str, manifest: dict[str, Any]) -> str:
    data = (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode()
    store_artifact(f"{prefix}/manifest.json", data)
    return hashlib.sha256(data).hexdigest()


def store_artifact(name: str, data: bytes | IO[bytes]) -> None:
    """Save ``data`` (bytes, or a file open for reading, streamed) under exactly ``name``
    through Django's storage, replacing what is there."""
    if default_storage.exists(name):
        default_storage.delete(name)
    base = name.rsplit("/", 1)[-1]
    content = ContentFile(data) if isinstance(data, bytes) else File(data, name=base)
    saved = default_storage.save(name, content)
    if saved != name:  # a storage that renamed instead of replacing would break the manifest
        raise RuntimeError(f"storage saved {name} as {saved}")
