"""Starting an analysis run on a prompt set."""

from __future__ import annotations

from django import forms

from traces.models import AnalysisRun, SaeRecord


class RunStartForm(forms.Form):
    sae = forms.ModelChoiceField(
        queryset=SaeRecord.objects.all(), to_field_name="name", label="SAE"
    )
    top_k = forms.IntegerField(min_value=1, max_value=256, initial=32, label="Top-k per token")
    capture_limit = forms.IntegerField(
        min_value=16, max_value=32768, required=False, help_text="Blank: the profile's limit."
    )
    dtype = forms.ChoiceField(choices=AnalysisRun.DType.choices, initial=AnalysisRun.DType.AUTO)
    generate_tokens = forms.IntegerField(
        min_value=0, max_value=512, initial=0, label="Generate tokens", help_text="0: no completion"
    )
    seed = forms.IntegerField(min_value=0, max_value=2**31 - 1, initial=0)
