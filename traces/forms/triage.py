from __future__ import annotations

from django import forms

from traces.models import TriageReview

NOTE_MAX = 2000


class TriageDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=TriageReview.Decision.choices)
    note = forms.CharField(
        required=False, max_length=NOTE_MAX, widget=forms.Textarea(attrs={"rows": 2})
    )
