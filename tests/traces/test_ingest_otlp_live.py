"""A vLLM-style service exports its GenAI spans with the real OpenTelemetry OTLP/HTTP exporter
(protobuf) to the live ingest endpoint; the spans' requests are stored, once each."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from scopeweb.accounts.actor import Actor
from traces.ingest.models import IngestBatch, IngestedRequest
from traces.models import SaeRecord
from traces.services.manifests import ingest_token_create, manifest_save, parse_manifest_yaml

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


def _spans() -> list[Any]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "vllm-staging"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("vllm")
    for question, answer in (("What is rain?", "Water."), ("Why is the sky blue?", "Light.")):
        with tracer.start_as_current_span("chat gemma-3-270m") as span:
            span.set_attribute("gen_ai.request.model", "google/gemma-3-270m")
            span.set_attribute(
                "gen_ai.input.messages",
                json.dumps([{"role": "user", "parts": [{"type": "text", "content": question}]}]),
            )
            span.set_attribute(
                "gen_ai.output.messages",
                json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": answer}]}]),
            )
            span.set_attribute("gen_ai.usage.input_tokens", 6)
            span.set_attribute("http.route", "/v1/chat/completions")
        with tracer.start_as_current_span("http GET /healthz"):
            pass
    return list(memory.get_finished_spans())


def test_the_real_otlp_exporter_delivers_to_the_ingest_endpoint(
    admin: User, live_server: Any
) -> None:
    SaeRecord.objects.create(
        name="tiny", reference="/nowhere", model_name="google/gemma-3-270m", site="resid_post",
        layer=3, width=128, hook_point="model.layers.3.output", params_sha256="0" * 64,
    )  # fmt: skip
    manifest = manifest_save(
        document=parse_manifest_yaml(
            "service: vllm-staging\ncheckpoint: google/gemma-3-270m\nsaes: [tiny]\n"
            "sample_rate: 1.0\nprofile: US\n"
        ),
        actor=Actor.command(admin),
    )
    _, key = ingest_token_create(manifest=manifest, name="otel", actor=Actor.command(admin))
    spans = _spans()
    endpoint = f"{live_server.url}/api/ingest/otlp/v1/traces"
    exporter = OTLPSpanExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {key}"})
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    assert exporter.export(spans) == SpanExportResult.SUCCESS  # a retry: nothing doubles
    batch = IngestBatch.objects.get()
    assert batch.via == "otlp-protobuf" and batch.records == 2
    requests = IngestedRequest.objects.order_by("position")
    assert [r.tags for r in requests] == [{"route": "/v1/chat/completions"}] * 2
    assert [r.input_tokens for r in requests] == [6, 6]
    refused = OTLPSpanExporter(endpoint=endpoint, headers={"Authorization": "Bearer swi_nope"})
    assert refused.export(spans) == SpanExportResult.FAILURE
