from __future__ import annotations

from django import forms

from scopeweb.audit.selectors import AuditQuery

_WHEN = forms.DateTimeInput(attrs={"type": "datetime-local", "step": "1"})
_WHEN_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d"]


class AuditFilterForm(forms.Form):
    """The audit log's filters, read from the query string."""

    actor = forms.CharField(required=False, max_length=150, help_text="User name.")
    action = forms.CharField(
        required=False, max_length=60, help_text="An action, or a prefix such as “run”."
    )
    object_type = forms.CharField(required=False, max_length=60, label="Object type")
    object_id = forms.CharField(required=False, max_length=64, label="Object id")
    time_from = forms.DateTimeField(
        required=False, label="From", widget=_WHEN, input_formats=_WHEN_FORMATS
    )
    time_to = forms.DateTimeField(
        required=False, label="Until", widget=_WHEN, input_formats=_WHEN_FORMATS
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        start, end = data.get("time_from"), data.get("time_to")
        if start is not None and end is not None and end <= start:
            self.add_error("time_to", "Must be after “From”.")
        if data.get("object_id") and not data.get("object_type"):
            self.add_error("object_type", "Name the object type the id belongs to.")
        return data

    def query(self) -> AuditQuery:
        """The selector's query; only call after ``is_valid()``."""
        data = self.cleaned_data
        return AuditQuery(
            actor=(data.get("actor") or "").strip(),
            action=(data.get("action") or "").strip().lower(),
            object_type=(data.get("object_type") or "").strip().lower(),
            object_id=(data.get("object_id") or "").strip(),
            time_from=data.get("time_from"),
            time_to=data.get("time_to"),
        )
