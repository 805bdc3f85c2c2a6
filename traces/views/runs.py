from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.feedback import show_problems
from scopeweb.refusals import Refused
from traces.display.plots import metric_histograms
from traces.forms.runs import RunStartForm
from traces.models import AnalysisRun
from traces.selectors.prompt_sets import prompt_set_list
from traces.selectors.run_metrics import run_metrics
from traces.selectors.runs import run_list
from traces.services.run_plans import run_preview, run_warnings
from traces.services.runs import (
    run_cancel,
    run_pass,
    run_reproduce,
    run_reproduction_check,
    run_start,
)


@access("start_analysis")
@require_POST
def run_start_view(request: HttpRequest, prompt_set_id: int) -> HttpResponse:
    prompt_set = get_object_or_404(prompt_set_list(), pk=prompt_set_id)
    form = RunStartForm(request.POST)
    back = redirect("prompt_set_detail", prompt_set_id=prompt_set.pk)
    if not form.is_valid():
        show_problems(request, form.errors)
        return back
    try:
        preview = run_preview(prompt_set=prompt_set, **form.run_options())
        if preview.refusal:
            raise Refused(preview.refusal)
        run = run_start(
            actor=Actor.of(request), prompt_set=prompt_set, saes=preview.saes,
            seed=form.cleaned_data["seed"], **form.run_settings(),
        )  # fmt: skip
    except Refused as exc:
        messages.error(request, exc.message)
        return back
    for warning in preview.warnings:
        messages.warning(request, warning)
    return redirect("run_detail", run_id=run.pk)


@access("start_analysis")
def run_plan_view(request: HttpRequest, prompt_set_id: int) -> HttpResponse:
    """The run form's plan and warnings for the values chosen so far (an htmx fragment)."""
    prompt_set = get_object_or_404(prompt_set_list(), pk=prompt_set_id)
    form = RunStartForm(request.GET)
    context: dict[str, Any] = {"form": form}
    if form.is_valid():
        try:
            context["preview"] = run_preview(prompt_set=prompt_set, **form.run_options())
        except Refused as exc:
            context["refused"] = exc.message
    return render(request, "traces/_run_plan.html", context)


@access("browse_traces")
def run_list_view(request: HttpRequest) -> HttpResponse:
    page = Paginator(run_list(), 50).get_page(request.GET.get("page"))
    return render(request, "traces/run_list.html", {"page": page})


@access("browse_traces")
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(run_list(), pk=run_id)
    if request.htmx:  # type: ignore[attr-defined]
        return render(request, "traces/_run_progress.html", {"run": run, "job": run.job})
    traces = run.traces.select_related("prompt").order_by("prompt__position")[:100]
    context: dict[str, Any] = {
        "run": run,
        "job": run.job,
        "traces": traces,
        "reproduction": run_reproduction_check(run) if run.job.finished else None,
        "pass_runs": run_pass(run),
        "warnings": run_warnings([run.sae], run.checkpoint),
    }
    if run.job.finished and traces:
        raw = request.GET.get("baseline", "")
        metrics = run_metrics(run, int(raw) if raw.isdigit() and len(raw) < 10 else None)
        context["metrics"] = metrics
        context["feature_tables"] = [
            ("Fire in the most traces", metrics.most_traces),
            ("Fire most strongly (peak activation)", metrics.strongest),
        ]
        context["plots"] = metric_histograms(metrics)
    return render(request, "traces/run_detail.html", context)


@access("start_analysis")
@require_POST
def run_cancel_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(AnalysisRun, pk=run_id)
    if run.job.finished:
        messages.error(request, "The run has already finished; there is nothing to cancel.")
    elif run.stream_manifest_id is not None:
        messages.error(
            request,
            "A stream run takes a service's sampled requests until its day ends; to stop "
            "tracing, set the manifest's sample rate to 0.",
        )
    else:
        run_cancel(run, actor=Actor.of(request))
        messages.success(request, "Cancelling: the run stops after its current chunk.")
    return redirect("run_detail", run_id=run.pk)


@access("start_analysis")
@require_POST
def run_reproduce_view(request: HttpRequest, run_id: int) -> HttpResponse:
    run = get_object_or_404(AnalysisRun, pk=run_id)
    if run.job.state != "succeeded":
        messages.error(request, "Only a finished run can be reproduced.")
        return redirect("run_detail", run_id=run.pk)
    rerun = run_reproduce(run, actor=Actor.of(request))
    return redirect("run_detail", run_id=rerun.pk)
