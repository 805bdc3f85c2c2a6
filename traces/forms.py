from __future__ import annotations

from django import forms

from scopeweb.retention.models import RetentionProfile
from traces.models import AnalysisRun, SaeRecord

FORMAT_CHOICES = [
    ("", "From the file name"),
    ("jsonl", "JSONL"),
    ("csv", "CSV"),
    ("txt", "Plain text"),
]


class PromptSetUploadForm(forms.Form):
    name = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    profile = forms.ModelChoiceField(
        queryset=RetentionProfile.objects.all(), to_field_name="code", label="Retention profile"
    )
    file = forms.FileField(
        help_text='JSONL ({"prompt": …, "id"?: …, "tags"?: […]} per line), CSV with a "prompt" '
        "column, or plain text with one prompt per line."
    )
    file_format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False, label="Format")


class PromptSetOriginalForm(forms.Form):
    file = forms.FileField(
        label="Original file",
        help_text="The file this prompt set was imported from: each prompt must match the one "
        "imported (by sha256).",
    )


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
