from __future__ import annotations

from django import forms

from governance.models import ExportKind
from governance.services.exports import NOTE_MAX, PURPOSE_MAX


class ExportRequestForm(forms.Form):
    kind = forms.ChoiceField(choices=ExportKind.choices)
    target_id = forms.IntegerField(label="Id of the run or case", min_value=1, max_value=2**62)
    purpose = forms.CharField(
        max_length=PURPOSE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why the data leaves the system, and for whom. The audit log keeps it.",
    )


class ExportDecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("refuse", "Refuse")])
    note = forms.CharField(
        max_length=NOTE_MAX,
        required=False,
        help_text="Required to refuse: the requester reads it.",
    )
