from __future__ import annotations

from django import forms

from reports.models import Severity
from traces.models import TriageReview

NOTE_MAX = 2000


class TriageDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=TriageReview.Decision.choices)
    note = forms.CharField(
        required=False, max_length=NOTE_MAX, widget=forms.Textarea(attrs={"rows": 2})
    )


class TriageOpenCaseForm(forms.Form):
    """ "Open a case" from the queue: the note goes with the evidence and the review."""

    note = forms.CharField(required=False, max_length=NOTE_MAX)
    severity = forms.ChoiceField(choices=Severity.choices, required=False)
