"""A run's token sequences as its bundle stores them (prompt and completion), for passes that
read the same tokens again: a gate's attention statistics."""

from __future__ import annotations

from traces.bundle.chunks import stored_chunk_files, token_rows
from traces.models import AnalysisRun, Trace


def run_token_sequences(run: AnalysisRun, *, limit: int | None = None) -> list[list[int]]:
    """The token ids of the run's traces (first ``limit`` by prompt position) whose chunk is
    still stored; traces of purged chunks are left out."""
    traces = Trace.objects.filter(run=run).order_by("prompt__position")
    rows = list(traces.values_list("chunk", "row", "tokens")[:limit])
    found: list[list[int]] = []
    by_chunk: dict[int, list[tuple[int, int]]] = {}
    for chunk, row, tokens in rows:
        by_chunk.setdefault(chunk, []).append((row, tokens))
    for chunk, spans in sorted(by_chunk.items()):
        files = stored_chunk_files(run.artifact_prefix, chunk)
        if files is None:
            continue
        ids = token_rows(files, columns=["token_id"]).column("token_id").to_pylist()
        found.extend([int(t) for t in ids[row : row + tokens]] for row, tokens in spans)
    return found
