"""Comparing two runs of one SAE (a baseline and a candidate): which features changed their
firing rate and mean peak most, and, for the prompts both runs analysed, which traces changed
most. Everything is read from the feature index, never from the chunk files."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from django.db.models import Avg, Count

from scopeweb.refusals import Refused
from traces.models import AnalysisRun, FeatureAnnotation, Trace, TraceFeature


class CompareError(Refused):
    """Two runs that cannot be compared; the message says why."""

    status = 400


@dataclass
class FeatureShift:
    feature: int
    label: str
    rate_a: float  # share of the run's traces where it is among some token's kept features
    rate_b: float
    mean_a: float | None  # mean per-trace peak where it fired
    mean_b: float | None

    @property
    def rate_change(self) -> float:
        return self.rate_b - self.rate_a

    @property
    def mean_change(self) -> float | None:
        if self.mean_a is None or self.mean_b is None:
            return None
        return self.mean_b - self.mean_a


@dataclass
class TraceShift:
    prompt: str
    trace_a: int
    trace_b: int
    distance: float  # 1 - weighted Jaccard of the two traces' per-feature peaks
    gained: list[int]  # strongest features only the candidate has
    lost: list[int]


@dataclass
class RunComparison:
    a: AnalysisRun
    b: AnalysisRun
    traces_a: int
    traces_b: int
    shared_prompts: int
    by_rate: list[FeatureShift]
    by_mean: list[FeatureShift]
    traces: list[TraceShift]


def runs_compare(a: AnalysisRun, b: AnalysisRun, limit: int = 25) -> RunComparison:
    if a.pk == b.pk:
        raise CompareError("Choose two different runs.")
    if a.sae_id != b.sae_id:
        raise CompareError(
            f"Run {a.pk} used {a.sae.name} and run {b.pk} used {b.sae.name}: features of "
            "different SAEs are not the same features, so they cannot be compared."
        )
    count_a = Trace.objects.filter(run=a).count()
    count_b = Trace.objects.filter(run=b).count()
    if not count_a or not count_b:
        raise CompareError("Both runs need stored traces.")
    stats_a, stats_b = _feature_stats(a), _feature_stats(b)
    shifts = [
        FeatureShift(
            feature=f,
            label="",
            rate_a=stats_a.get(f, (0, None))[0] / count_a,
            rate_b=stats_b.get(f, (0, None))[0] / count_b,
            mean_a=stats_a.get(f, (0, None))[1],
            mean_b=stats_b.get(f, (0, None))[1],
        )
        for f in stats_a.keys() | stats_b.keys()
    ]
    by_rate = sorted(shifts, key=lambda s: (-abs(s.rate_change), s.feature))[:limit]
    both = [s for s in shifts if s.mean_change is not None]
    by_mean = sorted(both, key=lambda s: (-abs(s.mean_change or 0), s.feature))[:limit]
    _label(a, by_rate + by_mean)
    pairs = _shared_prompts(a, b)
    return RunComparison(
        a=a,
        b=b,
        traces_a=count_a,
        traces_b=count_b,
        shared_prompts=len(pairs),
        by_rate=by_rate,
        by_mean=by_mean,
        traces=_trace_shifts(pairs, limit),
    )


def _feature_stats(run: AnalysisRun) -> dict[int, tuple[int, float]]:
    rows = (
        TraceFeature.objects.filter(trace__run=run)
        .values("feature")
        .annotate(traces=Count("id"), mean=Avg("max_activation"))
    )
    return {row["feature"]: (row["traces"], row["mean"]) for row in rows}


def _label(run: AnalysisRun, shifts: list[FeatureShift]) -> None:
    labels = dict(
        FeatureAnnotation.objects.filter(
            sae_id=run.sae_id, index__in={s.feature for s in shifts}
        ).values_list("index", "label")
    )
    for shift in shifts:
        shift.label = labels.get(shift.feature, "")


def _shared_prompts(a: AnalysisRun, b: AnalysisRun) -> list[tuple[str, int, int]]:
    """(prompt text, trace in a, trace in b) for prompts both runs analysed, matched by text so
    that runs on different prompt sets compare too."""
    mine = dict(Trace.objects.filter(run=a).values_list("prompt__text", "pk"))
    return [
        (text, mine[text], pk)
        for text, pk in Trace.objects.filter(run=b).values_list("prompt__text", "pk")
        if text in mine
    ]


def _trace_shifts(pairs: list[tuple[str, int, int]], limit: int) -> list[TraceShift]:
    peaks: dict[int, dict[int, float]] = defaultdict(dict)
    ids = [t for _, a, b in pairs for t in (a, b)]
    for trace, feature, peak in TraceFeature.objects.filter(trace_id__in=ids).values_list(
        "trace_id", "feature", "max_activation"
    ):
        peaks[trace][feature] = peak
    shifts = []
    for text, a, b in pairs:
        pa, pb = peaks[a], peaks[b]
        union = pa.keys() | pb.keys()
        top = sum(max(pa.get(f, 0.0), pb.get(f, 0.0)) for f in union)
        low = sum(min(pa.get(f, 0.0), pb.get(f, 0.0)) for f in union)
        shifts.append(
            TraceShift(
                prompt=text,
                trace_a=a,
                trace_b=b,
                distance=1 - low / top if top else 0.0,
                gained=sorted(pb.keys() - pa.keys(), key=lambda f: -pb[f])[:5],
                lost=sorted(pa.keys() - pb.keys(), key=lambda f: -pa[f])[:5],
            )
        )
    return sorted(shifts, key=lambda s: (-s.distance, s.trace_a))[:limit]
