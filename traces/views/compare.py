"""Compare two runs of one SAE: feature shifts and the traces that changed most."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from scopeweb.accounts.access import access
from traces.forms.compare import RunCompareForm
from traces.selectors.compare import CompareError, runs_compare


@access("browse_traces")
def run_compare(request: HttpRequest) -> HttpResponse:
    form = RunCompareForm(request.GET or None)
    comparison = None
    if form.is_valid():
        try:
            comparison = runs_compare(form.cleaned_data["a"], form.cleaned_data["b"])
        except CompareError as exc:
            form.add_error(None, str(exc))
    return render(request, "traces/run_compare.html", {"form": form, "c": comparison})
