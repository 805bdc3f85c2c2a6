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
from django.views.decorators.http import require_POST

from scopeweb.accounts.access import access, user_may
from traces import selectors_features as selectors
from traces.feature_tokens import feature_top_tokens
from traces.forms_features import AnnotationImportForm, FeatureAnnotationForm, FeatureSearchForm
from traces.models import SaeRecord
from traces.services.annotations import (
    AnnotationImportError,
    annotation_save,
    annotations_export,
    annotations_import,
    annotations_parse,
)
from traces.services.feature_labels import feature_label_suggestion

RESULTS_PER_PAGE = 50


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


def _detail_context(
    request: HttpRequest, sae: SaeRecord, index: int, form: FeatureAnnotationForm | None = None
) -> dict[str, Any]:
    annotation = selectors.annotation_for(sae, index)
    may_annotate = user_may(request.user, "annotate_feature")
    suggestion = None
    if may_annotate and request.GET.get("suggest") == "1":
        top_tokens = feature_top_tokens(sae, index)
        suggestion = {
            "label": feature_label_suggestion(sae, index, top_tokens, promoted=[]),
            "top_tokens": top_tokens,
        }
    if form is None and may_annotate:
        initial = FeatureAnnotationForm.initial_for(annotation)
        if suggestion and suggestion["label"]:
            initial["label"] = suggestion["label"]
        form = FeatureAnnotationForm(initial=initial)
    browse = user_may(request.user, "browse_traces")
    return {
        "sae": sae,
        "index": index,
        "annotation": annotation,
        "history": selectors.annotation_history(sae, index)[:100],
        "form": form,
        "suggestion": suggestion,
        # Trace figures are for those who may browse traces; auditors read the annotation only.
        "activity": selectors.feature_activity(sae, index) if browse else None,
        "examples": selectors.feature_top_examples(sae, index) if browse else None,
    }


@access("read_annotations")
def feature_detail(request: HttpRequest, sae_name: str, index: int) -> HttpResponse:
    sae, index = _feature(sae_name, index)
    return render(request, "traces/feature_detail.html", _detail_context(request, sae, index))


@access("annotate_feature")
@require_POST
def feature_annotate(request: HttpRequest, sae_name: str, index: int) -> HttpResponse:
    sae, index = _feature(sae_name, index)
    form = FeatureAnnotationForm(request.POST)
    if form.is_valid():
        try:
            change = annotation_save(
                sae=sae,
                index=index,
                user=request.user,  # type: ignore[arg-type]
                values=form.values(),
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
    response = HttpResponse(
        json.dumps(annotations_export(sae), indent=2, ensure_ascii=False) + "\n",
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
            result = annotations_import(sae, data, request.user)  # type: ignore[arg-type]
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
