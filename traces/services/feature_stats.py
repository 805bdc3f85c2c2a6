"""Weight-based feature statistics (logit lens, decoder neighbours): computed once per SAE in an
``analysis`` worker, stored as two Parquet artifacts, read one feature at a time by the web.

Artifacts, beside each other under ``saes/<sae name>/<params sha256[:16]>/``:

- ``logit_lens.parquet``: ``feature`` (int32), ``promoted_ids``/``suppressed_ids`` (list of
  int32 token ids, strongest first) and ``promoted_values``/``suppressed_values`` (list of
  float32 logit contributions);
- ``decoder_neighbours.parquet``: ``feature``, ``neighbour_ids`` (list of int32) and
  ``neighbour_cosines`` (list of float32), most similar first, never the feature itself.

Rows are sorted by feature in row groups of ``ROW_GROUP`` features, so reading one feature reads
one row group. The schema metadata (``scopeweb`` key, JSON) says what produced the file. Keyed by
the SAE's params hash, so new weights under the same name never show stale figures.

The job's lifecycle is the ``Job`` it is recorded as: queued → running → succeeded | failed.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from django.db import transaction
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobKind, JobState
from scopeweb.jobs.services import (
    JobError,
    job_create,
    job_enqueue,
    job_progress,
    job_running,
    job_succeed,
)
from scopeweb.storage import exists, open_stored, store
from traces.models import SaeRecord
from traces.selectors.features import annotation_labels
from traces.services.saes import sae_folder
from traces.tokens import Decode, piece_text, tokenizer_decode, visible_text

if TYPE_CHECKING:
    from traces.engine.feature_stats import FeatureStats

log = logging.getLogger(__name__)
FORMAT = "scopeweb-feature-stats/1"
LOGIT_LENS = "logit_lens.parquet"
NEIGHBOURS = "decoder_neighbours.parquet"
ROW_GROUP = 1024


def feature_stats_folder(sae: SaeRecord) -> str:
    return f"saes/{sae.name}/{sae.params_sha256[:16]}"


def feature_stats_ready(sae: SaeRecord) -> bool:
    folder = feature_stats_folder(sae)
    return all(exists(f"{folder}/{name}") for name in (LOGIT_LENS, NEIGHBOURS))


# --- the job ---------------------------------------------------------------------------------


def feature_stats_job(sae: SaeRecord) -> Job | None:
    """The newest job computing this SAE's current weights, finished or not."""
    return (
        Job.objects.filter(
            kind=JobKind.FEATURE_STATS,
            params__sae_id=sae.pk,
            params__params_sha256=sae.params_sha256,
        )
        .order_by("-created_at")
        .first()
    )


def feature_stats_start(sae: SaeRecord, *, actor: Actor, queue: bool = True) -> Job:
    """Queue the computation on the ``analysis`` queue, unless a job for these weights is
    already queued or running (then that job is returned)."""
    with transaction.atomic():
        current = feature_stats_job(sae)
        if current is not None and not current.finished:
            return current
        job = job_create(
            kind=JobKind.FEATURE_STATS,
            title=f"Logit lens and decoder neighbours of {sae.name}",
            created_by=actor.user,
            params={"sae_id": sae.pk, "params_sha256": sae.params_sha256},
        )
        if queue:
            job_enqueue(job, "traces.tasks.analysis_feature_stats_task")
    return job


def feature_stats_execute(job_id: uuid.UUID | str) -> str | None:
    """Compute and store the artifacts for the job's SAE; returns their folder. Called by the
    task (in a worker) and by ``manage.py logit_lens``."""
    from scopeweb_tracer.sae import SaeError
    from traces.engine import runtime
    from traces.engine.feature_stats import feature_stats, unembedding

    job = Job.objects.get(pk=job_id)
    if job.finished:
        return None
    with job_running(job_id):
        record = SaeRecord.objects.filter(pk=job.params.get("sae_id")).first()
        if record is None:
            raise JobError("The SAE was removed from the registry before the job ran.")
        try:
            loaded = runtime.model_for(record.model_name, runtime.default_dtype())
        except ValueError as exc:
            raise JobError(f"The model {record.model_name!r} cannot be loaded: {exc}") from None
        try:
            sae = runtime.sae_for(sae_folder(record), loaded)
        except SaeError as exc:
            raise JobError(f"The SAE cannot be used: {exc}") from None
        if sae.params_sha256 != record.params_sha256:
            raise JobError(
                f"{record.name}'s params.safetensors changed since it was registered; register "
                "it again, then compute."
            )

        def progress(done: int, total: int) -> None:
            job_progress(job_id, done=done, total=total, note=f"logit lens: {done:,} of {total:,}")

        stats = feature_stats(sae.sae.w_dec, unembedding(loaded.model), progress=progress)
        folder = feature_stats_write(record, stats, model_weights_sha256=loaded.weights_sha256)
        job_succeed(
            job_id,
            result={
                "sae_id": record.pk,
                "folder": folder,
                "features": stats.d_sae,
                "seconds": round(stats.seconds, 2),
                "dtype": stats.compute_dtype,
            },
            note=f"{stats.d_sae:,} features in {stats.seconds:.1f} s",
        )
        return folder
    return None  # the job failed with a message for its user


# --- the artifacts ---------------------------------------------------------------------------


def _lists(values: np.ndarray, kind: pa.DataType) -> pa.Array:
    k = int(values.shape[1])
    return pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1), type=kind), k)


def _parquet(columns: dict[str, pa.Array], meta: dict[str, Any]) -> bytes:
    table = pa.table(columns).replace_schema_metadata({"scopeweb": json.dumps(meta)})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", row_group_size=ROW_GROUP)
    return buffer.getvalue()


def feature_stats_write(
    sae: SaeRecord, stats: FeatureStats, *, model_weights_sha256: str = ""
) -> str:
    """Store both artifacts (replacing older ones); returns their folder."""
    folder = feature_stats_folder(sae)
    features = pa.array(np.arange(stats.d_sae, dtype=np.int32))
    meta = {
        "format": FORMAT,
        "sae": sae.name,
        "sae_params_sha256": sae.params_sha256,
        "model": sae.model_name,
        "model_weights_sha256": model_weights_sha256,
        "k": int(stats.promoted_ids.shape[1]),
        "dtype": stats.compute_dtype,
        "seconds": round(stats.seconds, 3),
        "computed_at": timezone.now().isoformat(),
    }
    i32, f32 = pa.int32(), pa.float32()
    lens = _parquet(
        {
            "feature": features,
            "promoted_ids": _lists(stats.promoted_ids, i32),
            "promoted_values": _lists(stats.promoted_values, f32),
            "suppressed_ids": _lists(stats.suppressed_ids, i32),
            "suppressed_values": _lists(stats.suppressed_values, f32),
        },
        meta | {"what": "logit lens: w_dec[i] @ W_U.T, top and bottom k"},
    )
    neighbours = _parquet(
        {
            "feature": features,
            "neighbour_ids": _lists(stats.neighbour_ids, i32),
            "neighbour_cosines": _lists(stats.neighbour_cosines, f32),
        },
        meta | {"what": "decoder cosine neighbours, self excluded"},
    )
    store(f"{folder}/{LOGIT_LENS}", lens)
    store(f"{folder}/{NEIGHBOURS}", neighbours)
    return folder


def _read_row(name: str, index: int) -> dict[str, Any] | None:
    """One feature's row; the sort order and row statistics let pyarrow read one row group."""
    try:
        with open_stored(name) as handle:
            table = pq.read_table(handle, filters=[("feature", "==", index)])
    except (OSError, pa.ArrowInvalid) as exc:
        log.warning("feature stats: %s unreadable (%s)", name, exc)
        return None
    rows = table.to_pylist()
    return rows[0] if rows else None


# --- what the feature page shows -------------------------------------------------------------


@dataclass(frozen=True)
class LensToken:
    token_id: int
    piece: str  # the vocabulary piece, as the label suggestion reads it
    shown: str  # its text with whitespace drawn
    value: float


@dataclass(frozen=True)
class Neighbour:
    index: int
    cosine: float
    label: str


@dataclass(frozen=True)
class FeatureLens:
    promoted: list[LensToken]
    suppressed: list[LensToken]
    neighbours: list[Neighbour]


@dataclass(frozen=True)
class FeatureStatsView:
    """What the page shows: the figures when computed, else the job computing them (or the
    failed one), so it can offer a button, "computing…" or the failure."""

    lens: FeatureLens | None
    job: Job | None

    @property
    def computing(self) -> bool:
        return self.lens is None and self.job is not None and not self.job.finished

    @property
    def failed(self) -> bool:
        return self.lens is None and self.job is not None and self.job.state == JobState.FAILED


def feature_lens(sae: SaeRecord, index: int, *, decode: Decode | None = None) -> FeatureLens | None:
    """The feature's promoted and suppressed tokens and its decoder neighbours, or None when
    they are not computed (or their files are unreadable)."""
    folder = feature_stats_folder(sae)
    lens = _read_row(f"{folder}/{LOGIT_LENS}", index)
    near = _read_row(f"{folder}/{NEIGHBOURS}", index)
    if lens is None or near is None:
        return None
    ids = [*lens["promoted_ids"], *lens["suppressed_ids"]]
    pieces = (decode or tokenizer_decode)([int(i) for i in ids])
    tokens = [
        LensToken(int(i), piece, visible_text(piece_text(piece)), float(v))
        for i, piece, v in zip(
            ids, pieces, [*lens["promoted_values"], *lens["suppressed_values"]], strict=True
        )
    ]
    count = len(lens["promoted_ids"])
    labels = annotation_labels(sae.pk, {int(i) for i in near["neighbour_ids"]})
    neighbours = [
        Neighbour(int(i), float(c), labels[int(i)].label if int(i) in labels else "")
        for i, c in zip(near["neighbour_ids"], near["neighbour_cosines"], strict=True)
    ]
    return FeatureLens(promoted=tokens[:count], suppressed=tokens[count:], neighbours=neighbours)


def feature_stats_view(
    sae: SaeRecord, index: int, *, decode: Decode | None = None
) -> FeatureStatsView:
    lens = feature_lens(sae, index, decode=decode) if feature_stats_ready(sae) else None
    return FeatureStatsView(lens=lens, job=None if lens else feature_stats_job(sae))


def feature_promoted_pieces(sae: SaeRecord, index: int) -> list[str]:
    """The logit lens's promoted pieces, strongest first, for the label suggestion ([] when
    not computed)."""
    lens = feature_lens(sae, index) if feature_stats_ready(sae) else None
    return [token.piece for token in lens.promoted] if lens else []
