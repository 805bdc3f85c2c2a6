"""The SAE registry page: every registered SAE with its quality figures."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from scopeweb.accounts.access import access
from traces.selectors.saes import sae_list


@access("browse_traces")
def sae_list_view(request: HttpRequest) -> HttpResponse:
    return render(request, "traces/sae_list.html", {"saes": sae_list()})
