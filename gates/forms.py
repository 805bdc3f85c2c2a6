"""The forms of the gate pages: the YAML editor, the "Run now" form, a decision, a key's name
and an attestation to verify. They check the shape of the input; the services check the rest."""

from __future__ import annotations

from typing import Any

from django import forms

from gates.models import GateDecision
from gates.services.runs import STATEMENT_MAX

DOCUMENT_MAX_BYTES = 64 * 1024  # what scopeweb.documents reads at most
PROMPTS_MAX_BYTES = 20 * 1024 * 1024
ENVELOPE_MAX_BYTES = 1024 * 1024


def _text_of(upload: Any, limit: int, what: str) -> str:
    if upload.size > limit:
        raise forms.ValidationError(f"The {what} is over {limit // 1024} KiB.", code="too_big")
    try:
        return str(upload.read().decode("utf-8"))
    except UnicodeDecodeError:
        raise forms.ValidationError(f"The {what} is not UTF-8 text.") from None


class GateDocumentForm(forms.Form):
    """The editor's text, or an uploaded YAML file in its place."""

    document = forms.CharField(required=False, strip=False)
    file = forms.FileField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("file")
        if upload is not None:
            data["document"] = _text_of(upload, DOCUMENT_MAX_BYTES, "file")
            data["via"] = "import"
        else:
            data["via"] = "web"
        if not str(data.get("document") or "").strip():
            raise forms.ValidationError("Write the gate, or choose a YAML file.")
        return data


class GateRunStartForm(forms.Form):
    """A candidate: a checkpoint (blank: the baseline's), its own prompt file (optional)."""

    checkpoint = forms.CharField(required=False, max_length=300)
    label = forms.CharField(required=False, max_length=200)
    prompts = forms.FileField(required=False)

    def clean_prompts(self) -> Any:
        upload = self.cleaned_data.get("prompts")
        if upload is not None and upload.size > PROMPTS_MAX_BYTES:
            raise forms.ValidationError(
                f"The prompt file is over {PROMPTS_MAX_BYTES // (1024 * 1024)} MiB."
            )
        return upload


class DecisionForm(forms.Form):
    decision = forms.ChoiceField(choices=GateDecision.Decision.choices)
    statement = forms.CharField(
        max_length=STATEMENT_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="What you checked, and why the candidate may (or may not) ship.",
    )


class GateKeyForm(forms.Form):
    name = forms.CharField(max_length=100)


class EnvelopeForm(forms.Form):
    """An attestation (a DSSE envelope as JSON): pasted, or uploaded as a file."""

    text = forms.CharField(required=False, strip=True, widget=forms.Textarea(attrs={"rows": 8}))
    file = forms.FileField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        upload = data.get("file")
        if upload is not None:
            data["text"] = _text_of(upload, ENVELOPE_MAX_BYTES, "attestation file")
        if not str(data.get("text") or "").strip():
            raise forms.ValidationError("Paste an attestation, or choose its JSON file.")
        return data
