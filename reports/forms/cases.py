"""Forms of the case pages. They parse input; the rules live in ``reports.services.cases``."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.db.models import Q, QuerySet

from reports.models import AuditCase, CaseState, Severity
from reports.services.cases import TEXT_MAX, TITLE_MAX
from reports.services.evidence import FEATURES_MAX
from scopeweb.retention.models import RetentionProfile
from traces.models import Trace


def case_workers() -> QuerySet[User]:
    """Users who may be assigned to a case: active reviewers and admins."""
    return (
        User.objects.filter(is_active=True)
        .filter(Q(groups__name__in=["reviewer", "admin"]))
        .distinct()
        .order_by("username")
    )


class CaseForm(forms.Form):
    title = forms.CharField(max_length=TITLE_MAX)
    description = forms.CharField(
        required=False, max_length=TEXT_MAX, widget=forms.Textarea(attrs={"rows": 3})
    )
    severity = forms.ChoiceField(choices=Severity.choices, initial=Severity.MEDIUM)
    profile = forms.ModelChoiceField(
        queryset=RetentionProfile.objects.all(), to_field_name="code", empty_label=None
    )
    assignees = forms.ModelMultipleChoiceField(
        queryset=User.objects.none(), required=False, widget=forms.CheckboxSelectMultiple
    )
    summary = forms.CharField(
        label="Executive summary",
        required=False,
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Written before sign-off; it opens the report.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["assignees"].queryset = case_workers()  # type: ignore[attr-defined]


class CaseEditForm(CaseForm):
    """The same fields, less the profile: a case keeps the profile it was opened under."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["profile"]

    @classmethod
    def for_case(cls, case: AuditCase) -> CaseEditForm:
        return cls(
            initial={
                "title": case.title,
                "description": case.description,
                "severity": case.severity,
                "summary": case.summary,
                "assignees": list(case.assignees.all()),
            }
        )


class CaseFilterForm(forms.Form):
    state = forms.ChoiceField(choices=[("", "any state"), *CaseState.choices], required=False)
    severity = forms.ChoiceField(choices=[("", "any severity"), *Severity.choices], required=False)
    profile = forms.ChoiceField(choices=[], required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        codes = RetentionProfile.objects.values_list("code", flat=True)
        self.fields["profile"].choices = [("", "any profile")] + [(c, c) for c in codes]  # type: ignore[attr-defined]


class TransitionForm(forms.Form):
    to = forms.ChoiceField(choices=CaseState.choices)
    reason = forms.CharField(required=False, max_length=TEXT_MAX)


def parse_features(raw: str) -> list[int]:
    """Feature indexes from "12, 305 7": whole numbers separated by commas or spaces."""
    parts = [p for p in re.split(r"[\s,;]+", raw.strip()) if p]
    bad = [p for p in parts if not p.isdigit()]
    if bad:
        raise forms.ValidationError(
            f"Not a feature index: {', '.join(bad[:5])}. Give whole numbers separated by commas."
        )
    if len(parts) > FEATURES_MAX:
        raise forms.ValidationError(f"{len(parts)} features; at most {FEATURES_MAX}.")
    return [int(p) for p in parts]


class EvidenceFields(forms.Form):
    token_start = forms.IntegerField(min_value=0, label="First token")
    token_end = forms.IntegerField(min_value=1, label="End token (exclusive)")
    features = forms.CharField(
        required=False, max_length=2000, help_text="Feature indexes, separated by commas."
    )
    note = forms.CharField(
        required=False, max_length=TEXT_MAX, widget=forms.Textarea(attrs={"rows": 2})
    )

    def clean_features(self) -> list[int]:
        return parse_features(self.cleaned_data.get("features") or "")


class EvidenceForm(EvidenceFields):
    """Evidence added from the case page: the trace by id."""

    trace = forms.ModelChoiceField(
        queryset=Trace.objects.all(),
        widget=forms.NumberInput,
        label="Trace id",
        error_messages={"invalid_choice": "No trace with that id."},
    )
    field_order = ["trace", "token_start", "token_end", "features", "note"]


class TraceEvidenceForm(EvidenceFields):
    """Evidence added from the trace view: the case to add it to."""

    case = forms.ModelChoiceField(
        queryset=AuditCase.objects.none(),
        empty_label=None,
        error_messages={"invalid_choice": "That case does not exist or is read-only."},
    )
    field_order = ["case", "token_start", "token_end", "features", "note"]

    def __init__(self, *args: Any, cases: QuerySet[AuditCase], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["case"].queryset = cases  # type: ignore[attr-defined]


class CommentForm(forms.Form):
    body = forms.CharField(max_length=TEXT_MAX, widget=forms.Textarea(attrs={"rows": 3}))


class SignOffForm(forms.Form):
    statement = forms.CharField(
        max_length=TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What you checked and what you vouch for.",
    )
