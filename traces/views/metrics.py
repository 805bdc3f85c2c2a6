"""``/metrics``: ingestion's figures in Prometheus text format, for the scrape token only."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from scopeweb.accounts.access import METRICS_TOKEN, access
from traces.selectors.ingest_metrics import IngestCollector


@access(METRICS_TOKEN)
def metrics_view(request: HttpRequest) -> HttpResponse:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(IngestCollector())
    # The format the scraper asks for (Prometheus sends Accept); text 0.0.4 by default.
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(registry), content_type=content_type)
