"""Reads for feature pages and feature search: annotations, their history, and what the trace
index knows about a feature."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Max, Q, QuerySet

from traces.models import (
    SAFETY_TAGS,
    FeatureAnnotation,
    FeatureAnnotationChange,
    SaeRecord,
    TraceFeature,
)


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


@dataclass(frozen=True)
class FeatureActivity:
    traces: int  # traces where the feature fired (BOS excluded, as in the index)
    runs: int
    peak: float | None


def feature_activity(sae: SaeRecord, index: int) -> FeatureActivity:
    stats = TraceFeature.objects.filter(trace__run__sae=sae, feature=index).aggregate(
        traces=Count("id"), runs=Count("trace__run", distinct=True), peak=Max("max_activation")
    )
    return FeatureActivity(traces=stats["traces"], runs=stats["runs"], peak=stats["peak"])


def feature_top_examples(sae: SaeRecord, index: int, limit: int = 10) -> QuerySet[TraceFeature]:
    """The traces where the feature peaked highest, strongest first."""
    return (
        TraceFeature.objects.filter(trace__run__sae=sae, feature=index)
        .select_related("trace__prompt", "trace__run")
        .order_by("-max_activation", "pk")[:limit]
    )
