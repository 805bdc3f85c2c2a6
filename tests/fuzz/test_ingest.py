"""Fuzzing the ingest endpoints with an ingest key: the plain JSON format, OTLP/JSON and OTLP
protobuf.

A refused body answers 4xx naming where the problem is and stores nothing (no batch, no request
row, no batch file). An accepted one answers 202 with a receipt that adds up, and its batch file
holds every sampled request as the parser read it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.test import Client
from django.urls import reverse
from google.protobuf.json_format import ParseDict, ParseError
from hypothesis import event, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from scopeweb.accounts.actor import Actor
from tests.fuzz.conftest import (
    Snapshot,
    example,
    fuzz_client,
    fuzz_settings,
    no_server_error,
    nothing_written,
    tried,
)
from tests.fuzz.strategies import (
    dumps,
    json_bytes,
    legal_text,
    mutated,
    nasty_text,
    weighted,
)
from traces.api.ingest import PROTOBUF_TYPES
from traces.ingest.models import IngestBatch, IngestedRequest
from traces.ingest.otlp import records_from_otlp_json, records_from_otlp_protobuf
from traces.ingest.plain import records_from_plain_json
from traces.ingest.records import IngestRecord, ParseResult
from traces.models import SaeRecord
from traces.services.ingest import _original
from traces.services.manifests import ingest_token_create, manifest_save, parse_manifest_yaml

pytestmark = pytest.mark.django_db
SURFACE = "ingest"
MANIFEST = (
    "service: chat-staging\ncheckpoint: google/gemma-3-270m\nsaes: [tiny]\n"
    "sample_rate: 1.0\nprofile: US\nmax_tokens_capture: 256\ntop_k: 8\n"
)
TRACE_IDS = ("4bf92f3577b34da6a3ce929d0e0e4736", "0AF7651916CD43DD8448EB211C80319C")


@pytest.fixture
def ingest_client(admin: User) -> Client:
    SaeRecord.objects.create(
        name="tiny", reference="/nowhere", model_name="google/gemma-3-270m", site="resid_post",
        layer=3, width=128, hook_point="model.layers.3.output", params_sha256="0" * 64,
    )  # fmt: skip
    manifest = manifest_save(document=parse_manifest_yaml(MANIFEST), actor=Actor.command(admin))
    key = ingest_token_create(manifest=manifest, name="fuzz", actor=Actor.command(admin))[1]
    return fuzz_client(authorization=f"Token {key}")


good_trace_ids = st.sampled_from(TRACE_IDS) | st.from_regex(r"[0-9a-fA-F]{32}", fullmatch=True)
trace_ids = weighted(
    (6, good_trace_ids),
    (1, st.sampled_from(("0" * 32, "S/k/NXezTaajzpKdDg5HNg==", "xyz", ""))),
)
span_ids = st.from_regex(r"[0-9a-f]{16}", fullmatch=True)
good_texts = st.sampled_from(("Hi", "Hello!", "Weather in Paris?")) | legal_text
texts = weighted((3, good_texts), (1, nasty_text))
# How many records of a body are damaged: mostly none, now and then all.
dirt = st.sampled_from((0, 0, 0, 1, 3, 10))


# --- the plain format ---------------------------------------------------------------------------


@st.composite
def plain_records(draw: st.DrawFn, clean: bool = True) -> dict[str, Any]:
    """A record, ``clean`` (every value good) or not (any text, any id)."""
    text = good_texts if clean else texts
    record: dict[str, Any] = {"trace_id": draw(good_trace_ids if clean else trace_ids)}
    optional = {
        "span_id": span_ids,
        "service": st.just("chat-staging"),
        "model": st.just("google/gemma-3-270m"),
        "completion": text,
        "tags": st.dictionaries(st.sampled_from(("route", "tenant")), text, max_size=2),
        "input_tokens": st.integers(0, 10_000),
        "output_tokens": st.integers(0, 10_000),
        "started_at": st.sampled_from(
            ("2026-12-02T12:00:00Z", "2026-12-02T12:00:00.123456789+02:00")
            + (() if clean else ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"))
        ),
        "overhead_ms": st.floats(0, 100),
        "features": st.none() | st.just({"sae": "tiny", "rows": [[1, 2.0]]}),
    }
    for key, strategy in optional.items():
        if draw(st.booleans()):
            record[key] = draw(strategy)
    if draw(st.integers(0, 3)):
        roles = st.sampled_from(("user", "system", "assistant", "model", "developer", "tool"))
        record["messages"] = draw(
            st.lists(
                st.fixed_dictionaries({"role": roles, "content": text}), min_size=1, max_size=4
            )
        )
    else:
        record["prompt"] = draw(text.filter(bool))
    return record


@st.composite
def plain_bodies(draw: st.DrawFn) -> Any:
    damage = draw(dirt)
    records = [
        draw(
            plain_records()
            if draw(st.integers(0, 9)) >= damage
            else plain_records(clean=False).flatmap(mutated)
        )
        for _ in range(draw(st.integers(0, 6)))
    ]
    body = {"traces": records}
    return body if damage == 0 else draw(weighted((5, st.just(body)), (1, mutated(body))))


# --- OTLP -----------------------------------------------------------------------------------------


def _attribute(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": value}}


@st.composite
def otlp_spans(draw: st.DrawFn, clean: bool = True) -> dict[str, Any]:
    """An LLM call's span (or now and then another span), ``clean`` or not."""
    text = good_texts if clean else texts
    attributes: dict[str, Any] = {"gen_ai.operation.name": "chat"}
    style = draw(st.sampled_from(("messages", "prompt", "flattened", "none")))
    content = draw(text)
    if style == "messages":
        attributes["gen_ai.input.messages"] = json.dumps(
            [{"role": "user", "parts": [{"type": "text", "content": content}]}]
        )
        attributes["gen_ai.output.messages"] = json.dumps(
            [{"role": "assistant", "parts": [{"type": "text", "content": draw(text)}]}]
        )
    elif style == "prompt":
        attributes["gen_ai.prompt"] = draw(
            st.just(content) | st.just(json.dumps([{"role": "user", "content": content}]))
        )
        attributes["gen_ai.completion"] = draw(text)
    elif style == "flattened":
        attributes["gen_ai.prompt.0.role"] = "user"
        attributes["gen_ai.prompt.0.content"] = content
    for key, strategy in (
        ("gen_ai.request.model", st.just("google/gemma-3-270m")),
        ("gen_ai.usage.input_tokens", st.integers(0, 10_000)),
        ("gen_ai.usage.output_tokens", st.integers(0, 10_000)),
        ("gen_ai.system_instructions", st.just("You are a weather bot.")),
        ("scopeweb.tenant", st.sampled_from(("acme", 7, True))),
        ("http.route", st.just("/v1/chat")),
    ):  # fmt: skip
        if draw(st.booleans()):
            attributes[key] = draw(strategy)
    span: dict[str, Any] = {
        "traceId": draw(good_trace_ids if clean else trace_ids),
        "spanId": draw(span_ids),
        "name": "chat",
        "attributes": [_attribute(key, value) for key, value in attributes.items()],
    }
    if draw(st.booleans()):
        span["startTimeUnixNano"] = draw(
            st.sampled_from(("1764676800000000000", 1764676800000000000, "0", 0))
        )
    return span


@st.composite
def otlp_documents(draw: st.DrawFn) -> Any:
    damage = draw(dirt)
    spans = [
        draw(
            otlp_spans()
            if draw(st.integers(0, 9)) >= damage
            else otlp_spans(clean=False).flatmap(mutated)
        )
        for _ in range(draw(st.integers(0, 5)))
    ]
    document = {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attribute("service.name", "chat-staging")]},
                "scopeSpans": [{"scope": {"name": "vllm-sidecar"}, "spans": spans}],
            }
        ]
    }
    return (
        document if damage == 0 else draw(weighted((5, st.just(document)), (1, mutated(document))))
    )


def _protobuf(document: Any) -> bytes | None:
    """The OTLP/JSON ``document`` as an ExportTraceServiceRequest (ids from hex to proto3 JSON's
    base64); None when it is not one."""
    try:
        for resource_spans in document["resourceSpans"]:
            for scope_spans in resource_spans["scopeSpans"]:
                for span in scope_spans["spans"]:
                    for key in ("traceId", "spanId"):
                        span[key] = base64.b64encode(bytes.fromhex(span[key])).decode()
        message = ParseDict(document, ExportTraceServiceRequest())
    except (KeyError, TypeError, ValueError, AttributeError, ParseError, binascii.Error):
        return None
    encoded: bytes = message.SerializeToString()
    return encoded


@st.composite
def protobuf_bodies(draw: st.DrawFn) -> bytes:
    document = draw(otlp_documents())
    try:
        encoded = _protobuf(json.loads(dumps(document)))
    except (ValueError, RecursionError):  # NaN, a 5,000-digit number, deep nesting
        encoded = None
    if encoded is None:
        return draw(st.binary(max_size=300))
    how = draw(st.sampled_from(("as is", "as is", "as is", "cut", "flip", "garbage")))
    if how == "cut":
        return encoded[: draw(st.integers(0, max(0, len(encoded) - 1)))]
    if how == "flip" and encoded:
        at = draw(st.integers(0, len(encoded) - 1))
        return encoded[:at] + bytes([draw(st.integers(0, 255))]) + encoded[at + 1 :]
    if how == "garbage":
        return draw(st.binary(max_size=300))
    return encoded


# --- the property -------------------------------------------------------------------------------

ROUTES = {  # route: (URL name, Content-Type)
    "plain": ("api_ingest", "application/json"),
    "otlp-json": ("api_ingest_otlp", "application/json"),
    "otlp-protobuf": ("api_ingest_otlp", "application/x-protobuf"),
}
CONTENT_TYPES = ("application/json; charset=utf-8", "text/plain", "application/protobuf", "")


def _parser(route: str, content_type: str) -> Callable[[bytes], ParseResult]:
    """The parser the endpoint picks for ``content_type``."""
    kind = content_type.split(";")[0].strip().lower()
    if route == "plain":
        return records_from_plain_json
    return records_from_otlp_protobuf if kind in PROTOBUF_TYPES else records_from_otlp_json


def _check(client: Client, route: str, body: bytes, content_type: str) -> None:
    name = ROUTES[route][0]
    before = Snapshot()
    answer = client.post(reverse(name), body, content_type=content_type)
    status = no_server_error(SURFACE, answer, route)
    if status != 202:
        assert status in (400, 413), answer.content[:500]
        assert answer.json()["detail"]
        nothing_written(SURFACE, before, Snapshot(), route)
        return
    parsed = _parser(route, content_type)(body)  # what the endpoint read, the same way
    receipt = answer.json()
    assert receipt["received"] == len(parsed.records) and receipt["not_sampled"] == 0
    assert receipt["sampled"] + receipt["duplicates"] == len(parsed.records)
    event(f"{route}: {receipt['sampled']} sampled")
    rows = list(IngestedRequest.objects.order_by("position"))
    assert len(rows) == receipt["sampled"]
    if not rows:
        assert receipt["batch"] is None and not IngestBatch.objects.exists()
        return
    batch = IngestBatch.objects.get(pk=receipt["batch"])
    originals = json.loads(default_storage.open(batch.path).read())
    first: dict[str, IngestRecord] = {}
    for record in parsed.records:
        first.setdefault(record.trace_id, record)
    expected = [_original(record, keep_completion=True) for record in first.values()]
    assert originals == json.loads(json.dumps(expected, ensure_ascii=False))
    assert [row.otel_trace_id for row in rows] == list(first)


@pytest.mark.parametrize("route", list(ROUTES))
@fuzz_settings(1)
@given(data=st.data())
def test_an_ingest_body_is_kept_whole_or_refused_naming_the_problem(
    ingest_client: Client, route: str, data: st.DataObject
) -> None:
    tried(f"{SURFACE} ({route})")
    if route == "otlp-protobuf":
        body = data.draw(protobuf_bodies(), label="body")
    else:
        strategy = plain_bodies() if route == "plain" else otlp_documents()
        body = data.draw(json_bytes(strategy), label="body")
    content_type = data.draw(
        weighted((12, st.just(ROUTES[route][1])), (1, st.sampled_from(CONTENT_TYPES))),
        label="content type",
    )
    with example():
        _check(ingest_client, route, body, content_type)
