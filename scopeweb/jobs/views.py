from __future__ import annotations

import uuid

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render

from scopeweb.accounts.access import access
from scopeweb.jobs.models import Job


@access("view_jobs")
def job_list(request: HttpRequest) -> HttpResponse:
    jobs = Job.objects.select_related("created_by")
    page = Paginator(jobs, 50).get_page(request.GET.get("page"))
    return render(request, "jobs/job_list.html", {"page": page})


@access("view_jobs")
def job_detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("created_by"), pk=job_id)
    prompt_set_id = job.result.get("prompt_set_id")
    context = {"job": job, "prompt_set_id": prompt_set_id}
    # htmx polls the status panel alone while the job runs.
    template = "jobs/_job_status.html" if request.htmx else "jobs/job_detail.html"  # type: ignore[attr-defined]
    return render(request, template, context)
