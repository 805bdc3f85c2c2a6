"""One trace's tokens with their kept features, read from the run's chunk files.

One decode of the trace's rows (``traces.bundle.chunks``), token strings from the cached
``tokenizers`` tokenizer (never torch, see ``traces.tokens``; each id's text worked out once per
process) and one query for the annotations of every feature the trace holds: a 1000-token trace
costs no per-token query. The result is columnar (``TraceTokens``): the trace page colours and
draws from whole arrays, and ``TraceTokens.tokens`` gives one ``Token`` per position to those
who want rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from traces.bundle.chunks import decode_rows, stored_chunk_files
from traces.bundle.redaction import redacted_category, redacted_texts, redaction_table
from traces.models import Trace
from traces.selectors.features import Label, annotation_labels
from traces.selectors.traces import watched_by_sae
from traces.tokens import Decode, display_pieces, shown_text, template_marks


class ArraysGone(Exception):
    """The trace's chunk files are gone (purged by retention) or unreadable."""


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
    def newlines(self) -> int:
        return self.text.count("\n")


@dataclass
class TraceTokens:
    """A trace's tokens as columns (one list or array row per token), which is what the trace
    page draws from; ``tokens`` gives the same as one ``Token`` per position."""

    trace: Trace
    token_ids: list[int]
    texts: list[str]  # what each piece stands for (a redacted span: its category, then "")
    shown: list[str]  # what the strip draws
    redacted: list[str | None]
    is_completion: list[bool]
    l0: list[int]
    recon_err: list[float]
    resid_norm: list[float]
    top_idx: np.ndarray  # [tokens, top_k] int32: kept latents first, strongest first; -1 after
    top_val: np.ndarray  # [tokens, top_k] float32, 0 where top_idx is -1
    labels: dict[int, Label] = field(default_factory=dict)  # annotated features of the trace
    watched: dict[int, float] = field(default_factory=dict)  # {feature: threshold} of the SAE
    # [tokens] bool: written by a chat template (turn markers, role words and their newlines)
    template: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    turns: dict[int, str] = field(default_factory=dict)  # {position of a turn's start: role}

    def __len__(self) -> int:
        return len(self.token_ids)

    def label(self, index: int) -> str:
        found = self.labels.get(index)
        return found.label if found else ""

    @cached_property
    def kept(self) -> list[int]:
        """How many latents each token kept."""
        return (self.top_idx >= 0).sum(axis=1).tolist()  # type: ignore[no-any-return]

    @cached_property
    def err_ratio(self) -> np.ndarray:
        """Each token's share of unexplained variance, recon_err / resid_norm² (0 where the
        norm is 0)."""
        err = np.asarray(self.recon_err, dtype=np.float64)
        norm = np.asarray(self.resid_norm, dtype=np.float64)
        ratio = np.zeros_like(err)
        np.divide(err, norm**2, out=ratio, where=norm > 0)
        return ratio

    def features(self, position: int) -> list[tuple[int, float]]:
        """The kept latents of the token at ``position``, strongest first."""
        count = self.kept[position]
        return list(
            zip(
                self.top_idx[position, :count].tolist(),
                self.top_val[position, :count].tolist(),
                strict=True,
            )
        )

    @cached_property
    def tokens(self) -> list[Token]:
        return [
            Token(
                position=position,
                token_id=self.token_ids[position],
                text=self.texts[position],
                shown=self.shown[position],
                is_bos=position == 0,
                is_completion=self.is_completion[position],
                l0=self.l0[position],
                recon_err=self.recon_err[position],
                resid_norm=self.resid_norm[position],
                features=self.features(position),
                redacted=self.redacted[position],
            )
            for position in range(len(self))
        ]


def trace_arrays(trace: Trace) -> dict[str, np.ndarray]:
    """The trace's dense rows: ``token_ids [tokens]``, ``top_idx``/``top_val [tokens, top_k]``,
    the per-token metrics and ``redacted``. Raises ``ArraysGone`` when its chunk cannot be read."""
    return trace_rows(trace)[0]


def trace_rows(trace: Trace) -> tuple[dict[str, np.ndarray], dict[int, str]]:
    """``trace_arrays`` and the chunk's redaction code table (code -> category)."""
    files = stored_chunk_files(trace.run.artifact_prefix, trace.chunk)
    if files is None:
        raise ArraysGone(f"chunk {trace.chunk} of run {trace.run_id} is gone")
    arrays = decode_rows(
        files, top_k=trace.run.top_k, start=trace.row, stop=trace.row + trace.tokens
    )
    return arrays, redaction_table(files)


def redacted_display(
    texts: list[str], codes: list[int], table: dict[int, str]
) -> tuple[list[str], list[str | None]]:
    """Token texts with each token redacted before storage shown as its category (``[EMAIL]``
    on the first token of a span, "" on the rest), and each token's category (None: kept)."""
    shown = [
        text if marker is None else marker
        for text, marker in zip(texts, redacted_texts(codes, table), strict=True)
    ]
    return shown, [redacted_category(code, table) for code in codes]


def trace_token_view(trace: Trace, decode: Decode | None = None) -> TraceTokens:
    """Every captured token of ``trace`` with its metrics and kept features, plus the labels of
    those features and the SAE's watched features. Raises ``ArraysGone``."""
    arrays, table = trace_rows(trace)
    ids = arrays["token_ids"].tolist()
    pieces = display_pieces(ids, decode)
    texts = [piece.text for piece in pieces]
    shown = [piece.shown for piece in pieces]
    codes = arrays["redacted"].tolist()
    categories: list[str | None] = [None] * len(ids)
    if any(codes):
        texts, categories = redacted_display(texts, codes, table)
        shown = [
            drawn if category is None else shown_text(text, category)
            for text, drawn, category in zip(texts, shown, categories, strict=True)
        ]
    if pieces and pieces[0].is_bos:
        shown[0] = "BOS"
    template, turns = template_marks(pieces)
    top_idx = arrays["top_idx"]
    indices = {int(f) for f in np.unique(top_idx[top_idx >= 0])}
    sae_id = trace.run.sae_id
    return TraceTokens(
        trace=trace,
        token_ids=ids,
        texts=texts,
        shown=shown,
        redacted=categories,
        is_completion=arrays["is_completion"].astype(bool).tolist(),
        l0=arrays["l0"].tolist(),
        recon_err=arrays["recon_err"].tolist(),
        resid_norm=arrays["resid_norm"].tolist(),
        top_idx=top_idx,
        top_val=arrays["top_val"].astype(np.float32),
        labels=annotation_labels(sae_id, indices),
        watched=watched_by_sae([sae_id]).get(sae_id, {}),
        template=template,
        turns=turns,
    )
