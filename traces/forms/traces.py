from __future__ import annotations

from django import forms

from scopeweb.retention.models import RetentionProfile
from traces.display.colours import MODES
from traces.models import PromptSet, SaeRecord
from traces.selectors.traces import FEATURE_SORTS, SORTS, TraceQuery

FLAGGED_CHOICES = [("", "any"), ("yes", "flagged"), ("no", "not flagged")]


class TraceFilterForm(forms.Form):
    """The trace list's filters and sort, read from the query string."""

    q = forms.CharField(
        label="Text", required=False, max_length=200, help_text="In the prompt or completion."
    )
    run = forms.IntegerField(required=False, min_value=1, widget=forms.NumberInput)
    prompt_set = forms.ModelChoiceField(
        queryset=PromptSet.objects.order_by("-created_at", "-id").only("name"),
        required=False,
        empty_label="any",
    )
    sae = forms.ModelChoiceField(
        queryset=SaeRecord.objects.order_by("layer", "site", "name").only("name"),
        to_field_name="name",
        required=False,
        empty_label="any",
        label="SAE",
        help_text="A feature number means a latent of this SAE.",
    )
    profile = forms.ModelChoiceField(
        queryset=RetentionProfile.objects.order_by("code"),
        to_field_name="code",
        required=False,
        empty_label="any",
    )
    feature = forms.IntegerField(required=False, min_value=0, help_text="Fired in the trace.")
    above = forms.FloatField(required=False, label="above", help_text="Its peak exceeds this.")
    flagged = forms.ChoiceField(choices=FLAGGED_CHOICES, required=False)
    sort = forms.ChoiceField(
        choices=[(key, label) for key, (label, _) in SORTS.items()], required=False
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("feature") is None:
            if data.get("above") is not None:
                self.add_error("feature", "Choose the feature that must be above the value.")
            if data.get("sort") in FEATURE_SORTS:
                self.add_error("feature", "Choose a feature to sort by its activation.")
        return data

    def query(self, run: int | None = None) -> TraceQuery:
        """The selector's query; only call after ``is_valid()``."""
        data = self.cleaned_data
        flagged = {"yes": True, "no": False}.get(data.get("flagged") or "")
        return TraceQuery(
            run=run if run is not None else data.get("run"),
            prompt_set=data["prompt_set"].pk if data.get("prompt_set") else None,
            sae=data["sae"].pk if data.get("sae") else None,
            profile=data["profile"].code if data.get("profile") else "",
            text=(data.get("q") or "").strip(),
            feature=data.get("feature"),
            above=data.get("above"),
            flagged=flagged,
            sort=data.get("sort") or "",
        )


class TraceColourForm(forms.Form):
    """How the trace view colours its strip: ``feature`` wins; else ``colour``."""

    colour = forms.ChoiceField(
        choices=[
            ("watched", "strongest watched feature"),
            ("recon", "reconstruction error"),
            ("feature", "a feature"),
            ("none", "nothing"),
        ],
        required=False,
    )
    feature = forms.IntegerField(required=False, min_value=0)
    token = forms.IntegerField(required=False, min_value=0, widget=forms.HiddenInput)

    def mode(self, has_watched: bool) -> tuple[str, int | None]:
        data = self.cleaned_data if self.is_valid() else {}
        feature = data.get("feature")
        colour = data.get("colour") or ""
        if feature is not None and colour in ("", "feature"):
            return "feature", feature
        if colour in MODES and colour != "feature":
            return colour, None
        return ("watched" if has_watched else "recon"), None
