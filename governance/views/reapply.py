"""Re-applying a profile's retention to what exists: a preview, then the move."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from governance.services.reapply import reapply_preview, retention_reapply
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.retention.models import RetentionProfile


@access("manage_retention")
def reapply(request: HttpRequest, code: str) -> HttpResponse:
    profile = get_object_or_404(RetentionProfile, code=code)
    if request.method == "POST":
        done = retention_reapply(profile=profile, actor=Actor.of(request))
        messages.success(
            request,
            f"{profile.code}: re-applied {profile.retention_days} days to {done.total} items "
            f"({done.moves['prompt_sets']} prompt sets, {done.moves['runs']} runs, "
            f"{done.moves['exports']} exports).",
        )
        return redirect("retention_profile_edit", code=profile.code)
    return render(
        request,
        "governance/reapply_confirm.html",
        {"profile": profile, "preview": reapply_preview(profile)},
    )
