from django import forms

from scopeweb.retention.models import EDITABLE_FIELDS, RetentionProfile


class RetentionProfileForm(forms.ModelForm):
    class Meta:
        model = RetentionProfile
        fields = list(EDITABLE_FIELDS)
        widgets = {
            name: forms.NumberInput(attrs={"step": "0.001", "min": "0", "max": "1"})
            for name in ("sampling_baseline", "sampling_targeted", "sampling_forensic")
        }
