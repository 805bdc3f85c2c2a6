"""Expiry pages: upcoming expiries, active holds and purge history; purge now; the dry-run
preview; re-applying a profile's retention."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from scopeweb.accounts.access import access
from scopeweb.retention.forms_holds import PreviewForm
from scopeweb.retention.models import PurgeRun, RetentionProfile
from scopeweb.retention.purge import purge_preview, purge_request
from scopeweb.retention.selectors_expiry import active_holds, upcoming_expiries
from scopeweb.retention.services_reapply import reapply_preview, retention_reapply


@access("manage_retention")
def expiries(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    return render(
        request,
        "retention/expiries.html",
        {
            "windows": [upcoming_expiries(7, now=now), upcoming_expiries(30, now=now)],
            "holds": active_holds(),
            "purges": PurgeRun.objects.select_related("triggered_by")[:50],
        },
    )


@access("purge")
@require_POST
def purge_now(request: HttpRequest) -> HttpResponse:
    job = purge_request(user=request.user, request=request)  # type: ignore[arg-type]
    messages.success(request, "Purge queued; it is listed under purge history once it ran.")
    return redirect("job_detail", job_id=job.pk)


@access("purge")
def purge_preview_view(request: HttpRequest) -> HttpResponse:
    form = PreviewForm(request.GET or None)
    items = None
    as_of = timezone.now()
    if form.is_valid():
        as_of = form.cleaned_data["as_of"] or as_of
        items = purge_preview(as_of)
    elif not request.GET:
        items = purge_preview(as_of)
    return render(
        request, "retention/purge_preview.html", {"form": form, "items": items, "as_of": as_of}
    )


@access("manage_retention")
def reapply(request: HttpRequest, code: str) -> HttpResponse:
    profile = get_object_or_404(RetentionProfile, code=code)
    if request.method == "POST":
        done = retention_reapply(profile=profile, user=request.user, request=request)
        messages.success(
            request,
            f"{profile.code}: re-applied {profile.retention_days} days to {done.total} items "
            f"({done.moves['prompt_sets']} prompt sets, {done.moves['runs']} runs, "
            f"{done.moves['exports']} exports).",
        )
        return redirect("retention_profile_edit", code=profile.code)
    return render(
        request,
        "retention/reapply_confirm.html",
        {"profile": profile, "preview": reapply_preview(profile)},
    )
