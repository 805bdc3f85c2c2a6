"""The engine: per-token SAE features for a chunk of prompts.

For each prompt it tokenises (BOS first), optionally samples a completion, runs the model only
up to the SAE's hook, encodes with the SAE and keeps per token the top-k active latents, L0, the
squared reconstruction error and the residual norm. The BOS token is kept in the arrays but left
out of every per-trace figure and of the feature index (its activations are outliers).

With a ``TokenRedaction`` (profiles that redact before storage) the model still reads the
original text; afterwards each trace's token strings go through PII detection, and a token
inside a span is stored as the tokenizer's pad id with its category's code in ``redacted``
(see ``traces.bundle.redaction``), so activations and metrics stay those of the original while no
token string of the span is stored. A generated completion is stored redacted the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scopeweb_tracer.encode import SparseCodes, encode_sparse
from scopeweb_tracer.sae import LoadedSae
from traces.bundle.format import canonicalize, trace_hash
from traces.bundle.redaction import REDACTION_RUN_START, redaction_code
from traces.engine.capture import batches_by_length, capture_hooks, make_batch
from traces.engine.model import LoadedModel
from traces.engine.prompt_ids import PromptInput, prompt_token_ids
from traces.tokens import piece_text


@dataclass
class TraceResult:
    key: int  # the caller's id for the prompt
    row: int
    tokens: int
    prompt_tokens: int
    truncated: bool
    completion: str
    l0: float
    fvu: float  # sq_err / sq_dev
    sq_err: float  # Σ‖y − ŷ‖² over the trace's tokens, BOS excluded
    sq_dev: float  # Σ‖y − μ‖², μ the SAE's dataset-level mean (traces.engine.quality)
    resid_norm: float
    sha256: str
    # (feature, max activation, count, first position), BOS excluded
    features: list[tuple[int, float, int, int]] = field(default_factory=list)


@dataclass
class ChunkResult:
    arrays: dict[str, np.ndarray]
    traces: list[TraceResult]
    tokens: int


# Token texts -> (shown texts, category per token): ``scopeweb.redaction.redact_tokens``'s shape,
# where the first token of a span shows ``[CATEGORY]`` and the rest "".
FindPii = Callable[[list[str]], tuple[list[str], list[str | None]]]


@dataclass(frozen=True)
class TokenRedaction:
    """Redaction of stored token strings: ``find`` detects PII in a trace's token texts,
    ``codes`` gives each category's stored code (``traces.bundle.redaction.redaction_codes``)."""

    find: FindPii
    codes: dict[str, int]


def _pad_id(loaded: LoadedModel) -> int:
    found = loaded.tokenizer.token_to_id("<pad>")
    return int(found) if found is not None else 0


def _redaction_marks(
    loaded: LoadedModel, sequence: list[int], redaction: TokenRedaction
) -> tuple[np.ndarray, list[str]]:
    """The ``redacted`` byte of each token of ``sequence`` and its ``[CATEGORY]`` label ("" when
    kept). BOS takes no part in detection."""
    texts = [""] + [piece_text(loaded.tokenizer.id_to_token(int(i)) or "") for i in sequence[1:]]
    shown, categories = redaction.find(texts)
    marks = np.zeros(len(sequence), dtype=np.uint8)
    labels = []
    for position, category in enumerate(categories):
        labels.append(f"[{category}]" if category is not None else "")
        if category is not None:
            marks[position] = redaction_code(category, redaction.codes, first=bool(shown[position]))
    return marks, labels


def _redacted_completion(
    loaded: LoadedModel, ids: list[int], marks: np.ndarray, labels: list[str]
) -> str:
    """The completion's text with each redacted span replaced by its ``[CATEGORY]`` (also when
    the span began in the prompt)."""
    parts: list[str] = []
    kept: list[int] = []
    for position, token in enumerate(ids):
        if not marks[position]:
            kept.append(token)
            continue
        if kept:
            parts.append(loaded.tokenizer.decode(kept))
            kept = []
        if marks[position] & REDACTION_RUN_START or position == 0 or not marks[position - 1]:
            parts.append(labels[position])
    if kept:
        parts.append(loaded.tokenizer.decode(kept))
    return "".join(parts)


def _generate(
    loaded: LoadedModel, ids: list[int], new_tokens: int, seed: int, limit: int
) -> list[int]:
    room = min(new_tokens, limit - len(ids))
    if room <= 0:
        return []
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = loaded.model.generate(
            torch.tensor([ids], device=loaded.device),
            max_new_tokens=room,
            do_sample=True,
            top_k=50,
            pad_token_id=0,
        )
    return [int(t) for t in out[0, len(ids) :].tolist()]


L0_MAX = int(np.iinfo(np.int16).max)


@dataclass
class Prepared:
    """A chunk's token sequences, shared by every SAE of the pass."""

    sequences: list[list[int]]
    prompt_lengths: list[int]
    truncated: list[bool]
    completions: list[str]

    @property
    def rows(self) -> np.ndarray:
        return np.cumsum([0] + [len(s) for s in self.sequences])


def _prepare(
    loaded: LoadedModel,
    prompts: Sequence[tuple[int, PromptInput]],
    capture_limit: int,
    generate_tokens: int,
    seed: int,
    completions: Mapping[int, str] | None = None,
) -> Prepared:
    prepared = Prepared([], [], [], [])
    encoded = prompt_token_ids(loaded, [prompt for _, prompt in prompts])
    for (key, _), ids in zip(prompts, encoded, strict=True):
        given = (completions or {}).get(key)
        room = capture_limit - min(len(ids), capture_limit)
        prepared.truncated.append(len(ids) > capture_limit)
        ids = ids[:capture_limit]
        prepared.prompt_lengths.append(len(ids))
        if given is not None:  # teacher-forced: the completion the service gave, read as is
            forced = loaded.tokenizer.encode(given, add_special_tokens=False).ids
            prepared.truncated[-1] |= len(forced) > room
            extra = [int(t) for t in forced[:room]]
        else:
            extra = _generate(loaded, ids, generate_tokens, seed + key, capture_limit)
        prepared.completions.append(loaded.tokenizer.decode(extra) if extra else "")
        prepared.sequences.append(ids + extra)
    return prepared


def empty_arrays(total: int, top_k: int) -> dict[str, np.ndarray]:
    return {
        "token_ids": np.zeros(total, dtype=np.int32),
        "top_idx": np.full((total, top_k), -1, dtype=np.int32),
        "top_val": np.zeros((total, top_k), dtype=np.float16),
        "l0": np.zeros(total, dtype=np.int16),
        "recon_err": np.zeros(total, dtype=np.float32),
        "resid_norm": np.zeros(total, dtype=np.float32),
        "is_completion": np.zeros(total, dtype=np.uint8),
        "redacted": np.zeros(total, dtype=np.uint8),
    }


@torch.inference_mode()
def analyze_chunk(
    loaded: LoadedModel, sae: LoadedSae, prompts: Sequence[tuple[int, PromptInput]], **options: Any
) -> ChunkResult:
    """``analyze_chunk_multi`` with one SAE."""
    return analyze_chunk_multi(loaded, [sae], prompts, **options)[0]


@torch.inference_mode()
def analyze_chunk_multi(
    loaded: LoadedModel,
    saes: Sequence[LoadedSae],
    prompts: Sequence[tuple[int, PromptInput]],
    *,
    top_k: int,
    capture_limit: int,
    generate_tokens: int = 0,
    seed: int = 0,
    max_batch_tokens: int = 8192,
    redaction: TokenRedaction | None = None,
    completions: Mapping[int, str] | None = None,
) -> list[ChunkResult]:
    """One forward pass per batch, stopped after the deepest hook of any SAE, feeds every SAE;
    each gets the arrays one single-SAE run would have written (the same hashes).
    ``completions`` (by prompt key) are read teacher-forced after their prompts instead of
    generating: what a production request answered (ingestion)."""
    prepared = _prepare(loaded, prompts, capture_limit, generate_tokens, seed, completions)
    sequences, rows = prepared.sequences, prepared.rows
    total = int(rows[-1])
    per_sae = [empty_arrays(total, top_k) for _ in saes]
    sq_dev = np.zeros((len(saes), len(sequences)), dtype=np.float64)  # Σ‖y − μ‖², BOS excluded
    hooks = list({h.name: h for s in saes for h in (s.config.hook_in, s.config.hook_out)}.values())
    for group in batches_by_length([len(s) for s in sequences], max_tokens=max_batch_tokens):
        batch = make_batch([sequences[i] for i in group], 0, loaded.device)
        captured = capture_hooks(loaded.model, hooks, batch)
        real = batch.attention_mask.bool()
        lengths = [len(sequences[i]) for i in group]
        for which, sae in enumerate(saes):
            x = captured[sae.config.hook_in.name][real]  # [batch tokens, d_in], prompt by prompt
            y = captured[sae.config.hook_out.name][real].float()  # what is reconstructed
            codes = encode_sparse(sae.sae, x, top_k)
            err = (y - codes.recon).pow(2).sum(1)
            norm = x.float().norm(dim=1)
            mean = sae.target_mean if sae.target_mean is not None else y.mean(0)
            dev = (y - mean.to(y.device)).double().pow(2).sum(1).cpu().numpy()
            columns = _host_columns(codes, err, norm)
            at = 0
            for index, n in zip(group, lengths, strict=True):
                here = slice(at, at + n)
                fill_rows(per_sae[which], int(rows[index]), columns, here)
                sq_dev[which, index] = float(dev[here][1:].sum())
                at += n
    return chunk_results(loaded, prompts, prepared, per_sae, sq_dev, redaction)


def chunk_results(
    loaded: LoadedModel,
    prompts: Sequence[tuple[int, PromptInput]],
    prepared: Prepared,
    per_sae: list[dict[str, np.ndarray]],
    sq_dev: np.ndarray,
    redaction: TokenRedaction | None,
) -> list[ChunkResult]:
    """Each SAE's filled columns completed with the tokens and the redaction, then rounded,
    hashed and indexed as stored."""
    rows = prepared.rows
    results = []
    marks = _redact(loaded, prepared, redaction)
    for arrays, devs in zip(per_sae, sq_dev, strict=True):
        for index, sequence in enumerate(prepared.sequences):
            start, stop = int(rows[index]), int(rows[index + 1])
            arrays["token_ids"][start:stop] = sequence
            arrays["is_completion"][start + prepared.prompt_lengths[index] : stop] = 1
        if marks is not None:
            arrays["redacted"][:] = marks
            arrays["token_ids"][marks > 0] = _pad_id(loaded)
        results.append(_chunk_result(arrays, prompts, prepared, devs))
    return results


def _host_columns(codes: SparseCodes, err: torch.Tensor, norm: torch.Tensor) -> dict[str, Any]:
    """A batch's per-token results as the bundle's columns, copied to the host once."""
    return {
        "top_idx": codes.indices.cpu().numpy(),
        "top_val": codes.values.cpu().numpy().astype(np.float16),
        # int16 in the bundle: an L0 of 32,767 or more (only a pathological token) saturates
        "l0": codes.l0.clamp_max(L0_MAX).cpu().numpy(),
        "recon_err": err.cpu().numpy(),
        "resid_norm": norm.cpu().numpy(),
    }


def fill_rows(
    arrays: dict[str, np.ndarray], start: int, columns: dict[str, Any], here: slice
) -> None:
    """Copy one prompt's rows (``here`` in the batch) to its rows from ``start`` in the chunk."""
    n = here.stop - here.start
    for name, values in columns.items():
        target = arrays[name][start : start + n]
        if values.ndim == 2:
            target[:, : values.shape[1]] = values[here]
        else:
            target[:] = values[here]


def _redact(
    loaded: LoadedModel, prepared: Prepared, redaction: TokenRedaction | None
) -> np.ndarray | None:
    """Every token's ``redacted`` byte (after the model read the original: only what is stored
    changes); redacted completions are rewritten in ``prepared``."""
    if redaction is None:
        return None
    rows = prepared.rows
    marks_all = np.zeros(int(rows[-1]), dtype=np.uint8)
    for index, sequence in enumerate(prepared.sequences):
        marks, labels = _redaction_marks(loaded, sequence, redaction)
        if not marks.any():
            continue
        marks_all[int(rows[index]) : int(rows[index + 1])] = marks
        cut = prepared.prompt_lengths[index]
        if prepared.completions[index]:
            prepared.completions[index] = _redacted_completion(
                loaded, sequence[cut:], marks[cut:], labels[cut:]
            )
    return marks_all


def _chunk_result(
    arrays: dict[str, np.ndarray],
    prompts: Sequence[tuple[int, PromptInput]],
    prepared: Prepared,
    sq_dev: np.ndarray,
) -> ChunkResult:
    # Stored values are rounded (see traces.bundle.format); hash and index what is stored.
    canonicalize(arrays)
    rows = prepared.rows
    traces = []
    for index, (key, _) in enumerate(prompts):
        start, stop = int(rows[index]), int(rows[index + 1])
        span = slice(start + 1, stop)  # BOS left out of the figures
        err = float(arrays["recon_err"][span].astype(np.float64).sum())
        traces.append(
            TraceResult(
                key=key,
                row=start,
                tokens=stop - start,
                prompt_tokens=prepared.prompt_lengths[index],
                truncated=prepared.truncated[index],
                completion=prepared.completions[index],
                l0=float(arrays["l0"][span].mean()) if stop - start > 1 else 0.0,
                fvu=err / sq_dev[index] if sq_dev[index] > 0 else 0.0,
                sq_err=err,
                sq_dev=float(sq_dev[index]),
                resid_norm=float(arrays["resid_norm"][span].mean()) if stop - start > 1 else 0.0,
                sha256=trace_hash(arrays, start, stop),
                features=_feature_index(arrays, start + 1, stop),
            )
        )
    return ChunkResult(arrays=arrays, traces=traces, tokens=int(rows[-1]))


def _feature_index(
    arrays: dict[str, np.ndarray], start: int, stop: int
) -> list[tuple[int, float, int, int]]:
    """Per feature among the kept top-k: max activation, count of tokens, first position."""
    idx = arrays["top_idx"][start:stop]
    val = arrays["top_val"][start:stop].astype(np.float32)
    keep = idx >= 0
    if not keep.any():
        return []
    features = idx[keep]
    values = val[keep]
    positions = np.broadcast_to(np.arange(1, 1 + stop - start)[:, None], idx.shape)[keep]
    order = np.lexsort((positions, features))
    features, values, positions = features[order], values[order], positions[order]
    unique, first_at, counts = np.unique(features, return_index=True, return_counts=True)
    maxima = np.maximum.reduceat(values, first_at)
    return [
        (int(f), float(m), int(c), int(positions[i]))
        for f, m, c, i in zip(unique, maxima, counts, first_at, strict=True)
    ]
