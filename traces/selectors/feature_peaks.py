"""The tokens a feature fires on most strongly, read from stored traces.

The index (``TraceFeature``) says which traces hold the feature's highest peaks; the run's chunk
files say at which token each peak is. Reading goes through ``traces.bundle.chunks``
(``stored_chunk_files``, ``feature_activations`` for one feature's value at each of a trace's
tokens, ``token_rows`` for token ids), so this file follows the bundle format without knowing
its layout.

Token ids become strings with the model's tokenizer (the ``tokenizers`` library, never torch),
loaded only when there is something to decode.
"""

from __future__ import annotations

from traces.bundle.chunks import feature_activations, stored_chunk_files, token_rows
from traces.bundle.redaction import redacted_category, redaction_table
from traces.models import SaeRecord, TraceFeature
from traces.selectors.features import sae_index_rows
from traces.tokens import Decode, tokenizer_decode


def feature_peak_rows(sae: SaeRecord, index: int, limit: int) -> list[TraceFeature]:
    """The index rows of the feature's ``limit`` strongest traces, strongest first, with each
    trace, its run and its prompt."""
    return list(
        sae_index_rows(sae)
        .filter(feature=index)
        .select_related("trace__run", "trace__prompt")
        .order_by("-max_activation", "pk")[:limit]
    )


def feature_peak_traces(
    sae: SaeRecord, index: int, limit: int
) -> list[tuple[TraceFeature, dict[str, bytes] | None]]:
    """``feature_peak_rows``, each with its chunk's files (each chunk read once; None when they
    are gone)."""
    chunks: dict[tuple[int, int], dict[str, bytes] | None] = {}
    found = []
    for row in feature_peak_rows(sae, index, limit):
        trace = row.trace
        key = (trace.run_id, trace.chunk)
        if key not in chunks:
            chunks[key] = stored_chunk_files(trace.run.artifact_prefix, trace.chunk)
        found.append((row, chunks[key]))
    return found


def feature_top_tokens(
    sae: SaeRecord, index: int, *, limit: int = 20, decode: Decode | None = None
) -> list[str]:
    """Token strings at the feature's peaks in its ``limit`` strongest traces, strongest first.

    BOS is left out, as in the index. Traces whose chunk files are gone are skipped.
    """
    ids: list[int] = []
    redacted: dict[int, str] = {}  # place in ``ids`` -> the category shown instead
    for row, files in feature_peak_traces(sae, index, limit):
        trace = row.trace
        if files is None:
            continue
        # Rows [row + 1, row + tokens): the trace without its BOS token.
        first = trace.row + 1
        peaks = feature_activations(files, index, first, trace.row + trace.tokens, fired=True)
        if peaks is None:
            continue
        at = first + int(peaks.argmax())
        found = token_rows(files, at, at + 1, columns=["token_id", "redacted"])
        code = int(found["redacted"][0].as_py())
        if code:  # redacted before storage: its category, never its text
            redacted[len(ids)] = redacted_category(code, redaction_table(files)) or ""
        ids.append(int(found["token_id"][0].as_py()))
    if not ids:
        return []
    pieces = (decode or tokenizer_decode)(ids)
    return [f"[{redacted[i]}]" if i in redacted else piece for i, piece in enumerate(pieces)]
