from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from scopeweb.accounts.access import SIGNED_IN, access
from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job
from traces.models import PromptSet


@access(SIGNED_IN)
def home(request: HttpRequest) -> HttpResponse:
    actor = Actor.of(request)
    context: dict[str, object] = {}
    if actor.may("view_prompt_set"):
        context["prompt_sets"] = PromptSet.objects.select_related("profile")[:5]
        context["prompt_set_count"] = PromptSet.objects.count()
    if actor.may("view_jobs"):
        context["jobs"] = Job.objects.select_related("created_by")[:8]
    return render(request, "home.html", context)
