"""A feature's top activating examples: windows of tokens around its peak in its strongest
traces, coloured by its activation, as Neuronpedia's feature pages show them. A prompt analysed
in several runs comes once, as its strongest trace, with the other runs where it fired
(``feature_peak_prompts``).

The index (``TraceFeature``) picks the traces; each distinct chunk file is read once, and of
each trace only this feature's rows (``traces.bundle.chunks.feature_rows``) and the window's
token ids (``token_rows``) are decoded, from the row groups that hold them; one tokenizer call
turns every window's ids into strings. A window depends only on the chunk's files, so each
process keeps the last ``WINDOW_CACHE`` of them keyed by the files' names, sizes and
modification times (one ``stat`` per file instead of a read and a decode; a file that is gone
or changed is never served from the cache). Colours come from the trace strip's scale
(``traces.display.colours``), with one top for every window, the strongest example's peak, so
windows compare at a glance.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from scopeweb.storage import stored_stamp
from traces.bundle.chunks import feature_activations, stored_chunk_files, token_rows
from traces.bundle.format import CHUNK_PARTS, chunk_name
from traces.bundle.redaction import redacted_texts, redaction_table
from traces.display.colours import activation_style
from traces.models import SaeRecord, Trace, TraceFeature
from traces.selectors.feature_peaks import RunTrace, feature_peak_prompts
from traces.tokens import Decode, piece_text, tokenizer_decode, visible_text

EXAMPLES = 20
WINDOW = 10  # tokens either side of the peak
WINDOW_CACHE = 4096  # windows kept per process (a few hundred bytes each)


@dataclass(frozen=True)
class WindowToken:
    position: int
    shown: str
    value: float  # this feature's activation at the token (0 where not among the kept top-k)
    style: str
    peak: bool
    redacted: bool = False  # redacted before storage: ``shown`` is its category (or …)


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
    also_in: tuple[RunTrace, ...] = ()  # the prompt's traces in other runs where it fired


@dataclass
class _Found:
    row: TraceFeature
    also_in: tuple[RunTrace, ...]
    values: np.ndarray  # [window] float32; empty when the arrays are gone
    ids: list[int]
    start: int
    peak_position: int
    redacted: list[str | None]  # per token: ``[CATEGORY]``/"" when redacted before storage


def feature_examples(
    sae: SaeRecord,
    index: int,
    *,
    limit: int = EXAMPLES,
    window: int = WINDOW,
    decode: Decode | None = None,
) -> list[FeatureExample]:
    """The feature's ``limit`` strongest prompts, each as its strongest trace's ``window``
    tokens either side of its peak, strongest first, with the other runs where the prompt fired
    for the feature. A trace whose chunk files are gone comes without its window."""
    found: list[_Found] = []
    chunks: dict[tuple[int, int], dict[str, bytes] | None] = {}
    for peak_prompt in feature_peak_prompts(sae, index, limit):
        row, also_in = peak_prompt.row, peak_prompt.also_in
        trace = row.trace
        stamp = _chunk_stamp(trace)
        key = (stamp, trace.row, trace.tokens, index, window)
        window_found = _cached(key) if stamp else None
        if window_found is None:
            at = (trace.run_id, trace.chunk)
            if at not in chunks:
                chunks[at] = stored_chunk_files(trace.run.artifact_prefix, trace.chunk)
            files = chunks[at]
            if files is None:
                empty = np.zeros(0, np.float32)
                found.append(_Found(row, also_in, empty, [], 0, row.first_position, []))
                continue
            window_found = _window(files, trace, row, index, window)
            if stamp:
                _remember(key, window_found)
        values, ids, start, peak, redacted = window_found
        found.append(_Found(row, also_in, values, ids, start, peak, redacted))
    if not found:
        return []
    pieces = iter((decode or tokenizer_decode)([i for f in found for i in f.ids]))
    top = max((float(f.values.max()) for f in found if f.ids), default=0.0)
    examples = []
    for f in found:
        tokens = [
            WindowToken(
                position=f.start + offset,
                shown=_shown(next(pieces), f.redacted[offset]),
                value=float(value),
                style=activation_style(float(value), top),
                peak=f.start + offset == f.peak_position,
                redacted=f.redacted[offset] is not None,
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
                also_in=f.also_in,
            )
        )
    return examples


# values, token ids, start, peak position, redaction markers
_Window = tuple[np.ndarray, list[int], int, int, list[str | None]]


def _shown(piece: str, marker: str | None) -> str:
    return visible_text(piece_text(piece)) if marker is None else (marker or "…")


_WINDOWS: OrderedDict[tuple[object, ...], _Window] = OrderedDict()
_WINDOWS_LOCK = threading.Lock()


def _window(
    files: dict[str, bytes], trace: Trace, row: TraceFeature, index: int, window: int
) -> _Window:
    """The feature's values and the token ids ``window`` tokens either side of its peak in
    ``trace``, read from only the row groups that hold them."""
    values = feature_activations(files, index, trace.row, trace.row + trace.tokens)
    values[:1] = 0.0  # BOS: an outlier, and kept out of the index
    peak = int(values.argmax()) if values.any() else row.first_position
    start, stop = max(1, peak - window), min(trace.tokens, peak + window + 1)
    rows = token_rows(files, trace.row + start, trace.row + stop, columns=["token_id", "redacted"])
    ids = [int(i) for i in rows.column("token_id").to_numpy()]
    codes = [int(c) for c in rows.column("redacted").to_numpy()]
    redacted: list[str | None] = [None] * len(ids)
    if any(codes):
        redacted = redacted_texts(codes, redaction_table(files))
    return values[start:stop], ids, start, peak, redacted


def _chunk_stamp(trace: Trace) -> tuple[object, ...] | None:
    """Name, size and modification time of each of the trace's chunk files, or None when a
    file cannot be stat-ed (gone, or a storage that cannot tell): then the files are read."""
    stamp: list[object] = []
    for part in CHUNK_PARTS:
        name = chunk_name(trace.run.artifact_prefix, trace.chunk, part)
        found = stored_stamp(name)
        if found is None:
            return None
        stamp += found
    return (trace.arrays_sha256, *stamp)


def _cached(key: tuple[object, ...]) -> _Window | None:
    with _WINDOWS_LOCK:
        found = _WINDOWS.get(key)
        if found is not None:
            _WINDOWS.move_to_end(key)
        return found


def _remember(key: tuple[object, ...], found: _Window) -> None:
    with _WINDOWS_LOCK:
        _WINDOWS[key] = found
        while len(_WINDOWS) > WINDOW_CACHE:
            _WINDOWS.popitem(last=False)
