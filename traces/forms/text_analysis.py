from __future__ import annotations

from django import forms

from scopeweb.retention.models import RetentionProfile
from traces.models import SaeRecord
from traces.prompt_files import prompt_limits


class TextAnalysisForm(forms.Form):
    text = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6, "placeholder": "Paste text to analyse"}),
        strip=False,
    )
    sae = forms.ModelChoiceField(
        queryset=SaeRecord.objects.all(), to_field_name="name", label="SAE", empty_label=None
    )
    profile = forms.ModelChoiceField(
        queryset=RetentionProfile.objects.all(),
        to_field_name="code",
        label="Retention profile",
        empty_label=None,
    )

    def clean_text(self) -> str:
        text: str = self.cleaned_data["text"]
        if not text.strip():
            raise forms.ValidationError("The text is empty.")
        limit = prompt_limits().max_chars
        if len(text) > limit:
            raise forms.ValidationError(
                f"The text has {len(text):,} characters; the limit is {limit:,}."
            )
        return text
