"""The purge's pages: upcoming expiries, active holds and purge history; purge now; the dry-run
preview."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from governance.forms.holds import PreviewForm
from governance.models import PurgeRun
from governance.selectors.expiry import active_holds, upcoming_expiries
from governance.services.purge import purge_preview, purge_request
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor


@access("manage_retention")
def expiries(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    return render(
        request,
        "governance/expiries.html",
        {
            "windows": [upcoming_expiries(7, now=now), upcoming_expiries(30, now=now)],
            "holds": active_holds(),
            "purges": PurgeRun.objects.select_related("triggered_by")[:50],
        },
    )


@access("purge")
@require_POST
def purge_now(request: HttpRequest) -> HttpResponse:
    job = purge_request(actor=Actor.of(request))
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
        request, "governance/purge_preview.html", {"form": form, "items": items, "as_of": as_of}
    )
