"""Starting an analysis run on a prompt set: one SAE, several (one forward pass), or a preset."""

from __future__ import annotations

from typing import Any

from django import forms

from traces.models import AnalysisRun, SaeRecord


class _SaeChoice(forms.ModelMultipleChoiceField):  # type: ignore[type-arg]
    def label_from_instance(self, obj: SaeRecord) -> str:
        return f"{obj.site} L{obj.layer} {obj.width_name} · {obj.name}"


class RunStartForm(forms.Form):
    sae = _SaeChoice(
        queryset=SaeRecord.objects.order_by("layer", "site", "width", "name"),
        to_field_name="name",
        label="SAEs",
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 6, "class": "sae-select"}),
        help_text="Several SAEs of one model share one forward pass; each gets its own run.",
    )
    preset = forms.ChoiceField(
        choices=[("", "none"), ("sweep", "Gemma Scope 2 sweep layers (resid_post)")],
        required=False,
        help_text="sweep: the registered resid_post SAEs at layers 5, 9, 12 and 15 (270M).",
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
    checkpoint = forms.CharField(
        max_length=300,
        required=False,
        help_text="Blank: the model the SAEs were made for. A hub id or folder the workers hold.",
    )

    def run_settings(self) -> dict[str, Any]:
        """The options ``run_start`` and the planner share."""
        data = self.cleaned_data
        return {
            key: data[key]
            for key in ("dtype", "top_k", "capture_limit", "generate_tokens", "checkpoint")
        }

    def run_options(self) -> dict[str, Any]:
        """``run_preview``'s options: the settings, the chosen SAEs and the preset."""
        return self.run_settings() | {
            "saes": list(self.cleaned_data["sae"]),
            "preset": self.cleaned_data["preset"],
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not data.get("sae") and not data.get("preset"):
            raise forms.ValidationError("Choose at least one SAE, or a preset.")
        return data
