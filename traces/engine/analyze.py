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

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from traces.bundle.format import canonicalize, trace_hash
from traces.bundle.redaction import REDACTION_RUN_START, redaction_code
from traces.engine.capture import batches_by_length, capture_residual, make_batch
from traces.engine.model import LoadedModel
from traces.engine.sae import LoadedSae
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
    fvu: float
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


@torch.inference_mode()
def analyze_chunk(
    loaded: LoadedModel,
    sae: LoadedSae,
    prompts: list[tuple[int, str]],
    *,
    top_k: int,
    capture_limit: int,
    generate_tokens: int = 0,
    seed: int = 0,
    max_batch_tokens: int = 8192,
    redaction: TokenRedaction | None = None,
) -> ChunkResult:
    sequences: list[list[int]] = []
    prompt_lengths: list[int] = []
    truncated: list[bool] = []
    completions: list[str] = []
    encodings = loaded.tokenizer.encode_batch([text for _, text in prompts])
    for (key, _), encoding in zip(prompts, encodings, strict=True):
        ids = list(encoding.ids)
        truncated.append(len(ids) > capture_limit)
        ids = ids[:capture_limit]
        prompt_lengths.append(len(ids))
        extra = _generate(loaded, ids, generate_tokens, seed + key, capture_limit)
        completions.append(loaded.tokenizer.decode(extra) if extra else "")
        sequences.append(ids + extra)

    total = sum(len(s) for s in sequences)
    rows = np.cumsum([0] + [len(s) for s in sequences])
    arrays: dict[str, np.ndarray] = {
        "token_ids": np.zeros(total, dtype=np.int32),
        "top_idx": np.full((total, top_k), -1, dtype=np.int32),
        "top_val": np.zeros((total, top_k), dtype=np.float16),
        "l0": np.zeros(total, dtype=np.int16),
        "recon_err": np.zeros(total, dtype=np.float32),
        "resid_norm": np.zeros(total, dtype=np.float32),
        "is_completion": np.zeros(total, dtype=np.uint8),
        "redacted": np.zeros(total, dtype=np.uint8),
    }
    enc = sae.sae
    module = sae.config.module_path
    sq_dev = np.zeros(len(sequences), dtype=np.float64)  # Σ||x - mean_trace||², BOS excluded
    for group in batches_by_length([len(s) for s in sequences], max_tokens=max_batch_tokens):
        batch = make_batch([sequences[i] for i in group], 0, loaded.device)
        hidden = capture_residual(loaded.model, module, batch)
        for slot, index in enumerate(group):
            n = len(sequences[index])
            x = hidden[slot, :n].float()  # [tokens, d_model]
            f = enc.encode(x.to(enc.w_enc.dtype)).float()  # [tokens, d_sae]
            x_hat = enc.decode(f.to(enc.w_dec.dtype)).float()
            values, indices = f.topk(min(top_k, f.shape[1]), dim=1)
            active = values > 0
            start = rows[index]
            arrays["token_ids"][start : start + n] = sequences[index]
            arrays["top_idx"][start : start + n, : values.shape[1]] = np.where(
                active.cpu().numpy(), indices.cpu().numpy(), -1
            )
            arrays["top_val"][start : start + n, : values.shape[1]] = (
                (values * active).cpu().numpy().astype(np.float16)
            )
            arrays["l0"][start : start + n] = (f > 0).sum(1).cpu().numpy()
            arrays["recon_err"][start : start + n] = (x - x_hat).pow(2).sum(1).cpu().numpy()
            arrays["resid_norm"][start : start + n] = x.norm(dim=1).cpu().numpy()
            arrays["is_completion"][start + prompt_lengths[index] : start + n] = 1
            body = x[1:]
            sq_dev[index] = (
                float((body - body.mean(0)).pow(2).sum())
                if len(body) > 1
                else float(body.pow(2).sum())
            )

    if redaction is not None:  # after the model read the original: only what is stored changes
        pad = _pad_id(loaded)
        for index, sequence in enumerate(sequences):
            marks, labels = _redaction_marks(loaded, sequence, redaction)
            if not marks.any():
                continue
            start, stop = int(rows[index]), int(rows[index + 1])
            arrays["redacted"][start:stop] = marks
            arrays["token_ids"][start:stop][marks > 0] = pad
            cut = prompt_lengths[index]
            if completions[index]:
                completions[index] = _redacted_completion(
                    loaded, sequence[cut:], marks[cut:], labels[cut:]
                )

    # Stored values are rounded (see traces.bundle.format); hash and index what is stored.
    canonicalize(arrays)
    traces = []
    for index, (key, _) in enumerate(prompts):
        start, stop = int(rows[index]), int(rows[index + 1])
        span = slice(start + 1, stop)  # BOS left out of the figures
        err = float(arrays["recon_err"][span].sum())
        traces.append(
            TraceResult(
                key=key,
                row=start,
                tokens=stop - start,
                prompt_tokens=prompt_lengths[index],
                truncated=truncated[index],
                completion=completions[index],
                l0=float(arrays["l0"][span].mean()) if stop - start > 1 else 0.0,
                fvu=err / sq_dev[index] if sq_dev[index] > 0 else 0.0,
                resid_norm=float(arrays["resid_norm"][span].mean()) if stop - start > 1 else 0.0,
                sha256=trace_hash(arrays, start, stop),
                features=_feature_index(arrays, start + 1, stop),
            )
        )
    return ChunkResult(arrays=arrays, traces=traces, tokens=total)


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
