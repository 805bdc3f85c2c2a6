"""One trace's tokens with their kept features, read from the run's chunk files.

One decode of the trace's rows (``traces.bundle``), one tokenizer call for every token string
(the cached ``tokenizers`` tokenizer, never torch, as in ``traces.feature_tokens``) and one query
for the annotations of every feature the trace holds: a 1000-token trace costs no per-token
query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from traces.feature_tokens import Decode, tokenizer_decode
from traces.models import FeatureAnnotation, Trace
from traces.selectors_traces import watched_by_sae

BOS_PIECE = "<bos>"
_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
# Whitespace made visible; the strip breaks its line after a newline, as the text does.
VISIBLE = {" ": "·", "\n": "↵", "\t": "→", "\r": "␍"}
# An ``IN`` list longer than this becomes one read of the SAE's annotations (SQLite caps
# the number of query parameters).
_IN_LIMIT = 500


class ArraysGone(Exception):
    """The trace's chunk files are gone (purged by retention) or unreadable."""


def piece_text(piece: str) -> str:
    """The text a vocabulary piece stands for: SentencePiece's ``▁`` is a space, and a
    byte-fallback piece (``<0x0A>``) is its byte when that byte is ASCII."""
    return _BYTE.sub(
        lambda m: chr(int(m.group(1), 16)) if int(m.group(1), 16) < 0x80 else m.group(0),
        piece.replace("▁", " "),
    )


def visible_text(text: str) -> str:
    """``text`` with spaces, newlines and tabs drawn (· ↵ →); empty becomes ∅."""
    return "".join(VISIBLE.get(ch, ch) for ch in text) or "∅"


@dataclass(frozen=True)
class Label:
    label: str
    tags: list[str]
    safety_tags: list[str]
    watch_threshold: float | None


@dataclass
class Token:
    position: int
    token_id: int
    text: str  # what the piece stands for
    shown: str  # ``text`` with whitespace drawn
    is_bos: bool
    is_completion: bool
    l0: int
    recon_err: float
    resid_norm: float
    features: list[tuple[int, float]]  # kept latents, strongest first
    redacted: str | None = None  # the category, when the token was redacted before storage

    @property
    def err_ratio(self) -> float:
        """This token's share of unexplained variance: recon_err / resid_norm²."""
        return self.recon_err / (self.resid_norm**2) if self.resid_norm > 0 else 0.0

    @property
    def newlines(self) -> int:
        return self.text.count("\n")


@dataclass
class TraceTokens:
    trace: Trace
    tokens: list[Token]
    labels: dict[int, Label] = field(default_factory=dict)  # annotated features of the trace
    watched: dict[int, float] = field(default_factory=dict)  # {feature: threshold} of the SAE

    def label(self, index: int) -> str:
        found = self.labels.get(index)
        return found.label if found else ""


def trace_arrays(trace: Trace) -> dict[str, np.ndarray]:
    """The trace's dense rows: ``token_ids [tokens]``, ``top_idx``/``top_val [tokens, top_k]``,
    the per-token metrics and ``redacted``. Raises ``ArraysGone`` when its chunk cannot be read."""
    return trace_rows(trace)[0]


def trace_rows(trace: Trace) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """``trace_arrays`` and the chunk's redaction code table (code -> category)."""
    from traces.bundle import decode_rows, redaction_table, stored_chunk_files

    files = stored_chunk_files(trace.run.artifact_prefix, trace.chunk)
    if files is None:
        raise ArraysGone(f"chunk {trace.chunk} of run {trace.run_id} is gone")
    arrays = decode_rows(
        files, top_k=trace.run.top_k, start=trace.row, stop=trace.row + trace.tokens
    )
    return arrays, redaction_table(files)


def redacted_pieces(
    pieces: list[str], codes: list[int], table: dict[int, str]
) -> tuple[list[str], list[str | None]]:
    """Token texts with each token redacted before storage shown as its category (``[EMAIL]``
    on the first token of a span, "" on the rest), and each token's category (None: kept)."""
    from traces.bundle import redacted_category, redacted_texts

    if not any(codes):
        return [piece_text(p) for p in pieces], [None] * len(pieces)
    texts = [
        piece_text(piece) if marker is None else marker
        for piece, marker in zip(pieces, redacted_texts(codes, table), strict=True)
    ]
    return texts, [redacted_category(code, table) for code in codes]


def shown_text(text: str, category: str | None) -> str:
    """What the strip draws: whitespace made visible; a redacted span's category on its first
    token and ``…`` on the rest (so each keeps a place in the strip)."""
    if category is not None:
        return text or "…"
    return visible_text(text)


def annotation_labels(sae_id: int, indices: set[int]) -> dict[int, Label]:
    """Labels and tags of the annotated features among ``indices``, in one query."""
    rows = FeatureAnnotation.objects.filter(sae_id=sae_id)
    if len(indices) <= _IN_LIMIT:
        rows = rows.filter(index__in=sorted(indices))
    labels = {}
    for annotation in rows.only("index", "label", "tags", "watch_threshold"):
        if annotation.index in indices:
            labels[annotation.index] = Label(
                label=annotation.label,
                tags=list(annotation.tags),
                safety_tags=annotation.safety_tags,
                watch_threshold=annotation.watch_threshold,
            )
    return labels


def trace_token_view(trace: Trace, decode: Decode | None = None) -> TraceTokens:
    """Every captured token of ``trace`` with its metrics and kept features, plus the labels of
    those features and the SAE's watched features. Raises ``ArraysGone``."""
    arrays, table = trace_rows(trace)
    ids = [int(i) for i in arrays["token_ids"]]
    pieces = (decode or tokenizer_decode)(ids)
    texts, categories = redacted_pieces(pieces, arrays["redacted"].tolist(), table)
    top_idx = arrays["top_idx"]
    # Python lists once: per-token numpy indexing would cost more than the rest of the page.
    idx_rows, val_rows = top_idx.tolist(), arrays["top_val"].astype(np.float32).tolist()
    # Kept latents come first in each row (canonical order), the -1 padding last.
    kept = (top_idx >= 0).sum(axis=1).tolist()
    l0s, errs = arrays["l0"].tolist(), arrays["recon_err"].tolist()
    norms, completion = arrays["resid_norm"].tolist(), arrays["is_completion"].tolist()
    tokens = []
    for position, (token_id, piece) in enumerate(zip(ids, pieces, strict=True)):
        text, category = texts[position], categories[position]
        is_bos = position == 0
        tokens.append(
            Token(
                position=position,
                token_id=token_id,
                text=text,
                shown="BOS" if is_bos and piece == BOS_PIECE else shown_text(text, category),
                is_bos=is_bos,
                is_completion=bool(completion[position]),
                l0=l0s[position],
                recon_err=errs[position],
                resid_norm=norms[position],
                features=list(
                    zip(idx_rows[position][: kept[position]], val_rows[position], strict=False)
                ),
                redacted=category,
            )
        )
    indices = {int(f) for f in np.unique(top_idx[top_idx >= 0])}
    sae_id = trace.run.sae_id
    return TraceTokens(
        trace=trace,
        tokens=tokens,
        labels=annotation_labels(sae_id, indices),
        watched=watched_by_sae([sae_id]).get(sae_id, {}),
    )
