"""The operations page: ingestion's rate, size, tokens, queue, overhead and failures over the
last 24 hours (by hour) or 7 days (by day), drawn as server-side SVG, and the storage cost a
month of tracing is heading for."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from scopeweb.accounts.access import access
from traces.display.operations_plots import operations_labels, operations_plots
from traces.selectors.operations import operations_report


@access("view_operations")
def operations_view(request: HttpRequest) -> HttpResponse:
    report = operations_report(
        service=request.GET.get("manifest", ""), span=request.GET.get("range", "24h")
    )
    return render(
        request,
        "traces/operations.html",
        {
            "report": report,
            "plots": operations_plots(report),
            "labels": operations_labels(report),
        },
    )
