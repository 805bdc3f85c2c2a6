"""The tokens a feature fires on most strongly, read from stored traces.

The index (``TraceFeature``) says which traces hold the feature's highest peaks; the run's chunk
files say at which token each peak is. Reading goes through ``traces.bundle.chunks``
(``stored_chunk_files``, ``feature_activations`` for one feature's value at each of a trace's
tokens, ``token_rows`` for token ids), so this file follows the bundle format without knowing
its layout.

A prompt analysed in several runs (reruns, reproductions, other dtypes) is one example:
``feature_peak_prompts`` keeps its strongest trace and lists the other runs where it fired.

Token ids become strings with the model's tokenizer (the ``tokenizers`` library, never torch),
loaded only when there is something to decode.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from traces.bundle.chunks import feature_activations, stored_chunk_files, token_rows
from traces.bundle.redaction import redacted_category, redaction_table
from traces.models import SaeRecord, Trace, TraceFeature
from traces.selectors.features import sae_index_rows
from traces.tokens import Decode, tokenizer_decode

# Index rows read first per prompt wanted; each time too few distinct prompts turn up, four
# times as many are read again (see ``feature_peak_prompts``).
OVERSAMPLE = 4


def feature_peak_rows(sae: SaeRecord, index: int, limit: int) -> list[TraceFeature]:
    """The index rows of the feature's ``limit`` strongest traces, strongest first, with each
    trace, its run and its prompt."""
    return list(
        sae_index_rows(sae)
        .filter(feature=index)
        .select_related("trace__run", "trace__prompt")
        .order_by("-max_activation", "pk")[:limit]
    )


@dataclass(frozen=True)
class RunTrace:
    run_id: int
    trace_id: int


@dataclass(frozen=True)
class PromptPeak:
    # The prompt's strongest index row, with its trace, its run (the id) and its prompt (its
    # position and text): other columns of the run and prompt are not loaded.
    row: TraceFeature
    also_in: tuple[RunTrace, ...]  # the other runs where the prompt fired for it, by run id


def feature_peak_prompts(sae: SaeRecord, index: int, limit: int) -> list[PromptPeak]:
    """The feature's ``limit`` strongest prompts, strongest first: a prompt analysed in several
    runs (reruns, reproductions, other dtypes) comes once, as its strongest trace, with the
    other runs of ``sae`` where it fired for the feature."""
    # One row per prompt in SQL (DISTINCT ON, or a window over prompts) would read and sort
    # every index row of the feature, 100k+ for a common one, and SQLite has no DISTINCT ON.
    # Instead the strongest rows are read in the order of the (feature, -max_activation)
    # index, a bounded over-sample, and deduplicated here. A prompt has at most one trace per
    # run, so n rows hold at least n / runs prompts: with few runs per prompt set the first
    # read is enough, and a larger one is needed only when one prompt set was run many times.
    rows = sae_index_rows(sae).filter(feature=index).order_by("-max_activation", "pk")
    strongest: dict[int, int] = {}  # prompt id -> its strongest index row, strongest first
    batch = limit * OVERSAMPLE
    while limit > 0:
        found = list(rows.values_list("pk", "trace__prompt_id")[:batch])
        strongest.clear()
        for pk, prompt in found:
            strongest.setdefault(prompt, pk)
            if len(strongest) == limit:
                break
        if len(strongest) == limit or len(found) < batch:
            break
        batch *= 4
    # Then every trace of those prompts where the feature fired, in one query that starts from
    # the prompts' few traces: the strongest row to show, and the other runs to list. What the
    # examples and the API show, and no more: the runs' and prompts' JSON columns (summary,
    # pins, tags, metadata) would be decoded once per row, a row per run of each prompt.
    in_runs: defaultdict[int, list[TraceFeature]] = defaultdict(list)
    found_in = (
        TraceFeature.objects.filter(
            feature=index, trace__prompt_id__in=list(strongest), trace__run__sae=sae
        )
        .select_related("trace__run", "trace__prompt")
        .only(
            *(f.name for f in TraceFeature._meta.concrete_fields),
            *(f"trace__{f.name}" for f in Trace._meta.concrete_fields),
            "trace__run__id",
            "trace__prompt__position",
            "trace__prompt__text",
        )
        .order_by("trace__run_id")
    )
    for row in found_in:
        in_runs[row.trace.prompt_id].append(row)
    peaks = []
    for prompt, pk in strongest.items():
        shown = next((row for row in in_runs[prompt] if row.pk == pk), None)
        if shown is None:  # purged since the first read
            continue
        also_in = tuple(
            RunTrace(run_id=row.trace.run_id, trace_id=row.trace_id)
            for row in in_runs[prompt]
            if row is not shown
        )
        peaks.append(PromptPeak(row=shown, also_in=also_in))
    return peaks


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
