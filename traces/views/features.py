"""Feature pages: search per SAE, one feature with its annotation and history, and annotation
export and import."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from traces.display.plots import histogram_html
from traces.forms.features import AnnotationImportForm, FeatureAnnotationForm, FeatureSearchForm
from traces.models import SaeRecord
from traces.selectors import features as selectors
from traces.selectors.feature_examples import WINDOW, feature_examples
from traces.selectors.feature_peaks import feature_top_tokens
from traces.services.annotations import (
    AnnotationImportError,
    annotation_save,
    annotations_export,
    annotations_import,
    annotations_parse,
)
from traces.services.feature_labels import feature_label_suggestion
from traces.services.feature_stats import (
    FeatureStatsView,
    feature_stats_ready,
    feature_stats_start,
    feature_stats_view,
)

RESULTS_PER_PAGE = 50
HISTOGRAM_BINS = 24


def _feature(sae_name: str, index: int) -> tuple[SaeRecord, int]:
    sae = get_object_or_404(SaeRecord, name=sae_name)
    if index >= sae.width:
        raise Http404(f"{sae.name} has features 0 to {sae.width - 1}.")
    return sae, index


@access("read_annotations")
def feature_index(request: HttpRequest) -> HttpResponse:
    return render(request, "traces/feature_index.html", {"saes": selectors.sae_annotation_counts()})


@access("read_annotations")
def feature_search(request: HttpRequest, sae_name: str) -> HttpResponse:
    sae = get_object_or_404(SaeRecord, name=sae_name)
    form = FeatureSearchForm(request.GET or None)
    query, tag, watched = "", "", False
    if form.is_valid():
        query, tag = form.cleaned_data["q"].strip(), form.cleaned_data["tag"]
        watched = form.cleaned_data["watched"]
    if query.isdigit() and not tag and not watched:
        # A number is a feature: jump to it, annotated or not.
        if int(query) < sae.width:
            return redirect("feature_detail", sae_name=sae.name, index=int(query))
        messages.error(request, f"{sae.name} has features 0 to {sae.width - 1}.")
    found = selectors.feature_search(sae, query, tag=tag, watched=watched)
    page = Paginator(found, RESULTS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "sae": sae,
        "form": form,
        "page": page,
        "searching": bool(query or tag or watched),
        "tags": selectors.tags_in_use(sae),
        "tag": tag,
    }
    return render(request, "traces/feature_search.html", context)


def _peaks_histogram(peaks: list[float]) -> SafeString | None:
    if not peaks:
        return None
    return histogram_html(
        peaks,
        HISTOGRAM_BINS,
        "its peak in a trace, BOS excluded (bar height: traces)",
        title="Peak per trace",
        width=420,
        height=200,
    )


def _detail_context(
    request: HttpRequest, sae: SaeRecord, index: int, form: FeatureAnnotationForm | None = None
) -> dict[str, Any]:
    """The feature page: its annotation and edit form for everyone who reads it, and the trace
    figures for those who may browse traces (auditors read the annotation only)."""
    actor = Actor.of(request)
    stats = feature_stats_view(sae, index)
    context = {
        "sae": sae,
        "index": index,
        "history": selectors.annotation_history(sae, index)[:100],
        "stats": stats,  # from the weights alone, so every reader sees them
        "may_compute": actor.may("start_analysis"),
    }
    context |= _annotation_context(actor, sae, index, stats, form, request.GET.get("suggest"))
    if actor.may("browse_traces"):
        context |= _trace_figures(sae, index)
    return context


def _annotation_context(
    actor: Actor,
    sae: SaeRecord,
    index: int,
    stats: FeatureStatsView,
    form: FeatureAnnotationForm | None,
    suggest: str | None,
) -> dict[str, Any]:
    """The annotation, and for annotators its form, with a suggested label when asked."""
    annotation = selectors.annotation_for(sae, index)
    suggestion = None
    if actor.may("annotate_feature"):
        if suggest == "1":
            top_tokens = feature_top_tokens(sae, index)
            promoted = [t.piece for t in stats.lens.promoted] if stats.lens else []
            label = feature_label_suggestion(sae, index, top_tokens, promoted=promoted)
            suggestion = {"label": label, "top_tokens": top_tokens, "promoted": promoted}
        if form is None:
            initial = FeatureAnnotationForm.initial_for(annotation)
            if suggestion and suggestion["label"]:
                initial["label"] = suggestion["label"]
            form = FeatureAnnotationForm(initial=initial)
    return {"annotation": annotation, "form": form, "suggestion": suggestion}


def _trace_figures(sae: SaeRecord, index: int) -> dict[str, Any]:
    scanned, cooccurring = selectors.feature_cooccurrence(sae, index)
    return {
        "activity": selectors.feature_activity(sae, index),
        "density": selectors.feature_density(sae, index),
        "histogram": _peaks_histogram(selectors.feature_peaks(sae, index)),
        "examples": feature_examples(sae, index),
        "window": WINDOW,
        "co_scanned": scanned,
        "cooccurring": cooccurring,
    }


@access("read_annotations")
def feature_detail(request: HttpRequest, sae_name: str, index: int) -> HttpResponse:
    sae, index = _feature(sae_name, index)
    if request.htmx:  # type: ignore[attr-defined]
        # The logit lens section polls while its job runs; it alone is rendered.
        context = {
            "sae": sae,
            "index": index,
            "stats": feature_stats_view(sae, index),
            "may_compute": Actor.of(request).may("start_analysis"),
        }
        return render(request, "traces/_feature_weights.html", context)
    return render(request, "traces/feature_detail.html", _detail_context(request, sae, index))


@access("start_analysis")
@require_POST
def feature_stats_start_view(request: HttpRequest, sae_name: str) -> HttpResponse:
    """Queue the SAE's logit lens and decoder neighbours, then go back to the feature."""
    sae = get_object_or_404(SaeRecord, name=sae_name)
    back = request.POST.get("index", "")
    if not feature_stats_ready(sae):
        job = feature_stats_start(sae, actor=Actor.of(request))
        messages.success(
            request,
            f"Queued: {job.title}. It is computed once for all {sae.width} features; this page "
            "shows it when it is done.",
        )
    if back.isdigit() and int(back) < sae.width:
        return redirect("feature_detail", sae_name=sae.name, index=int(back))
    return redirect("feature_search", sae_name=sae.name)


@access("annotate_feature")
@require_POST
def feature_annotate(request: HttpRequest, sae_name: str, index: int) -> HttpResponse:
    sae, index = _feature(sae_name, index)
    form = FeatureAnnotationForm(request.POST)
    if form.is_valid():
        try:
            change = annotation_save(
                sae=sae, index=index, actor=Actor.of(request), values=form.values()
            )
        except ValidationError as exc:
            for field, problems in exc.message_dict.items():
                target = (
                    field if field in form.fields else ("free_tags" if field == "tags" else None)
                )
                for problem in problems:
                    form.add_error(target, problem)
        else:
            messages.success(request, f"Saved feature {index}." if change else "Nothing changed.")
            return redirect("feature_detail", sae_name=sae.name, index=index)
    context = _detail_context(request, sae, index, form)
    return render(request, "traces/feature_detail.html", context)


@access("read_annotations")
def annotations_export_view(request: HttpRequest, sae_name: str) -> HttpResponse:
    sae = get_object_or_404(SaeRecord, name=sae_name)
    document = annotations_export(sae, actor=Actor.of(request))
    response = HttpResponse(
        json.dumps(document, indent=2, ensure_ascii=False) + "\n",
        content_type="application/json",
    )
    response["Content-Disposition"] = f'attachment; filename="{sae.name}-annotations.json"'
    return response


@access("annotate_feature")
def annotations_import_view(request: HttpRequest, sae_name: str) -> HttpResponse:
    sae = get_object_or_404(SaeRecord, name=sae_name)
    form = AnnotationImportForm(request.POST or None, request.FILES or None)
    problems = None
    if request.method == "POST" and form.is_valid():
        try:
            data = annotations_parse(form.cleaned_data["file"].read())
            result = annotations_import(sae, data, actor=Actor.of(request))
        except AnnotationImportError as exc:
            problems = exc.problems
        else:
            messages.success(
                request,
                f"Imported: {result.created} new, {result.changed} changed, "
                f"{result.unchanged} unchanged.",
            )
            return redirect("feature_search", sae_name=sae.name)
    context = {"sae": sae, "form": form, "problems": problems}
    return render(request, "traces/annotations_import.html", context)
