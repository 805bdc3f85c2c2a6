from __future__ import annotations

from django import forms

from scopeweb.retention.models import RetentionProfile

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
        help_text='JSONL ({"prompt": …, "id"?: …, "tags"?: […]} per line, or a conversation as '
        '{"messages": [{"role": "user", "content": …}, …]}), CSV with a "prompt" column, or plain '
        "text with one prompt per line."
    )
    file_format = forms.ChoiceField(choices=FORMAT_CHOICES, required=False, label="Format")


class PromptSetOriginalForm(forms.Form):
    file = forms.FileField(
        label="Original file",
        help_text="The file this prompt set was imported from: each prompt must match the one "
        "imported (by sha256).",
    )
