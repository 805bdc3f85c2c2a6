from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from scopeweb.accounts.access import access
from scopeweb.retention.services_storage import storage_cost_check


@access("manage_retention")
def storage_cost(request: HttpRequest) -> HttpResponse:
    # Computing the report also logs (and at most daily audits) a cost past a threshold.
    return render(request, "retention/storage.html", {"report": storage_cost_check()})
