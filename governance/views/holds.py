"""Legal hold pages: the list (active and lifted), placing one, lifting one."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render

from governance.forms.holds import HoldLiftForm, HoldPlaceForm
from governance.models import LegalHold
from governance.selectors.expiry import active_holds
from governance.services.holds import HoldError, hold_lift, hold_place
from scopeweb.accounts.access import access
from scopeweb.accounts.actor import Actor


@access("manage_holds")
def hold_list(request: HttpRequest) -> HttpResponse:
    lifted = LegalHold.objects.filter(lifted_at__isnull=False).select_related(
        "placed_by", "lifted_by"
    )[:200]
    return render(
        request,
        "governance/hold_list.html",
        {"active": active_holds(), "lifted": lifted, "form": HoldPlaceForm()},
    )


@access("manage_holds")
def hold_place_view(request: HttpRequest) -> HttpResponse:
    form = HoldPlaceForm(request.POST or None, initial=request.GET.dict())
    if request.method == "POST" and form.is_valid():
        try:
            hold = hold_place(
                actor=Actor.of(request),
                target_type=form.cleaned_data["target_type"],
                target_id=form.cleaned_data["target_id"],
                reason=form.cleaned_data["reason"],
            )
        except HoldError as exc:
            form.add_error(exc.field, exc.message)
        else:
            messages.success(request, f"Hold {hold.pk} placed on {hold.target_repr}.")
            return redirect("retention_holds")
    return render(request, "governance/hold_place.html", {"form": form})


@access("manage_holds")
def hold_lift_view(request: HttpRequest, hold_id: int) -> HttpResponse:
    hold = get_object_or_404(LegalHold, pk=hold_id)
    form = HoldLiftForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            hold_lift(
                actor=Actor.of(request),
                hold=hold,
                reason=form.cleaned_data["lift_reason"],
            )
        except HoldError as exc:
            form.add_error(exc.field, exc.message)
        else:
            messages.success(request, f"Hold {hold.pk} on {hold.target_repr} lifted.")
            return redirect("retention_holds")
    return render(request, "governance/hold_lift.html", {"hold": hold, "form": form})
