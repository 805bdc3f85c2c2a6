"""``/metrics``: ingestion's figures in Prometheus text format, for the scrape token only."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from scopeweb.accounts.access import METRICS_TOKEN, access
from traces.selectors.ingest_metrics import IngestCollector


@access(METRICS_TOKEN)
def metrics_view(request: HttpRequest) -> HttpResponse:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(IngestCollector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
