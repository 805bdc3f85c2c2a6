"""The chunk format: what the engine hashes is exactly what a reader gets back from Parquet."""

from __future__ import annotations

import io

import numpy as np
import pyarrow.parquet as pq

from traces.bundle import (
    VALUE_MANTISSA_BITS,
    canonical_top_k,
    canonicalize,
    decode_rows,
    encode_chunk,
    round_values,
    trace_hash,
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


def test_the_files_are_plain_parquet_tables() -> None:
    arrays = _chunk(tokens=50)
    files = encode_chunk(arrays)
    tokens = pq.read_table(io.BytesIO(files["tokens"])).to_pandas()
    kept = pq.read_table(io.BytesIO(files["features"])).to_pandas()
    assert list(tokens.columns) == ["token_id", "l0", "recon_err", "resid_norm", "is_completion"]
    assert list(kept.columns) == ["feature", "row", "value"]
    assert len(kept) == int((arrays["top_idx"] >= 0).sum())
    first = kept[kept["row"] == 0].sort_values("value", ascending=False)
    assert first["feature"].tolist() == [f for f in arrays["top_idx"][0] if f >= 0]
