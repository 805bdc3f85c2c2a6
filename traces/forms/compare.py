from __future__ import annotations

from typing import Any

from django import forms

from scopeweb.jobs.models import JobState
from traces.models import AnalysisRun


def _finished_runs() -> forms.ModelChoiceField[AnalysisRun]:
    return forms.ModelChoiceField(
        queryset=AnalysisRun.objects.filter(job__state=JobState.SUCCEEDED).select_related(
            "prompt_set", "sae"
        ),
    )


class RunCompareForm(forms.Form):
    a = _finished_runs()
    b = _finished_runs()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label in (("a", "Baseline run"), ("b", "Candidate run")):
            field = self.fields[name]
            field.label = label
            field.label_from_instance = (  # type: ignore[attr-defined]
                lambda run: f"run {run.pk}: {run.prompt_set.name} × {run.sae.name}"
            )
