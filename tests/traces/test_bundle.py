"""The chunk format: what the engine hashes is exactly what a reader gets back from Parquet."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

from traces.bundle.chunks import (
    _feature_groups,
    decode_rows,
    encode_chunk,
    feature_activations,
    token_rows,
)
from traces.bundle.format import (
    ROW_GROUP_TOKENS,
    VALUE_MANTISSA_BITS,
    canonical_top_k,
    canonicalize,
    round_values,
    trace_hash,
)
from traces.bundle.redaction import (
    REDACTION_CODES,
    REDACTION_RUN_START,
    redacted_texts,
    redaction_codes,
    redaction_table,
)


def _chunk(
    tokens: int = 300, top_k: int = 8, width: int = 512, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    idx = np.stack([rng.choice(width, top_k, replace=False) for _ in range(tokens)]).astype(
        np.int32
    )
    val = rng.gamma(2.0, 3.0, size=(tokens, top_k)).astype(np.float32)
    idx[::7, top_k // 2 :] = -1  # tokens with fewer active latents than top-k
    val[::7, top_k // 2 :] = 0
    arrays: dict[str, np.ndarray] = {
        "token_ids": rng.integers(0, 262_144, tokens).astype(np.int32),
        "top_idx": idx,
        "top_val": val,
        "l0": rng.integers(0, 100, tokens).astype(np.int16),
        "recon_err": rng.random(tokens).astype(np.float32) * 1e5,
        "resid_norm": rng.random(tokens).astype(np.float32) * 300,
        "is_completion": (np.arange(tokens) > tokens - 20).astype(np.uint8),
    }
    canonicalize(arrays)
    return arrays


def test_rounding_keeps_the_relative_error_under_its_bound() -> None:
    values = np.geomspace(1e-3, 1e4, 10_000).astype(np.float32)
    rounded = round_values(values).astype(np.float32)
    relative = np.abs(rounded - values) / values
    assert relative.max() <= 2.0 ** -(VALUE_MANTISSA_BITS + 1) + 2e-3  # + float16's own error
    assert np.array_equal(round_values(rounded), rounded.astype(np.float16))  # idempotent


def test_canonical_order_is_by_value_then_feature_with_inactive_last() -> None:
    idx = np.array([[5, 3, -1, 9]], dtype=np.int32)
    val = np.array([[1.0, 2.0, 0.0, 2.0]], dtype=np.float32)
    top_idx, top_val = canonical_top_k(idx, val)
    assert top_idx.tolist() == [[3, 9, 5, -1]]
    assert top_val.tolist() == [[2.0, 2.0, 1.0, 0.0]]


def test_a_chunk_decodes_to_the_arrays_that_were_hashed() -> None:
    arrays = _chunk()
    files = encode_chunk(arrays)
    back = decode_rows(files, top_k=8)
    for name, array in arrays.items():
        assert back[name].dtype == array.dtype and np.array_equal(back[name], array), name
    # A trace in the middle: only its rows come back, hashing as the engine hashed them.
    part = decode_rows(files, top_k=8, start=100, stop=160)
    assert trace_hash(part, 0, 60) == trace_hash(arrays, 100, 160)


def test_features_beyond_the_packed_sort_key_still_decode_in_canonical_order() -> None:
    arrays = _chunk(tokens=40, width=512, seed=5)
    kept = arrays["top_idx"] >= 0
    arrays["top_idx"][kept] += 1 << 24  # a width no SAE has yet: the lexsort fallback
    files = encode_chunk(arrays)
    back = decode_rows(files, top_k=8)
    assert np.array_equal(back["top_idx"], arrays["top_idx"])
    assert np.array_equal(back["top_val"], arrays["top_val"])


def test_the_files_are_plain_parquet_tables() -> None:
    arrays = _chunk(tokens=50)
    files = encode_chunk(arrays)
    tokens = pq.read_table(io.BytesIO(files["tokens"])).to_pandas()
    kept = pq.read_table(io.BytesIO(files["features"])).to_pandas()
    assert list(tokens.columns) == [
        "token_id", "l0", "recon_err", "resid_norm", "is_completion", "redacted"
    ]  # fmt: skip
    assert (tokens["redacted"] == 0).all()
    assert list(kept.columns) == ["feature", "row", "value"]
    assert len(kept) == int((arrays["top_idx"] >= 0).sum())
    first = kept[kept["row"] == 0].sort_values("value", ascending=False)
    assert first["feature"].tolist() == [f for f in arrays["top_idx"][0] if f >= 0]


def test_a_long_chunk_is_stored_in_row_groups_and_reads_only_a_traces_groups() -> None:
    arrays = _chunk(tokens=3 * ROW_GROUP_TOKENS + 100, seed=3)
    files = encode_chunk(arrays)
    for name in ("tokens", "features"):
        assert pq.ParquetFile(io.BytesIO(files[name])).metadata.num_row_groups == 4, name
    back = decode_rows(files, top_k=8)
    for name, array in arrays.items():
        assert np.array_equal(back[name], array), name
    # A trace across a group boundary, and one inside a group, hash as the engine hashed them.
    for start, stop in ((ROW_GROUP_TOKENS - 30, ROW_GROUP_TOKENS + 70), (5, 60)):
        part = decode_rows(files, top_k=8, start=start, stop=stop)
        assert trace_hash(part, 0, stop - start) == trace_hash(arrays, start, stop)
    kept = pq.ParquetFile(io.BytesIO(files["features"]))
    assert _feature_groups(kept.metadata, ROW_GROUP_TOKENS - 30, ROW_GROUP_TOKENS + 70) == [0, 1]
    assert _feature_groups(kept.metadata, 5, 60) == [0]


def test_one_features_values_come_without_decoding_the_others() -> None:
    arrays = _chunk(tokens=ROW_GROUP_TOKENS + 300, seed=4)
    files = encode_chunk(arrays)
    feature = int(arrays["top_idx"][ROW_GROUP_TOKENS + 10, 0])
    start, stop = ROW_GROUP_TOKENS - 50, ROW_GROUP_TOKENS + 250
    hits = arrays["top_idx"][start:stop] == feature
    expected = (arrays["top_val"][start:stop].astype(np.float32) * hits).max(axis=1)
    assert np.array_equal(feature_activations(files, feature, start, stop), expected)
    assert feature_activations(files, 10_000, start, stop, fired=True) is None
    ids = token_rows(files, start, stop, columns=["token_id"]).column("token_id").to_numpy()
    assert np.array_equal(ids, arrays["token_ids"][start:stop])


def test_format_2_files_with_one_row_group_still_read() -> None:
    """Format /2 wrote each file as one row group sorted by feature then row."""
    arrays = _chunk(tokens=ROW_GROUP_TOKENS + 500, seed=5)
    files = encode_chunk(arrays)
    old = {}
    for name in ("tokens", "features"):
        table = pq.read_table(io.BytesIO(files[name]))
        if name == "features":
            table = table.sort_by([("feature", "ascending"), ("row", "ascending")])
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        old[name] = buffer.getvalue()
        assert pq.ParquetFile(io.BytesIO(old[name])).metadata.num_row_groups == 1
    part = decode_rows(old, top_k=8, start=ROW_GROUP_TOKENS - 10, stop=ROW_GROUP_TOKENS + 400)
    assert trace_hash(part, 0, 410) == trace_hash(
        arrays, ROW_GROUP_TOKENS - 10, ROW_GROUP_TOKENS + 400
    )


def _redact(
    arrays: dict[str, np.ndarray], rows: slice, category: str, codes: dict[str, int]
) -> None:
    marks = np.zeros(len(arrays["token_ids"]), dtype=np.uint8)
    marks[rows] = codes[category]
    marks[rows.start] |= REDACTION_RUN_START
    arrays["redacted"] = marks
    arrays["token_ids"][rows] = 0


def test_redacted_tokens_store_their_category_code_and_the_pad_id() -> None:
    arrays = _chunk(tokens=120, seed=6)
    codes = redaction_codes(["EMPLOYEE_ID"])
    _redact(arrays, slice(40, 44), "EMPLOYEE_ID", codes)
    files = encode_chunk(arrays, codes)
    back = decode_rows(files, top_k=8)
    assert np.array_equal(back["redacted"], arrays["redacted"])
    assert (back["token_ids"][40:44] == 0).all()
    table = redaction_table(files)
    assert (
        table[codes["EMPLOYEE_ID"]] == "EMPLOYEE_ID" and table[REDACTION_CODES["EMAIL"]] == "EMAIL"
    )
    shown = redacted_texts(back["redacted"][38:46].tolist(), table)
    assert shown == [None, None, "[EMPLOYEE_ID]", "", "", "", None, None]
    # A window that starts inside the span still says what it hides.
    assert redacted_texts(back["redacted"][42:45].tolist(), table) == ["[EMPLOYEE_ID]", "", None]
    # Only a trace with a redacted token hashes the column; it is part of what is pinned.
    assert trace_hash(back, 40, 60) == trace_hash(arrays, 40, 60)
    plain = dict(arrays, redacted=np.zeros_like(arrays["redacted"]))
    assert trace_hash(plain, 40, 60) != trace_hash(arrays, 40, 60)
    without = {k: v for k, v in plain.items() if k != "redacted"}
    assert trace_hash(plain, 0, 30) == trace_hash(without, 0, 30) == trace_hash(arrays, 0, 30)


def test_format_3_files_without_the_redacted_column_still_read() -> None:
    arrays = _chunk(tokens=200, seed=7)
    files = encode_chunk(arrays)
    table = pq.read_table(io.BytesIO(files["tokens"])).drop(["redacted"])
    table = table.replace_schema_metadata(None)
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    old = {"tokens": buffer.getvalue(), "features": files["features"]}
    back = decode_rows(old, top_k=8, start=10, stop=90)
    assert (back["redacted"] == 0).all() and back["redacted"].dtype == np.uint8
    original = {k: v for k, v in arrays.items() if k != "redacted"}
    assert trace_hash(back, 0, 80) == trace_hash(original, 10, 90)
    rows = token_rows(old, 5, 9, columns=["token_id", "redacted"])
    assert rows.column("redacted").to_pylist() == [0, 0, 0, 0]
    assert redaction_table(old)[REDACTION_CODES["UK_NHS"]] == "UK_NHS"
