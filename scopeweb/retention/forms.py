from typing import TYPE_CHECKING, Any

from django import forms

from scopeweb.retention.models import EDITABLE_FIELDS, RetentionProfile

if TYPE_CHECKING:
    # ModelForm is generic only in the stubs: subscripting it at runtime needs django_stubs_ext.
    _ProfileModelForm = forms.ModelForm[RetentionProfile]
else:
    _ProfileModelForm = forms.ModelForm


class RetentionProfileForm(_ProfileModelForm):
    class Meta:
        model = RetentionProfile
        fields = list(EDITABLE_FIELDS)
        widgets = {
            **{
                name: forms.NumberInput(attrs={"step": "0.001", "min": "0", "max": "1"})
                for name in ("sampling_baseline", "sampling_targeted", "sampling_forensic")
            },
            "custom_patterns": forms.Textarea(attrs={"rows": 4, "spellcheck": "false"}),
        }

    def clean_custom_patterns(self) -> Any:
        # An emptied box means "no patterns"; the model's validator checks the rest and names
        # the pattern (and regex) at fault.
        value = self.cleaned_data.get("custom_patterns")
        return [] if value in (None, "") else value
