"""Opening a case from the triage queue: its note and severity."""

from __future__ import annotations

from django import forms

from reports.models import Severity
from traces.forms.triage import NOTE_MAX


class TriageOpenCaseForm(forms.Form):
    """ "Open a case" from the triage queue: the note goes with the evidence and the review."""

    note = forms.CharField(required=False, max_length=NOTE_MAX)
    severity = forms.ChoiceField(choices=Severity.choices, required=False)
