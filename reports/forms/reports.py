from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.template.defaultfilters import filesizeformat


def read_pdf_upload(upload: UploadedFile[bytes] | None) -> bytes:
    """The uploaded file's bytes; ``ValidationError`` naming the problem (missing, empty, too
    big). Whether it is a PDF is ``report_verify``'s to say."""
    if upload is None:
        raise forms.ValidationError("Choose the PDF to verify.")
    limit = settings.REPORT_VERIFY_MAX_BYTES
    if upload.size is not None and upload.size > limit:
        raise forms.ValidationError(
            f"The file is {filesizeformat(upload.size)}; at most {filesizeformat(limit)}."
        )
    data: bytes = upload.read(limit + 1)  # the stub's File.read is Any
    if not data:
        raise forms.ValidationError("The file is empty.")
    if len(data) > limit:
        raise forms.ValidationError(f"The file is larger than {filesizeformat(limit)}.")
    return data


class ReportVerifyForm(forms.Form):
    file = forms.FileField(
        label="Signed report (PDF)",
        help_text="A report downloaded from this deployment, or any signed PDF.",
        allow_empty_file=True,  # read_pdf_upload names the problem
    )

    def clean_file(self) -> bytes:
        return read_pdf_upload(self.cleaned_data.get("file"))
