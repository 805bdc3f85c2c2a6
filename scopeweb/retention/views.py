from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor
from scopeweb.redaction import redaction_coverage, redaction_coverage_table
from scopeweb.retention.forms import RetentionProfileForm
from scopeweb.retention.models import RetentionProfile
from scopeweb.retention.services import retention_profile_update


@access("manage_retention")
def profile_list(request: HttpRequest) -> HttpResponse:
    profiles = RetentionProfile.objects.prefetch_related("changes__changed_by")
    return render(
        request,
        "retention/profile_list.html",
        {"profiles": profiles, "coverage": redaction_coverage_table(profiles)},
    )


@access("manage_retention")
def profile_edit(request: HttpRequest, code: str) -> HttpResponse:
    profile = get_object_or_404(RetentionProfile, code=code)
    coverage = redaction_coverage(profile)  # as saved: a bad form edits the instance
    form = RetentionProfileForm(request.POST or None, instance=profile)
    if request.method == "POST" and form.is_valid():
        change = retention_profile_update(
            profile=RetentionProfile.objects.get(pk=profile.pk),
            actor=Actor.of(request),
            values={name: form.cleaned_data[name] for name in form.Meta.fields},
        )
        messages.success(
            request, f"Saved {profile.code}." if change else f"{profile.code}: nothing changed."
        )
        return redirect("retention_profile_list")
    changes = profile.changes.select_related("changed_by")[:50]
    return render(
        request,
        "retention/profile_edit.html",
        {
            "profile": profile,
            "form": form,
            "changes": changes,
            "coverage": coverage,
        },
    )
