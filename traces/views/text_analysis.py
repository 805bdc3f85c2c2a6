""" "Which features fire on this text": paste, wait for the worker, land on the trace view."""

from __future__ import annotations

import uuid

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobKind
from traces.forms.text_analysis import TextAnalysisForm
from traces.prompt_files import PromptFileError
from traces.services.text_analysis import text_analysis_start, text_analysis_state


@access("start_analysis")
def text_analysis(request: HttpRequest) -> HttpResponse:
    form = TextAnalysisForm(request.POST or None, initial={"profile": "US"})
    if request.method == "POST" and form.is_valid():
        try:
            job = text_analysis_start(
                actor=Actor.of(request),
                sae=form.cleaned_data["sae"],
                text=form.cleaned_data["text"],
                profile=form.cleaned_data["profile"],
            )
        except PromptFileError as exc:
            form.add_error("text", str(exc))
        else:
            return redirect("text_analysis_wait", job_id=job.pk)
    return render(request, "traces/text_analysis.html", {"form": form})


@access("start_analysis")
def text_analysis_wait(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    upload = get_object_or_404(
        Job, pk=job_id, kind=JobKind.PROMPT_IMPORT, params__has_key="quick_analysis_sae"
    )
    job, trace = text_analysis_state(upload)
    if trace is not None and job.finished:
        target = reverse("trace_detail", args=[trace.pk])
        if request.htmx:  # type: ignore[attr-defined]
            return HttpResponseClientRedirect(target)
        return redirect(target)
    partial = request.htmx  # type: ignore[attr-defined]
    template = "traces/_text_analysis_wait.html" if partial else "traces/text_analysis_wait.html"
    return render(request, template, {"upload": upload, "job": job})
