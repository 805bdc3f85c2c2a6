"""A run's chunk files are written under an attempt's own names and published only once the
chunk's commit holds: a redelivered chunk that was committed never rewrites published files, a
killed attempt's files are replaced, and a kill between commit and publishing is finished on
resume. On local storage and on S3 (moto's server)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from django.core.files.storage import default_storage

from scopeweb.storage import exists, publish, read_bytes, store
from tests.factories import make_run, make_sae, make_trace
from tests.governance.conftest import s3_endpoint, s3_storage  # noqa: F401  (fixtures)
from tests.traces.test_bundle import _chunk
from traces.bundle.chunks import (
    chunk_publish_recovered,
    encode_chunk,
    pending_chunk_files,
    publish_chunk,
    write_pending_chunk,
)
from traces.bundle.format import (
    CHUNK_PARTS,
    chunk_name,
    parse_pending_chunk_name,
    pending_chunk_name,
    trace_hash,
)
from traces.models import AnalysisRun, Trace
from traces.services.run_execution import _publish_recovered, chunk_store

pytestmark = pytest.mark.django_db
PREFIX = "runs/test-run"
BOUNDS = [(0, 100), (100, 300)]  # two traces: rows [0, 100) and [100, 300)


def _traces(arrays: dict[str, np.ndarray]) -> list[tuple[int, int, str]]:
    return [(a, b - a, trace_hash(arrays, a, b)) for a, b in BOUNDS]


def test_pending_names_are_never_bundle_names_and_parse_back() -> None:
    name = pending_chunk_name(PREFIX, 7, "tokens", "a1b2")
    assert name == f"{PREFIX}/chunk-00007.tokens.parquet.a1b2.partial"
    assert parse_pending_chunk_name(name.rsplit("/", 1)[1]) == (7, "tokens", "a1b2")
    for other in (
        "chunk-00007.tokens.parquet",
        "manifest.json",
        "chunk-x.tokens.parquet.a.partial",
    ):
        assert parse_pending_chunk_name(other) is None


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_pending_chunk_is_invisible_until_published(
    backend: str, request: pytest.FixtureRequest
) -> None:
    if backend == "s3":
        request.getfixturevalue("s3_storage")
    arrays = _chunk()
    store(chunk_name(PREFIX, 3, "tokens"), b"an older file")  # replaced by publishing
    pending = write_pending_chunk(PREFIX, 3, arrays)
    assert read_bytes(chunk_name(PREFIX, 3, "tokens")) == b"an older file"
    assert not exists(chunk_name(PREFIX, 3, "features"))
    assert set(pending_chunk_files(PREFIX)[3].popitem()[1]) == set(CHUNK_PARTS)

    publish_chunk(pending)
    files = encode_chunk(arrays)
    for part in CHUNK_PARTS:
        assert read_bytes(chunk_name(PREFIX, 3, part)) == files[part]
    assert pending_chunk_files(PREFIX) == {}


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_publish_replaces_the_target(backend: str, request: pytest.FixtureRequest) -> None:
    if backend == "s3":
        request.getfixturevalue("s3_storage")
    store("runs/x/a.partial", b"new")
    store("runs/x/a", b"old")
    publish("runs/x/a.partial", "runs/x/a")
    assert read_bytes("runs/x/a") == b"new" and not exists("runs/x/a.partial")


def _result(run: AnalysisRun, arrays: dict[str, np.ndarray]) -> Any:
    """What the engine hands ``chunk_store`` for one chunk of the run's first two prompts."""
    prompts = list(run.prompt_set.prompts.order_by("position"))
    items = [
        SimpleNamespace(
            key=prompt.pk,
            row=row,
            tokens=tokens,
            prompt_tokens=tokens,
            truncated=False,
            completion="",
            l0=10.0,
            fvu=0.1,
            resid_norm=50.0,
            sha256=sha,
            features=[],
            sq_err=1.0,
            sq_dev=2.0,
        )
        for prompt, (row, tokens, sha) in zip(prompts, _traces(arrays), strict=False)
    ]
    return SimpleNamespace(arrays=arrays, traces=items, tokens=300)


def test_a_chunk_committed_by_an_earlier_delivery_is_skipped_and_its_files_kept() -> None:
    run = make_run(sae=make_sae(), chunks_total=2)
    first = _chunk(seed=1)
    assert chunk_store(run, 0, _result(run, first), 1.0, None) is True
    published = {part: read_bytes(chunk_name(run.artifact_prefix, 0, part)) for part in CHUNK_PARTS}

    # The same chunk again, as a redelivered (or concurrent) attempt computes it, on another
    # device: its rows and files are dropped, the published files stay those committed.
    assert chunk_store(run, 0, _result(run, _chunk(seed=2)), 1.0, None) is False
    for part in CHUNK_PARTS:
        assert read_bytes(chunk_name(run.artifact_prefix, 0, part)) == published[part]
    assert pending_chunk_files(run.artifact_prefix) == {}
    run.refresh_from_db()
    assert run.chunks_done == 1 and Trace.objects.filter(run=run).count() == 2


def test_a_killed_attempts_pending_files_do_not_stop_the_chunk_from_being_stored() -> None:
    run = make_run(sae=make_sae(), chunks_total=1)
    arrays = _chunk(seed=1)
    write_pending_chunk(run.artifact_prefix, 0, _chunk(seed=9))  # killed before its commit
    assert chunk_store(run, 0, _result(run, arrays), 1.0, None) is True
    files = encode_chunk(arrays)
    for part in CHUNK_PARTS:
        assert read_bytes(chunk_name(run.artifact_prefix, 0, part)) == files[part]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_kill_between_commit_and_publishing_is_finished_with_the_committed_files(
    backend: str, request: pytest.FixtureRequest
) -> None:
    """Two attempts left pending files of chunk 0; only one holds the committed traces'
    hashes, and that one is published on resume. Chunk 1 is not committed: left alone."""
    if backend == "s3":
        request.getfixturevalue("s3_storage")
    run = make_run(sae=make_sae(), chunks_total=2, chunks_done=1, top_k=8)
    committed, other = _chunk(seed=1), _chunk(seed=2)
    for position, (row, tokens, sha) in enumerate(_traces(committed)):
        make_trace(run, position, chunk=0, row=row, tokens=tokens, arrays_sha256=sha)
    write_pending_chunk(run.artifact_prefix, 0, other)
    write_pending_chunk(run.artifact_prefix, 0, committed)
    later = write_pending_chunk(run.artifact_prefix, 1, other)

    _publish_recovered(run)
    files = encode_chunk(committed)
    for part in CHUNK_PARTS:
        assert read_bytes(chunk_name(run.artifact_prefix, 0, part)) == files[part]
        assert not exists(chunk_name(run.artifact_prefix, 1, part))
        assert exists(later.temp[part])
    assert len(pending_chunk_files(run.artifact_prefix)[0]) == 1  # the other attempt's

    # Published chunks are never touched again.
    assert chunk_publish_recovered(run.artifact_prefix, 1, 8, lambda chunk: []) == []
    assert default_storage.exists(chunk_name(run.artifact_prefix, 0, "tokens"))
