"""Reads for the run page's metrics (DESIGN.md, "Metrics"): the per-trace distributions of L0,
FVU and residual norm, the features that fire most often and most strongly, the flagged rate,
the unsafe output rate and the anomaly rate against a baseline run's [p1, p99] band.

Everything but the unsafe output rate reads the index (``Trace`` and ``TraceFeature``). The
unsafe output rate needs to know which tokens the model generated, which only the chunk files
hold; it reads only the chunks of flagged traces that captured completion tokens (a completion
token over a threshold makes its trace flagged), so a run without generation or without a
flagged trace costs no read at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from django.db.models import Count, F, Max, QuerySet

from scopeweb.jobs.models import JobState
from traces.bundle.chunks import decode_rows, stored_chunk_files
from traces.models import AnalysisRun, FeatureAnnotation, Trace, TraceFeature
from traces.selectors.features import watched_features
from traces.selectors.traces import flagged_condition

# field -> what the page calls it
METRICS: dict[str, str] = {
    "l0": "L0 (mean active latents per token)",
    "fvu": "FVU (fraction of variance unexplained)",
    "resid_norm": "Residual norm (mean per token)",
}
SHORT_NAMES = {"l0": "L0", "fvu": "FVU", "resid_norm": "residual norm"}
BAND_PERCENTILES = (1.0, 99.0)
SMALL_BASELINE = 100  # fewer baseline traces than this make a coarse [p1, p99] band
TOP_FEATURES = 10


@dataclass(frozen=True)
class Rate:
    count: int
    total: int

    @property
    def share(self) -> float | None:
        return self.count / self.total if self.total else None

    @property
    def percent(self) -> str:
        return f"{100 * self.count / self.total:.1f} %" if self.total else "n/a"


class Band(NamedTuple):
    """[low, high], as a pair so plots take it as it is."""

    low: float
    high: float

    def holds(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class TopFeature:
    feature: int
    traces: int
    peak: float
    label: str = ""
    safety_tags: list[str] = field(default_factory=list)
    threshold: float | None = None  # the watch threshold, when the feature is watched


@dataclass(frozen=True)
class UnsafeOutput:
    """``rate`` is None for a run without generation. ``unreadable`` counts flagged traces
    whose chunk files are gone (purged): they are left out of the count, not of the total."""

    rate: Rate | None
    unreadable: int = 0


@dataclass(frozen=True)
class Anomalies:
    baseline: AnalysisRun
    baseline_traces: int
    bands: dict[str, Band]
    rate: Rate
    per_metric: dict[str, int]  # metric -> traces outside its band

    @property
    def coarse(self) -> bool:
        return self.baseline_traces < SMALL_BASELINE

    @property
    def rows(self) -> list[tuple[str, Band, int]]:
        """(metric's short name, its band, traces outside it) per metric."""
        return [
            (SHORT_NAMES[name], band, self.per_metric[name]) for name, band in self.bands.items()
        ]


@dataclass(frozen=True)
class RunMetrics:
    values: dict[str, list[float]]  # metric -> per-trace values, in prompt order
    watched: dict[int, float]
    flagged: Rate
    unsafe_output: UnsafeOutput
    most_traces: list[TopFeature]
    strongest: list[TopFeature]
    baselines: list[AnalysisRun]
    anomalies: Anomalies | None
    baseline_error: str = ""


def metric_values(run: AnalysisRun) -> dict[str, list[float]]:
    rows = list(
        Trace.objects.filter(run=run).order_by("prompt__position").values_list(*METRICS.keys())
    )
    return {name: [row[i] for row in rows] for i, name in enumerate(METRICS)}


def percentile_band(values: list[float]) -> Band:
    """[p1, p99] of ``values`` as observed values (numpy's ``inverted_cdf``): a run of the
    baseline's own traces has none outside under 100 traces, and about 1 % above p99 beyond.
    Interpolated ends would put the two extremes of any small baseline outside its own band,
    so that an unchanged checkpoint would read as anomalous."""
    low, high = np.percentile(
        np.asarray(values, dtype=float), BAND_PERCENTILES, method="inverted_cdf"
    )
    return Band(float(low), float(high))


def baseline_choices(run: AnalysisRun) -> QuerySet[AnalysisRun]:
    """Finished runs of the same SAE, other than ``run``, that hold traces: newest first."""
    return (
        AnalysisRun.objects.filter(sae_id=run.sae_id, job__state=JobState.SUCCEEDED)
        .exclude(pk=run.pk)
        .filter(traces__isnull=False)
        .distinct()
        .select_related("prompt_set")
        .order_by("-created_at", "-pk")
    )


def anomalies(values: dict[str, list[float]], baseline: AnalysisRun) -> Anomalies | None:
    """Traces with any metric outside the baseline's [p1, p99] band; None when the baseline
    holds no trace."""
    reference = metric_values(baseline)
    if not reference["l0"]:
        return None
    bands = {name: percentile_band(reference[name]) for name in METRICS}
    total = len(values["l0"])
    outside = [False] * total
    per_metric = {}
    for name, band in bands.items():
        out = [not band.holds(v) for v in values[name]]
        per_metric[name] = sum(out)
        outside = [a or b for a, b in zip(outside, out, strict=True)]
    return Anomalies(
        baseline=baseline,
        baseline_traces=len(reference["l0"]),
        bands=bands,
        rate=Rate(sum(outside), total),
        per_metric=per_metric,
    )


def flagged_rate(run: AnalysisRun, watched: dict[int, float]) -> Rate:
    """Traces where a watched feature's peak (from the index) exceeds its threshold."""
    traces = Trace.objects.filter(run=run)
    total = traces.count()
    condition = flagged_condition({run.sae_id: watched}) if watched else None
    return Rate(traces.filter(condition).count() if condition is not None else 0, total)


def _over_rows(arrays: dict[str, np.ndarray], watched: dict[int, float]) -> np.ndarray:
    """[rows] bool: the token is a completion token and a watched feature exceeds its
    threshold there."""
    idx, val = arrays["top_idx"], arrays["top_val"].astype(np.float32)
    over = np.zeros(idx.shape[0], dtype=bool)
    for feature, threshold in watched.items():
        over |= ((idx == feature) & (val > threshold)).any(axis=1)
    rows: np.ndarray = over & arrays["is_completion"].astype(bool)
    return rows


def unsafe_output_rate(run: AnalysisRun, watched: dict[int, float]) -> UnsafeOutput:
    """Traces where a watched feature exceeds its threshold on a completion token."""
    if not run.generate_tokens:
        return UnsafeOutput(rate=None)

    total = Trace.objects.filter(run=run).count()
    condition = flagged_condition({run.sae_id: watched}) if watched else None
    if condition is None:
        return UnsafeOutput(rate=Rate(0, total))
    candidates = (
        Trace.objects.filter(run=run, tokens__gt=F("prompt_tokens"))
        .filter(condition)
        .values_list("chunk", "row", "tokens")
    )
    by_chunk: dict[int, list[tuple[int, int]]] = {}
    for chunk, row, tokens in candidates:
        by_chunk.setdefault(chunk, []).append((row, tokens))
    hits = unreadable = 0
    for chunk, spans in sorted(by_chunk.items()):
        files = stored_chunk_files(run.artifact_prefix, chunk)
        if files is None:
            unreadable += len(spans)
            continue
        start = min(row for row, _ in spans)
        stop = max(row + tokens for row, tokens in spans)
        over = _over_rows(decode_rows(files, top_k=run.top_k, start=start, stop=stop), watched)
        hits += sum(bool(over[row - start : row - start + tokens].any()) for row, tokens in spans)
    return UnsafeOutput(rate=Rate(hits, total), unreadable=unreadable)


def top_features(
    run: AnalysisRun, watched: dict[int, float], limit: int = TOP_FEATURES
) -> tuple[list[TopFeature], list[TopFeature]]:
    """The features in the most traces, and those with the highest peak, with their labels.
    The index leaves BOS out, so its outlier activations do not crowd the lists."""
    per_feature = (
        TraceFeature.objects.filter(trace__run=run)
        .values("feature")
        .annotate(traces=Count("id"), peak=Max("max_activation"))
    )
    most = list(per_feature.order_by("-traces", "-peak", "feature")[:limit])
    strongest = list(per_feature.order_by("-peak", "-traces", "feature")[:limit])
    indices = {row["feature"] for row in most + strongest}
    notes = {
        a.index: a
        for a in FeatureAnnotation.objects.filter(sae_id=run.sae_id, index__in=indices).only(
            "index", "label", "tags"
        )
    }

    def rows(found: list[Any]) -> list[TopFeature]:
        out = []
        for row in found:
            index = int(row["feature"])
            note = notes.get(index)
            out.append(
                TopFeature(
                    feature=index,
                    traces=int(row["traces"]),
                    peak=float(row["peak"]),
                    label=note.label if note else "",
                    safety_tags=note.safety_tags if note else [],
                    threshold=watched.get(index),
                )
            )
        return out

    return rows(most), rows(strongest)


def run_metrics(run: AnalysisRun, baseline_id: int | None = None) -> RunMetrics:
    """The run page's metrics. ``baseline_id`` names a run of the same SAE whose [p1, p99]
    bands decide the anomaly rate; without one (or with one that does not qualify, explained
    in ``baseline_error``) there is no anomaly rate."""
    watched = watched_features(run.sae)
    values = metric_values(run)
    most, strongest = top_features(run, watched)
    baselines = list(baseline_choices(run)[:50])
    found: Anomalies | None = None
    error = ""
    if baseline_id is not None:
        baseline = baseline_choices(run).filter(pk=baseline_id).first()
        if baseline is None:
            error = f"Run {baseline_id} is not a finished run of the same SAE with traces."
        else:
            found = anomalies(values, baseline)
            if baseline not in baselines:
                baselines.append(baseline)
    return RunMetrics(
        values=values,
        watched=watched,
        flagged=flagged_rate(run, watched),
        unsafe_output=unsafe_output_rate(run, watched),
        most_traces=most,
        strongest=strongest,
        baselines=baselines,
        anomalies=found,
        baseline_error=error,
    )
