from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from governance.services.storage import storage_cost_check
from scopeweb.accounts.access import access


@access("manage_retention")
def storage_cost(request: HttpRequest) -> HttpResponse:
    # Computing the report also logs (and at most daily audits) a cost past a threshold.
    return render(request, "governance/storage.html", {"report": storage_cost_check()})
