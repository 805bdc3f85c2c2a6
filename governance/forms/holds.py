from __future__ import annotations

from django import forms

from governance.models import HoldTarget
from governance.services.holds import REASON_MAX


class HoldPlaceForm(forms.Form):
    target_type = forms.ChoiceField(choices=HoldTarget.choices, label="Hold on")
    target_id = forms.IntegerField(min_value=1, max_value=2**63 - 1, label="Its id")
    reason = forms.CharField(
        max_length=REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why it must be kept (a matter, a request, a regulator's letter).",
    )


class HoldLiftForm(forms.Form):
    lift_reason = forms.CharField(
        label="Reason for lifting",
        max_length=REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class PreviewForm(forms.Form):
    as_of = forms.DateTimeField(
        required=False,
        label="As of",
        help_text="Judge expiry as if it were then (e.g. 2026-03-01 00:00); empty: now.",
    )
