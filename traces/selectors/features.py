"""Reads for feature pages and feature search: annotations, their history, and what the trace
index knows about a feature."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.cache import cache
from django.db.models import Count, Max, Q, QuerySet, Sum

from traces.models import (
    SAFETY_TAGS,
    AnalysisRun,
    FeatureAnnotation,
    FeatureAnnotationChange,
    SaeRecord,
    Trace,
    TraceFeature,
)

TOKEN_TOTALS_SECONDS = 300


def annotation_for(sae: SaeRecord, index: int) -> FeatureAnnotation | None:
    return (
        FeatureAnnotation.objects.filter(sae=sae, index=index).select_related("updated_by").first()
    )


def annotation_history(sae: SaeRecord, index: int) -> QuerySet[FeatureAnnotationChange]:
    return FeatureAnnotationChange.objects.filter(
        annotation__sae=sae, annotation__index=index
    ).select_related("changed_by")


def sae_annotation_counts() -> QuerySet[SaeRecord]:
    """Every SAE with ``annotated`` (how many of its features carry an annotation)."""
    return SaeRecord.objects.annotate(annotated=Count("annotations"))


def feature_search(
    sae: SaeRecord, query: str = "", *, tag: str = "", watched: bool = False
) -> QuerySet[FeatureAnnotation]:
    """Annotations of ``sae`` whose label, description or tags hold every word of ``query``
    (case-insensitive), optionally only those with ``tag`` or only watched ones.

    A query that is a feature number also finds that feature's annotation.
    """
    found = FeatureAnnotation.objects.filter(sae=sae).select_related("updated_by")
    words = query.split()
    if query.strip().isdigit():
        number = int(query.strip())
        found = found.filter(
            Q(index=number)
            | Q(label__icontains=query.strip())
            | Q(description__icontains=query.strip())
        )
    else:
        for word in words:
            # Tags are stored as a JSON list; matching its text works on SQLite and PostgreSQL.
            found = found.filter(
                Q(label__icontains=word) | Q(description__icontains=word) | Q(tags__icontains=word)
            )
    if tag:
        found = found.filter(tags__icontains=f'"{tag}"')  # the whole tag, quotes included
    if watched:
        found = found.filter(watch_threshold__isnull=False)
        watched_ids = [
            pk for pk, tags in found.values_list("pk", "tags") if set(tags) & set(SAFETY_TAGS)
        ]
        found = found.filter(pk__in=watched_ids)
    return found.order_by("index")


def tags_in_use(sae: SaeRecord) -> list[str]:
    """The vocabulary, then every free tag some annotation of ``sae`` holds, for a tag filter."""
    free: set[str] = set()
    for tags in FeatureAnnotation.objects.filter(sae=sae).values_list("tags", flat=True):
        free.update(tag for tag in tags if tag not in SAFETY_TAGS)
    return [*SAFETY_TAGS, *sorted(free)]


def watched_features(sae: SaeRecord) -> dict[int, float]:
    """{feature index: watch threshold} for the features of ``sae`` that count towards the
    flagged and unsafe output rates: a threshold and at least one safety-vocabulary tag."""
    rows = FeatureAnnotation.objects.filter(sae=sae, watch_threshold__isnull=False).values_list(
        "index", "tags", "watch_threshold"
    )
    return {
        index: threshold
        for index, tags, threshold in rows
        if threshold is not None and set(tags) & set(SAFETY_TAGS)
    }


def sae_index_rows(sae: SaeRecord) -> QuerySet[TraceFeature]:
    """The index rows of the traces of ``sae``'s runs. When every run is of ``sae`` (one SAE in
    use, the usual case) that is every row, and the query skips the join through traces and runs
    that would otherwise touch one trace per row: a feature's counts become index-only scans."""
    rows = TraceFeature.objects.all()
    if AnalysisRun.objects.exclude(sae=sae).exists():
        rows = rows.filter(trace__run__sae=sae)
    return rows


@dataclass(frozen=True)
class FeatureActivity:
    traces: int  # traces where the feature fired (BOS excluded, as in the index)
    runs: int
    peak: float | None


def feature_activity(sae: SaeRecord, index: int) -> FeatureActivity:
    rows = sae_index_rows(sae).filter(feature=index)
    stats = rows.aggregate(traces=Count("id"), peak=Max("max_activation"))
    # Runs: one probe per run of the SAE (a few), not a join of every row to its trace.
    runs = sum(
        rows.filter(trace__run_id=run).exists()
        for run in AnalysisRun.objects.filter(sae=sae).values_list("pk", flat=True)
    )
    return FeatureActivity(traces=stats["traces"], runs=runs, peak=stats["peak"])


def feature_peaks(sae: SaeRecord, index: int) -> list[float]:
    """The feature's peak activation in each trace where it fired, for its histogram."""
    return list(sae_index_rows(sae).filter(feature=index).values_list("max_activation", flat=True))


@dataclass(frozen=True)
class FeatureDensity:
    active: int  # captured tokens where the feature is among the kept latents
    tokens: int  # captured tokens of every trace of the SAE's runs, BOS excluded
    traces: int  # traces of the SAE's runs

    @property
    def share(self) -> float | None:
        return self.active / self.tokens if self.tokens else None

    @property
    def percent(self) -> str:
        return "—" if self.share is None else f"{100 * self.share:.3g} %"


def feature_density(sae: SaeRecord, index: int) -> FeatureDensity:
    """Share of captured tokens where the feature is active, BOS left out of both counts (the
    index leaves it out). A feature outside a token's kept top-k counts as inactive there."""
    active = sae_index_rows(sae).filter(feature=index).aggregate(n=Sum("count"))["n"]
    totals = _sae_token_totals(sae)
    tokens = (totals["tokens"] or 0) - totals["traces"]
    return FeatureDensity(active=active or 0, tokens=max(tokens, 0), traces=totals["traces"])


def _sae_token_totals(sae: SaeRecord) -> dict[str, int]:
    """Tokens and traces of the SAE's runs. Summing 100k traces costs ~10 ms a page, so the
    sums are cached for a few minutes, keyed by the newest trace id: a new run shows at once;
    a purge shows once the entry expires."""
    newest = Trace.objects.aggregate(newest=Max("id"))["newest"] or 0
    key = f"sae-token-totals:{sae.pk}:{newest}"
    totals: dict[str, int] | None = cache.get(key)
    if totals is None:
        traces = Trace.objects.all()
        if AnalysisRun.objects.exclude(sae=sae).exists():
            traces = traces.filter(run__sae=sae)
        totals = traces.aggregate(tokens=Sum("tokens"), traces=Count("*"))
        cache.set(key, totals, TOKEN_TOTALS_SECONDS)
    return totals


@dataclass(frozen=True)
class CoFeature:
    index: int
    shared: int  # traces among the scanned ones where both fired
    share: float  # ``shared`` over the scanned traces
    fired_in: int  # traces of the SAE's runs where this one fired at all, up to FIRED_IN_CAP
    label: str

    @property
    def fired_in_capped(self) -> bool:
        """``fired_in`` stopped counting at ``FIRED_IN_CAP``: it fired in at least that many."""
        return self.fired_in >= FIRED_IN_CAP


CO_SCAN = 500
# Counting every trace a common feature fired in reads ~100k index rows per feature (0.6 s for
# ten on the benchmark's index); "at least 10,000" says as much beside the SAE's trace count.
FIRED_IN_CAP = 10_000


def feature_cooccurrence(
    sae: SaeRecord, index: int, *, scan: int = CO_SCAN, limit: int = 10
) -> tuple[int, list[CoFeature]]:
    """The features that fired in most of the same traces as ``index``, scanning the ``scan``
    traces where it peaked highest. Returns (traces scanned, features by shared traces)."""
    rows = sae_index_rows(sae)
    traces = list(
        rows.filter(feature=index)
        .order_by("-max_activation", "pk")
        .values_list("trace_id", flat=True)[:scan]
    )
    if not traces:
        return 0, []
    ranked = list(
        TraceFeature.objects.filter(trace_id__in=traces)
        .exclude(feature=index)
        .values("feature")
        .annotate(shared=Count("*"))  # "*": the (trace, feature) index alone answers
        .order_by("-shared", "feature")[:limit]
    )
    indices = [row["feature"] for row in ranked]
    fired_in = {
        feature: rows.filter(feature=feature).values("pk")[:FIRED_IN_CAP].count()
        for feature in indices
    }
    labels = annotation_labels(sae.pk, set(indices))
    return len(traces), [
        CoFeature(
            index=row["feature"],
            shared=row["shared"],
            share=row["shared"] / len(traces),
            fired_in=fired_in.get(row["feature"], 0),
            label=labels[row["feature"]].label if row["feature"] in labels else "",
        )
        for row in ranked
    ]


# An ``IN`` list longer than this becomes one read of the SAE's annotations (SQLite caps
# the number of query parameters).
_IN_LIMIT = 500


@dataclass(frozen=True)
class Label:
    label: str
    tags: list[str]
    safety_tags: list[str]
    watch_threshold: float | None


def annotation_labels(sae_id: int, indices: set[int]) -> dict[int, Label]:
    """Labels and tags of the annotated features among ``indices``, in one query."""
    rows = FeatureAnnotation.objects.filter(sae_id=sae_id)
    if len(indices) <= _IN_LIMIT:
        rows = rows.filter(index__in=sorted(indices))
    labels = {}
    for annotation in rows.only("index", "label", "tags", "watch_threshold"):
        if annotation.index in indices:
            labels[annotation.index] = Label(
                label=annotation.label,
                tags=list(annotation.tags),
                safety_tags=annotation.safety_tags,
                watch_threshold=annotation.watch_threshold,
            )
    return labels
