"""Chunks from columns a tracer computed in the serving process (``scopeweb_tracer.tracer``):
the same rounding, hashes, feature index and redaction as ``analyze_chunk_multi``, without a
forward pass. The caller (``traces.services.shipped_features``) has checked every column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from traces.engine.analyze import (
    ChunkResult,
    Prepared,
    TokenRedaction,
    chunk_results,
    empty_arrays,
    fill_rows,
)
from traces.engine.model import LoadedModel
from traces.engine.prompt_ids import PromptInput


@dataclass(frozen=True)
class ShippedTrace:
    """A request a tracer analysed in the serving process: its tokens, and per SAE its
    columns (``top_idx``, ``top_val``, ``l0``, ``recon_err``, ``resid_norm``, checked by the
    caller) with its Σ‖y − μ‖² (``sq_dev``)."""

    token_ids: list[int]
    prompt_tokens: int
    truncated: bool
    completion: str
    columns: list[dict[str, np.ndarray]]  # one per SAE, in the order of the results
    sq_dev: list[float]


def chunk_from_shipped(
    loaded: LoadedModel,
    prompts: Sequence[tuple[int, PromptInput]],
    shipped: Sequence[ShippedTrace],
    *,
    saes: int,
    top_k: int,
    redaction: TokenRedaction | None = None,
) -> list[ChunkResult]:
    """The chunk a run would store for requests a tracer already encoded: the same rounding,
    hashes, index and redaction as ``analyze_chunk_multi``, without a forward pass."""
    prepared = Prepared(
        [list(t.token_ids) for t in shipped],
        [t.prompt_tokens for t in shipped],
        [t.truncated for t in shipped],
        [t.completion for t in shipped],
    )
    rows = prepared.rows
    per_sae = [empty_arrays(int(rows[-1]), top_k) for _ in range(saes)]
    sq_dev = np.zeros((saes, len(shipped)), dtype=np.float64)
    for index, trace in enumerate(shipped):
        n = len(trace.token_ids)
        for which in range(saes):
            columns = dict(trace.columns[which])
            columns["top_val"] = columns["top_val"].astype(np.float16)
            fill_rows(per_sae[which], int(rows[index]), columns, slice(0, n))
            sq_dev[which, index] = trace.sq_dev[which]
    return chunk_results(loaded, prompts, prepared, per_sae, sq_dev, redaction)
