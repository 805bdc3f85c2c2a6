from __future__ import annotations

from typing import Any

from django import forms

from traces.models import SAFETY_TAGS, FeatureAnnotation
from traces.services.annotations import DESCRIPTION_MAX, IMPORT_MAX_BYTES, LABEL_MAX

SAFETY_TAG_CHOICES = [(tag, tag) for tag in SAFETY_TAGS]


class FeatureAnnotationForm(forms.Form):
    """The edit form. It only parses the fields; ``annotation_values_clean`` (called by the
    service) is the one validator, and the view shows its problems on these fields."""

    label = forms.CharField(required=False, widget=forms.TextInput(attrs={"maxlength": LABEL_MAX}))
    description = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "maxlength": DESCRIPTION_MAX}),
    )
    safety_tags = forms.MultipleChoiceField(
        choices=SAFETY_TAG_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )
    free_tags = forms.CharField(
        required=False, help_text="Other tags, separated by commas.", max_length=1000
    )
    watch_threshold = forms.FloatField(
        required=False,
        help_text="Flag a trace when this feature's activation exceeds it. A feature is watched "
        "when it has a threshold and a safety tag.",
    )

    @staticmethod
    def initial_for(annotation: FeatureAnnotation | None) -> dict[str, Any]:
        if annotation is None:
            return {}
        return {
            "label": annotation.label,
            "description": annotation.description,
            "safety_tags": annotation.safety_tags,
            "free_tags": ", ".join(annotation.free_tags),
            "watch_threshold": annotation.watch_threshold,
        }

    def values(self) -> dict[str, Any]:
        """The cleaned data in the shape ``annotation_save`` takes."""
        data = self.cleaned_data
        free = [tag for tag in data["free_tags"].split(",") if tag.strip()]
        return {
            "label": data["label"],
            "description": data["description"],
            "tags": [*data["safety_tags"], *free],
            "watch_threshold": data["watch_threshold"],
        }


class FeatureSearchForm(forms.Form):
    q = forms.CharField(required=False, label="Search", max_length=200)
    tag = forms.CharField(required=False, max_length=40)
    watched = forms.BooleanField(required=False, label="Watched only")


class AnnotationImportForm(forms.Form):
    file = forms.FileField(
        help_text="A JSON file as the export writes it: "
        '{"annotations": [{"index": 12, "label": …, "description": …, "tags": […], '
        '"watch_threshold": …}, …]}.'
    )

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > IMPORT_MAX_BYTES:
            raise forms.ValidationError(f"At most {IMPORT_MAX_BYTES // 1_000_000} MB.")
        return upload
