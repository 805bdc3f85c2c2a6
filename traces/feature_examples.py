"""A feature's top activating examples: windows of tokens around its peak in its strongest
traces, coloured by its activation, as Neuronpedia's feature pages show them.

The index (``TraceFeature``) picks the traces; each distinct chunk file is read once and each
trace's rows decoded through ``traces.bundle``; one tokenizer call turns every window's ids into
strings. Colours come from the trace strip's scale (``traces.trace_colours``), with one top for
every window, the strongest example's peak, so windows compare at a glance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from traces.feature_tokens import Decode, feature_peak_traces, tokenizer_decode
from traces.models import SaeRecord, TraceFeature
from traces.trace_colours import activation_style
from traces.trace_tokens import piece_text, visible_text

EXAMPLES = 20
WINDOW = 10  # tokens either side of the peak


@dataclass(frozen=True)
class WindowToken:
    position: int
    shown: str
    value: float  # this feature's activation at the token (0 where not among the kept top-k)
    style: str
    peak: bool


@dataclass(frozen=True)
class FeatureExample:
    trace_id: int
    run_id: int
    prompt_position: int
    peak: float
    count: int
    peak_position: int
    tokens: list[WindowToken]  # empty when the trace's arrays are gone
    cut_before: bool  # the trace goes on before the window (BOS is never shown)
    cut_after: bool
    prompt_text: str  # what to show when the arrays are gone


@dataclass
class _Found:
    row: TraceFeature
    values: np.ndarray  # [window] float32; empty when the arrays are gone
    ids: list[int]
    start: int
    peak_position: int


def feature_examples(
    sae: SaeRecord,
    index: int,
    *,
    limit: int = EXAMPLES,
    window: int = WINDOW,
    decode: Decode | None = None,
) -> list[FeatureExample]:
    """The feature's ``limit`` strongest traces, each as ``window`` tokens either side of its
    peak, strongest first. A trace whose chunk files are gone comes without its window."""
    from traces.bundle import decode_rows

    found: list[_Found] = []
    for row, files in feature_peak_traces(sae, index, limit):
        trace = row.trace
        if files is None:
            found.append(_Found(row, np.zeros(0, np.float32), [], 0, row.first_position))
            continue
        arrays = decode_rows(files, trace.run.top_k, trace.row, trace.row + trace.tokens)
        hits = arrays["top_idx"] == index  # [tokens, top_k]
        values = (arrays["top_val"].astype(np.float32) * hits).max(axis=1)  # [tokens]
        values[:1] = 0.0  # BOS: an outlier, and kept out of the index
        peak = int(values.argmax()) if values.any() else row.first_position
        start, stop = max(1, peak - window), min(trace.tokens, peak + window + 1)
        ids = [int(i) for i in arrays["token_ids"][start:stop]]
        found.append(_Found(row, values[start:stop], ids, start, peak))
    if not found:
        return []
    pieces = iter((decode or tokenizer_decode)([i for f in found for i in f.ids]))
    top = max((float(f.values.max()) for f in found if f.ids), default=0.0)
    examples = []
    for f in found:
        tokens = [
            WindowToken(
                position=f.start + offset,
                shown=visible_text(piece_text(next(pieces))),
                value=float(value),
                style=activation_style(float(value), top),
                peak=f.start + offset == f.peak_position,
            )
            for offset, value in enumerate(f.values.tolist())
        ]
        trace = f.row.trace
        examples.append(
            FeatureExample(
                trace_id=trace.pk,
                run_id=trace.run_id,
                prompt_position=trace.prompt.position,
                peak=f.row.max_activation,
                count=f.row.count,
                peak_position=f.peak_position,
                tokens=tokens,
                cut_before=f.start > 1,
                cut_after=f.start + len(f.ids) < trace.tokens,
                prompt_text=trace.prompt.text[:200] if not f.ids else "",
            )
        )
    return examples
