"""Ingestion payloads as records: OTLP (JSON and protobuf) and the plain JSON format.

The OTLP requests are made by the real OpenTelemetry SDK and encoded by the real OTLP
exporter's encoder; only a few malformed documents are written by hand.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util.types import Attributes

from traces.ingest.otlp import records_from_otlp_json, records_from_otlp_protobuf
from traces.ingest.plain import records_from_plain_json
from traces.ingest.records import (
    MAX_BODY_BYTES,
    MAX_MESSAGES,
    MAX_RECORDS,
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
    IngestRecord,
    Message,
    ParseResult,
    PayloadError,
    decode_json,
)

# Hypothesis caches constants on disk: keep them in the ignored var/ folder, not the checkout.
set_hypothesis_home_dir(str(Path(__file__).resolve().parents[2] / "var" / "hypothesis"))

Parser = Callable[[bytes], ParseResult]
PARSERS: dict[str, Parser] = {
    "otlp-json": records_from_otlp_json,
    "otlp-protobuf": records_from_otlp_protobuf,
    "plain": records_from_plain_json,
}
JSON_PARSERS = {name: PARSERS[name] for name in ("otlp-json", "plain")}

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
START = datetime(2026, 12, 2, 12, tzinfo=UTC)
START_NS = int(START.timestamp()) * 10**9 + 123_456_789
SPAN = "resourceSpans[0].scopeSpans[0].spans[0]"

SYSTEM_INSTRUCTIONS = [{"type": "text", "content": "You are a weather bot."}]
INPUT_MESSAGES = [
    {"role": "user", "parts": [{"type": "text", "content": "Weather in Paris?"}]},
    {
        "role": "assistant",
        "parts": [
            {"type": "tool_call", "id": "c1", "name": "weather", "arguments": {"at": "Paris"}}
        ],
    },
    {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c1", "response": "rain"}]},
    {
        "role": "user",
        "parts": [{"type": "text", "content": "And"}, {"type": "text", "content": "tomorrow?"}],
    },
]
OUTPUT_MESSAGES = [
    {"role": "assistant", "parts": [{"type": "text", "content": "Rain."}], "finish_reason": "stop"}
]
EXPECTED_MESSAGES = (
    Message("system", "You are a weather bot."),
    Message("user", "Weather in Paris?"),
    Message("assistant", ""),
    Message("tool", ""),
    Message("user", "And\ntomorrow?"),
)
NEW_STYLE: dict[str, Any] = {
    "gen_ai.operation.name": "chat",
    "gen_ai.request.model": "google/gemma-3-270m",
    "gen_ai.response.model": "google/gemma-3-270m-it",
    "gen_ai.system_instructions": json.dumps(SYSTEM_INSTRUCTIONS),
    "gen_ai.input.messages": json.dumps(INPUT_MESSAGES),
    "gen_ai.output.messages": json.dumps(OUTPUT_MESSAGES),
    "gen_ai.usage.input_tokens": 31,
    "gen_ai.usage.output_tokens": 2,
    "gen_ai.conversation.id": "conv-7",
    "http.route": "/v1/chat/completions",
}


# --- OTLP fixtures from the real SDK --------------------------------------------------------


def sdk_spans(
    *spans: tuple[str, Attributes], resource: Mapping[str, Any] | None = None
) -> list[ReadableSpan]:
    """Finished spans of the real SDK, one root span (so one trace) per (name, attributes)."""
    exporter = InMemorySpanExporter()
    service = {"service.name": "chat-staging", "scopeweb.tenant": "acme"}
    provider = TracerProvider(resource=Resource.create({**service, **(resource or {})}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("vllm-sidecar")
    for name, attributes in spans:
        tracer.start_span(name, attributes=attributes, start_time=START_NS).end()
    return list(exporter.get_finished_spans())


def sdk_request(*spans: tuple[str, Attributes], **kwargs: Any) -> ExportTraceServiceRequest:
    """What the OTLP exporter sends for those spans, as the protobuf message."""
    return encode_spans(sdk_spans(*spans, **kwargs))


def otlp_json_document(request: ExportTraceServiceRequest) -> dict[str, Any]:
    """The request in OTLP/JSON: proto3's JSON mapping, except for the ids.

    The OTLP specification (JSON Protobuf Encoding): "The traceId and spanId byte arrays are
    represented as case-insensitive hex-encoded strings; they are not base64-encoded as is
    defined in the standard Protobuf JSON Mapping", in every message that holds them (spans,
    their parents, links); and "values of enum fields MUST be encoded as integer values".
    """
    document: dict[str, Any] = MessageToDict(request, use_integers_for_enums=True)
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for holder in (span, *span.get("links", [])):
                    for key in ("traceId", "spanId", "parentSpanId"):
                        if key in holder:
                            holder[key] = base64.b64decode(holder[key]).hex()
    return document


def otlp_json(request: ExportTraceServiceRequest) -> bytes:
    return json.dumps(otlp_json_document(request)).encode()


def parse_both(request: ExportTraceServiceRequest) -> ParseResult:
    """The records of a request, which must not depend on the encoding it came in."""
    from_protobuf = records_from_otlp_protobuf(request.SerializeToString())
    assert records_from_otlp_json(otlp_json(request)) == from_protobuf
    return from_protobuf


def refused(request: ExportTraceServiceRequest) -> PayloadError:
    """The error of a request, which must not depend on the encoding it came in."""
    errors = []
    for parse, body in (
        (records_from_otlp_protobuf, request.SerializeToString()),
        (records_from_otlp_json, otlp_json(request)),
    ):
        with pytest.raises(PayloadError) as raised:
            parse(body)
        errors.append(raised.value)
    assert str(errors[0]) == str(errors[1])
    return errors[0]


def only_record(request: ExportTraceServiceRequest) -> IngestRecord:
    result = parse_both(request)
    assert len(result.records) == 1
    return result.records[0]


def json_error(document: Any) -> PayloadError:
    """The error of an OTLP/JSON document (written, or an SDK one changed)."""
    with pytest.raises(PayloadError) as raised:
        records_from_otlp_json(json.dumps(document).encode())
    return raised.value


# --- OTLP: what spans become ----------------------------------------------------------------


def test_new_style_messages_become_chat_turns_with_their_text_parts() -> None:
    [span] = sdk_spans(("chat google/gemma-3-270m", NEW_STYLE))
    record = only_record(encode_spans([span]))

    assert record == IngestRecord(
        trace_id=f"{span.context.trace_id:032x}",
        span_id=f"{span.context.span_id:016x}",
        service="chat-staging",
        model="google/gemma-3-270m",
        messages=EXPECTED_MESSAGES,
        completion="Rain.",
        input_tokens=31,
        output_tokens=2,
        tags={"route": "/v1/chat/completions", "tenant": "acme"},
        started_at=START + timedelta(microseconds=123_456),
    )
    assert record.extra == {}


def test_structured_messages_read_as_their_json_text_does() -> None:
    structured = {
        **NEW_STYLE,
        "gen_ai.system_instructions": SYSTEM_INSTRUCTIONS,
        "gen_ai.input.messages": INPUT_MESSAGES,
        "gen_ai.output.messages": OUTPUT_MESSAGES,
    }
    record = only_record(sdk_request(("chat", structured)))
    assert record.messages == EXPECTED_MESSAGES
    assert record.completion == "Rain."


def test_simple_role_and_content_messages_and_plain_system_instructions_are_read() -> None:
    attributes = {
        "gen_ai.system_instructions": "Be brief.",
        "gen_ai.input.messages": json.dumps([{"role": "user", "content": "Hi"}]),
        "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": "Hello!"}]),
    }
    record = only_record(sdk_request(("chat", attributes)))
    assert record.messages == (Message("system", "Be brief."), Message("user", "Hi"))
    assert record.completion == "Hello!"


def test_old_style_prompt_and_completion_with_older_usage_names() -> None:
    text: dict[str, Any] = {
        "gen_ai.prompt": "Tell me a joke",
        "gen_ai.completion": "No.",
        "gen_ai.usage.prompt_tokens": 4,
        "gen_ai.usage.completion_tokens": 1,
    }
    listed = {
        "gen_ai.prompt": json.dumps(
            [{"role": "system", "content": "S"}, {"role": "user", "content": "U"}]
        ),
        "gen_ai.completion": json.dumps([{"role": "assistant", "content": "A"}]),
    }
    first, second = parse_both(sdk_request(("completion", text), ("chat", listed))).records
    assert (first.messages, first.completion) == ((Message("user", "Tell me a joke"),), "No.")
    assert (first.input_tokens, first.output_tokens) == (4, 1)
    assert second.messages == (Message("system", "S"), Message("user", "U"))
    assert (second.completion, second.input_tokens) == ("A", None)


def test_flattened_legacy_prompt_attributes_are_read_in_order() -> None:
    attributes = {
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.1.content": "Question",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content": "Rules",
        "gen_ai.completion.0.content": "Answer",
    }
    record = only_record(sdk_request(("chat", attributes)))
    assert record.messages == (Message("system", "Rules"), Message("user", "Question"))
    assert record.completion == "Answer"


def test_spans_without_input_content_are_skipped_and_counted() -> None:
    request = sdk_request(
        ("GET /health", {"http.route": "/health"}),
        ("chat", {"gen_ai.operation.name": "chat", "gen_ai.request.model": "m"}),
        ("chat", {"gen_ai.input.messages": "[]"}),
        ("chat", NEW_STYLE),
    )
    result = parse_both(request)
    assert (len(result.records), result.skipped_spans) == (1, 3)


def test_ids_are_the_spans_ids_in_lowercase_hex() -> None:
    spans = sdk_spans(("a", NEW_STYLE), ("b", NEW_STYLE))
    records = parse_both(encode_spans(spans)).records
    assert [(r.trace_id, r.span_id) for r in records] == [
        (f"{s.context.trace_id:032x}", f"{s.context.span_id:016x}") for s in spans
    ]
    assert len({r.trace_id for r in records}) == 2


def test_uppercase_hex_ids_are_read_in_lowercase() -> None:
    document = otlp_json_document(sdk_request(("chat", NEW_STYLE)))
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["traceId"], span["spanId"] = span["traceId"].upper(), span["spanId"].upper()
    [record] = records_from_otlp_json(json.dumps(document).encode()).records
    assert record.trace_id == span["traceId"].lower()


def test_tags_map_from_span_then_resource_attributes() -> None:
    attributes = {
        **NEW_STYLE,
        "scopeweb.route": "chat",  # beats http.route
        "scopeweb.experiment": "ab-12",
        "scopeweb.tenant": 42,  # a scalar becomes text
    }
    request = sdk_request(("chat", attributes), resource={"scopeweb.experiment": "ignored"})
    record = only_record(request)
    assert dict(record.tags) == {"experiment": "ab-12", "route": "chat", "tenant": "42"}
    assert list(record.tags) == sorted(record.tags)

    only_resource = only_record(sdk_request(("chat", {"gen_ai.prompt": "Hi"})))
    assert dict(only_resource.tags) == {"tenant": "acme"}  # and conversation ids are no tags


def test_protobuf_and_json_give_identical_records() -> None:
    request = sdk_request(
        ("chat", NEW_STYLE),
        ("completion", {"gen_ai.prompt": "Hi", "gen_ai.completion": "Ho"}),
        ("GET /", {"http.route": "/"}),
    )
    result = parse_both(request)
    assert (len(result.records), result.skipped_spans) == (2, 1)


def test_absent_start_time_and_model_are_none_and_empty() -> None:
    document = otlp_json_document(sdk_request(("chat", {"gen_ai.prompt": "Hi"})))
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["startTimeUnixNano"] = 0
    del span["spanId"]
    [record] = records_from_otlp_json(json.dumps(document).encode()).records
    assert (record.started_at, record.model, record.span_id, record.completion) == (
        None,
        "",
        "",
        "",
    )


# --- OTLP: errors name the path ---------------------------------------------------------------


def llm_document() -> dict[str, Any]:
    return otlp_json_document(sdk_request(("chat", NEW_STYLE)))


def span_of(document: dict[str, Any]) -> dict[str, Any]:
    span: dict[str, Any] = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    return span


def set_attribute(document: dict[str, Any], key: str, value: dict[str, Any]) -> None:
    attributes = span_of(document)["attributes"]
    attributes[:] = [a for a in attributes if a["key"] != key] + [{"key": key, "value": value}]


def test_a_bad_trace_id_is_named_by_its_path() -> None:
    document = llm_document()
    span_of(document)["traceId"] = "4bf92f35"
    assert str(json_error(document)) == (
        f'{SPAN}.traceId: expected 32 hex characters, got "4bf92f35"'
    )


def test_base64_ids_are_refused_with_a_hint() -> None:
    document = MessageToDict(sdk_request(("chat", NEW_STYLE)))  # proto3 JSON: base64 ids
    assert "not base64" in json_error(document).reason


def test_all_zero_trace_id_is_refused() -> None:
    document = llm_document()
    span_of(document)["traceId"] = "0" * 32
    assert json_error(document).path == f"{SPAN}.traceId"


def test_wrong_attribute_types_are_named_by_their_paths() -> None:
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("gen_ai.usage.input_tokens", {"intValue": "-3"}, "expected a non-negative integer"),
        ("gen_ai.usage.input_tokens", {"intValue": "12x"}, "expected a 64-bit integer"),
        ("gen_ai.request.model", {"intValue": 3}, "expected a string"),
        ("gen_ai.input.messages", {"stringValue": "[{"}, "is not valid JSON"),
        ("gen_ai.input.messages", {"stringValue": '[{"role": "king", "content": ""}]'}, "role"),
        ("gen_ai.input.messages", {"stringValue": "{}"}, "expected an array of messages"),
    ]
    for key, value, reason in cases:
        document = llm_document()
        set_attribute(document, key, value)
        error = json_error(document)
        assert error.path.startswith(f"{SPAN}.attributes[{key}]"), error
        assert reason in error.reason, error


def test_int64_values_may_be_strings_or_numbers() -> None:
    document = llm_document()
    set_attribute(document, "gen_ai.usage.input_tokens", {"intValue": 12})
    span_of(document)["startTimeUnixNano"] = START_NS
    [record] = records_from_otlp_json(json.dumps(document).encode()).records
    assert record.input_tokens == 12
    assert record.started_at == START + timedelta(microseconds=123_456)


def test_unknown_otlp_fields_are_ignored() -> None:
    document = llm_document()
    document["futureField"] = 1
    span_of(document)["futureField"] = {"x": [1]}
    assert len(records_from_otlp_json(json.dumps(document).encode()).records) == 1


def test_garbage_protobuf_is_a_payload_error() -> None:
    with pytest.raises(PayloadError, match="not an OTLP ExportTraceServiceRequest"):
        records_from_otlp_protobuf(b"\x0a\xff\xff\xff\xff\x0f")


# --- Limits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("parser", PARSERS.values(), ids=PARSERS.keys())
def test_a_body_over_the_size_limit_is_refused_first(parser: Parser) -> None:
    with pytest.raises(PayloadError, match="MAX_BODY_BYTES"):
        parser(b"\xff" * (MAX_BODY_BYTES + 1))


@pytest.mark.parametrize("parser", JSON_PARSERS.values(), ids=JSON_PARSERS.keys())
def test_ten_thousand_nested_arrays_hit_the_depth_limit_not_recursion(parser: Parser) -> None:
    for body in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000, b"[" * 33 + b"]" * 33):
        with pytest.raises(PayloadError, match="MAX_DEPTH") as raised:
            parser(body)
        assert raised.value.path == "body"


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    text = "[" * 100 + '"{{{'  # the quote is escaped in the JSON: the string goes on
    assert decode_json(json.dumps({"a": text}).encode()) == {"a": text}


def test_deep_json_inside_an_attribute_hits_the_depth_limit() -> None:
    nested = "[" * 10_000 + "]" * 10_000
    error = refused(sdk_request(("chat", {"gen_ai.input.messages": nested})))
    assert error.path == f"{SPAN}.attributes[gen_ai.input.messages]"
    assert "MAX_DEPTH" in error.reason


def test_deep_protobuf_values_hit_the_depth_limit() -> None:
    nested: Any = "x"
    for _ in range(12):  # 12 lists of lists: deeper than 32 levels in OTLP/JSON
        nested = [nested]
    with pytest.raises(PayloadError, match="MAX_DEPTH"):
        records_from_otlp_protobuf(sdk_request(("chat", {"deep": nested})).SerializeToString())
    with pytest.raises(PayloadError):  # past protobuf's own limit on nesting messages
        records_from_otlp_protobuf(deep_protobuf(500))


def deep_protobuf(levels: int) -> bytes:
    """A request whose one attribute nests ``levels`` arrays, written in wire format by hand:
    the protobuf classes refuse to build it."""

    def field(number: int, payload: bytes) -> bytes:  # a length-delimited field
        length, size = b"", len(payload)
        while True:
            length += bytes([size & 0x7F | (0x80 if size > 0x7F else 0)])
            size >>= 7
            if not size:
                return bytes([number << 3 | 2]) + length + payload

    value = field(1, b"x")  # AnyValue.string_value
    for _ in range(levels):
        value = field(5, field(1, value))  # AnyValue.array_value, ArrayValue.values
    span = field(9, field(1, b"deep") + field(2, value))  # Span.attributes: KeyValue
    return field(1, field(2, field(2, span)))  # resource_spans, scope_spans, spans


def test_more_records_than_the_limit_are_refused() -> None:
    request = sdk_request(*[("chat", {"gen_ai.prompt": "Hi"})] * (MAX_RECORDS + 1))
    assert "MAX_RECORDS" in refused(request).reason
    one = {"trace_id": TRACE_ID, "prompt": "Hi"}
    with pytest.raises(PayloadError, match="MAX_RECORDS"):
        records_from_plain_json(json.dumps({"traces": [one] * (MAX_RECORDS + 1)}).encode())
    assert len(parse_both(sdk_request(*[("chat", {"gen_ai.prompt": "Hi"})] * 3)).records) == 3


def test_text_longer_than_the_limit_is_refused() -> None:
    long = "a" * (MAX_TEXT_CHARS + 1)
    for attributes in (
        {"gen_ai.prompt": long},
        {"gen_ai.prompt": "Hi", "gen_ai.completion": long},
        {"gen_ai.input.messages": json.dumps([{"role": "user", "content": long}])},
    ):
        assert "MAX_TEXT_CHARS" in refused(sdk_request(("chat", attributes))).reason
    with pytest.raises(PayloadError, match="MAX_TEXT_CHARS") as raised:
        records_from_plain_json(plain({"completion": long}))
    assert raised.value.path == "traces[0].completion"
    assert only_record(sdk_request(("chat", {"gen_ai.prompt": long[1:]}))).messages[0].content


def test_more_messages_than_the_limit_are_refused() -> None:
    messages = [{"role": "user", "content": "Hi"}] * (MAX_MESSAGES + 1)
    request = sdk_request(("chat", {"gen_ai.input.messages": json.dumps(messages)}))
    assert "MAX_MESSAGES" in refused(request).reason
    with pytest.raises(PayloadError, match="MAX_MESSAGES"):
        records_from_plain_json(plain({"prompt": DROP, "messages": messages}))


def test_tag_limits_are_enforced() -> None:
    too_many = {f"t{i}": "v" for i in range(MAX_TAGS + 1)}
    long_key = {"k" * (MAX_TAG_KEY_CHARS + 1): "v"}
    long_value = {"route": "v" * (MAX_TAG_VALUE_CHARS + 1)}
    for tags, limit in (
        (too_many, "MAX_TAGS"),
        (long_key, "MAX_TAG_KEY_CHARS"),
        (long_value, "MAX_TAG_VALUE_CHARS"),
    ):
        with pytest.raises(PayloadError, match=limit):
            records_from_plain_json(plain({"tags": tags}))
    request = sdk_request(("chat", {"gen_ai.prompt": "Hi", "http.route": "/" * 257}))
    assert str(refused(request)).startswith(f"{SPAN}.attributes[http.route]: is 257 characters")


@pytest.mark.parametrize("parser", JSON_PARSERS.values(), ids=JSON_PARSERS.keys())
def test_a_body_that_is_not_utf8_is_refused_with_the_offset(parser: Parser) -> None:
    with pytest.raises(PayloadError) as raised:
        parser(b'{"traces": ["\xc3\x28"]}')
    assert str(raised.value) == "body: is not UTF-8: the byte at offset 13 (0xc3)"


@pytest.mark.parametrize("parser", JSON_PARSERS.values(), ids=JSON_PARSERS.keys())
def test_bad_json_syntax_is_reported_with_line_and_column(parser: Parser) -> None:
    with pytest.raises(PayloadError, match="line 2, column 3"):
        parser(b'{"traces":\n  ]')
    with pytest.raises(PayloadError, match="NaN"):
        parser(b'{"traces": NaN}')


def test_nul_characters_are_refused_in_every_format() -> None:
    with pytest.raises(PayloadError, match="NUL") as raised:
        records_from_plain_json(plain({"prompt": "a\u0000b"}))
    assert raised.value.path == "traces[0].prompt"
    request = sdk_request(("chat", {"gen_ai.prompt": "Hi", "gen_ai.completion": "a\x00"}))
    assert str(refused(request)) == (
        f"{SPAN}.attributes[gen_ai.completion]: contains a NUL character (at index 1)"
    )
    with pytest.raises(PayloadError, match="surrogate"):
        records_from_plain_json(
            b'{"traces": [{"trace_id": "%s", "prompt": "\\ud800"}]}' % TRACE_ID.encode()
        )


# --- The plain format -------------------------------------------------------------------------

DROP: Any = object()  # as the value of a field: leave the field out


def plain(fields: dict[str, Any], at: int = 0) -> bytes:
    """A plain body whose trace ``at`` (those before it are valid) has ``fields`` changed."""
    valid = {"trace_id": TRACE_ID, "prompt": "Hi"}
    trace = {key: value for key, value in {**valid, **fields}.items() if value is not DROP}
    return json.dumps({"traces": [valid] * at + [trace]}).encode()


def plain_error(fields: dict[str, Any], at: int = 0) -> PayloadError:
    with pytest.raises(PayloadError) as raised:
        records_from_plain_json(plain(fields, at))
    return raised.value


def test_a_full_plain_trace_becomes_a_record() -> None:
    trace = {
        "trace_id": TRACE_ID.upper(),
        "span_id": "00f067aa0ba902b7",
        "service": "chat-staging",
        "model": "google/gemma-3-270m",
        "messages": [{"role": "system", "content": "S"}, {"role": "model", "content": "Hi"}],
        "completion": "Hello!",
        "tags": {"tenant": "acme", "route": "/v1/chat"},
        "input_tokens": 3,
        "output_tokens": 4,
        "started_at": "2026-12-02T13:00:00.5+01:00",
        "overhead_ms": 2.5,
        "features": {"f1": [1, 2]},
    }
    result = records_from_plain_json(json.dumps({"traces": [trace]}).encode())
    assert result == ParseResult(
        records=(
            IngestRecord(
                trace_id=TRACE_ID,
                span_id="00f067aa0ba902b7",
                service="chat-staging",
                model="google/gemma-3-270m",
                messages=(Message("system", "S"), Message("assistant", "Hi")),
                completion="Hello!",
                input_tokens=3,
                output_tokens=4,
                tags={"route": "/v1/chat", "tenant": "acme"},
                started_at=START + timedelta(microseconds=500_000),
                extra={"overhead_ms": 2.5, "features": {"f1": [1, 2]}},
            ),
        ),
        skipped_spans=0,
    )


def test_a_minimal_plain_trace_has_defaults() -> None:
    [record] = records_from_plain_json(plain({})).records
    assert (record.span_id, record.service, record.model, record.completion) == ("", "", "", "")
    assert (record.input_tokens, record.started_at, dict(record.tags)) == (None, None, {})
    assert record.messages == (Message("user", "Hi"),)
    assert dict(record.extra) == {}


def test_null_is_an_absent_field_but_a_null_features_is_kept() -> None:
    nulls = {"span_id": None, "completion": None, "tags": None, "overhead_ms": None}
    [record] = records_from_plain_json(plain({**nulls, "features": None})).records
    assert (record.span_id, record.completion, dict(record.tags)) == ("", "", {})
    assert dict(record.extra) == {"features": None}


def test_wrong_plain_types_are_named_by_their_paths() -> None:
    assert str(plain_error({"input_tokens": "12"}, at=3)) == (
        'traces[3].input_tokens: expected a non-negative integer, got "12"'
    )
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"output_tokens": True},
            "traces[0].output_tokens: expected a non-negative integer, got true",
        ),
        ({"output_tokens": -1}, "traces[0].output_tokens: expected a non-negative integer, got -1"),
        ({"trace_id": 7}, "traces[0].trace_id: expected 32 hex characters, got 7"),
        ({"span_id": "xyz"}, 'traces[0].span_id: expected 16 hex characters, got "xyz"'),
        ({"tags": {"route": 1}}, "traces[0].tags.route: expected a string, got 1"),
        ({"tags": []}, "traces[0].tags: expected an object, got an array"),
        ({"started_at": "2026-12-02T12:00:00"}, "traces[0].started_at: expected an RFC 3339"),
        ({"started_at": "2026-13-02T12:00:00Z"}, "traces[0].started_at: expected an RFC 3339"),
        ({"overhead_ms": "2"}, 'traces[0].overhead_ms: expected a non-negative number, got "2"'),
        ({"overhead_ms": -1}, "traces[0].overhead_ms: expected a non-negative number, got -1"),
        ({"overhead_ms": 10**400}, "traces[0].overhead_ms: expected a non-negative number, got 10"),
        ({"features": [1]}, "traces[0].features: expected a JSON object or null, got an array"),
        (
            {"prompt": DROP, "messages": [{"role": "user"}]},
            'traces[0].messages[0]: has no "content"',
        ),
        (
            {"prompt": DROP, "messages": [{"role": "me", "content": ""}]},
            "traces[0].messages[0].role",
        ),
        ({"prompt": ""}, 'traces[0].prompt: expected a non-empty string, got ""'),
    ]
    for fields, message in cases:
        assert str(plain_error(fields)).startswith(message), (fields, message)


def test_unknown_plain_keys_are_refused_by_name() -> None:
    error = plain_error({"promt": "typo", "extra": 1})
    assert error.path == "traces[0]"
    assert error.reason.startswith('has unknown keys "extra", "promt"')
    assert plain_error(
        {"prompt": DROP, "messages": [{"role": "user", "content": "", "name": "x"}]}
    ).path == ("traces[0].messages[0]")
    with pytest.raises(PayloadError, match='unknown keys "trace"'):
        records_from_plain_json(b'{"traces": [], "trace": []}')


def test_messages_and_prompt_are_needed_exactly_once() -> None:
    both = plain_error({"messages": [{"role": "user", "content": "Hi"}]})
    neither = plain_error({"prompt": DROP})
    for error in (both, neither):
        assert str(error) == 'traces[0]: needs exactly one of "messages" and "prompt"'
    assert (
        str(plain_error({"prompt": DROP, "messages": []}))
        == "traces[0].messages: holds no messages"
    )


def test_the_plain_body_needs_a_traces_array() -> None:
    for body, message in (
        (b"[]", "body: expected an object, got an array"),
        (b"{}", 'body: has no "traces"'),
        (b'{"traces": {}}', "traces: expected an array, got an object"),
    ):
        with pytest.raises(PayloadError) as raised:
            records_from_plain_json(body)
        assert str(raised.value) == message
    assert records_from_plain_json(b'{"traces": []}') == ParseResult(records=())


# --- Properties: a PayloadError or a result, never another exception --------------------------

many = hypothesis_settings(
    max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` seven draws in eight, any JSON value in the eighth: deep code gets reached."""
    return st.sampled_from([True] * 7 + [False]).flatmap(lambda fits: good if fits else json_values)


texts = st.text(max_size=10)
roles = st.sampled_from(["system", "user", "assistant", "tool", "model", "king"])
trace_ids = st.sampled_from([TRACE_ID, TRACE_ID.upper(), TRACE_ID[::-1], "0" * 32, "zz"])
span_ids = st.sampled_from(["00f067aa0ba902b7", "00F067AA0BA902B7", "", "0" * 16, TRACE_ID])
timestamps = st.sampled_from(
    ["2026-12-02T12:00:00Z", "2026-02-30T12:00:00+01:00", "9999-12-31T23:59:59-01:00"]
)
plain_messages = st.lists(
    st.fixed_dictionaries({"role": mostly(roles), "content": mostly(texts)}),
    min_size=1,
    max_size=3,
)
plain_fields: dict[str, st.SearchStrategy[Any]] = {
    "span_id": span_ids,
    "service": texts,
    "model": texts,
    "messages": plain_messages,
    "prompt": texts,
    "completion": texts,
    "tags": st.dictionaries(texts, texts, max_size=3),
    "input_tokens": st.integers(min_value=-1),
    "output_tokens": st.integers(min_value=-1),
    "started_at": timestamps,
    "overhead_ms": st.floats(allow_nan=False, allow_infinity=False) | st.integers(),
    "features": st.none() | st.dictionaries(texts, json_values, max_size=2),
}
plain_inputs = st.sampled_from([("messages",), ("prompt",), ("messages", "prompt"), ()]).flatmap(
    lambda keys: st.fixed_dictionaries({key: mostly(plain_fields[key]) for key in keys})
)
plain_traces = st.builds(
    lambda trace, given: {**trace, **given},
    st.fixed_dictionaries(
        {"trace_id": mostly(trace_ids)},
        optional={
            key: mostly(value)
            for key, value in plain_fields.items()
            if key not in ("messages", "prompt")
        },
    ),
    st.sampled_from([True] * 7 + [False]).flatmap(
        lambda fits: plain_inputs.filter(lambda given: len(given) == 1) if fits else plain_inputs
    ),
)
parts = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "text", "tool_call"]), "content": mostly(texts)}
    ),
    max_size=3,
)
otlp_messages = st.lists(
    st.fixed_dictionaries({"role": mostly(roles), "parts": mostly(parts)})
    | st.fixed_dictionaries({"role": mostly(roles)}, optional={"content": mostly(texts)}),
    min_size=1,
    max_size=3,
)
int64s = st.integers(min_value=-(2**63), max_value=2**64)
any_values = st.recursive(
    st.builds(
        lambda value: {"stringValue": value},
        texts | otlp_messages.map(json.dumps) | parts.map(json.dumps),
    )
    | st.builds(lambda value: {"intValue": value}, mostly(int64s | int64s.map(str)))
    | st.builds(lambda value: {"doubleValue": value}, mostly(st.sampled_from(["NaN", "1e5", 2.5])))
    | st.builds(lambda value: {"boolValue": value}, mostly(st.booleans()))
    | st.builds(lambda value: {"bytesValue": value}, mostly(st.sampled_from(["aGk=", "aGk", "!"]))),
    lambda children: (
        st.builds(lambda values: {"arrayValue": {"values": values}}, st.lists(children, max_size=3))
        | st.builds(
            lambda entries: {
                "kvlistValue": {"values": [{"key": k, "value": v} for k, v in entries]}
            },
            st.lists(st.tuples(st.sampled_from(["role", "parts", "content", "type"]), children)),
        )
    ),
    max_leaves=8,
)
attribute_keys = st.sampled_from(
    [
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.system_instructions",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.prompt.0.content",
        "gen_ai.prompt.0.role",
        "gen_ai.completion.0.content",
        "gen_ai.usage.input_tokens",
        "gen_ai.request.model",
        "scopeweb.route",
        "http.route",
        "service.name",
    ]
)
attributes = st.lists(
    st.fixed_dictionaries({"key": attribute_keys, "value": any_values}), max_size=6
)


def any_value_of(value: Any) -> dict[str, Any]:
    """A Python value as an OTLP/JSON AnyValue, as the exporter encodes attributes."""
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, list):
        return {"arrayValue": {"values": [any_value_of(item) for item in value]}}
    if isinstance(value, dict):
        entries = [{"key": key, "value": any_value_of(item)} for key, item in value.items()]
        return {"kvlistValue": {"values": entries}}
    return {}


message_values = otlp_messages.map(lambda m: {"stringValue": json.dumps(m)}) | otlp_messages.map(
    any_value_of
)
llm_attributes = st.fixed_dictionaries(
    {"gen_ai.input.messages": message_values},
    optional={
        "gen_ai.output.messages": message_values,
        "gen_ai.system_instructions": texts.map(any_value_of) | parts.map(any_value_of),
        "gen_ai.usage.input_tokens": any_values,
        "gen_ai.request.model": texts.map(any_value_of),
        "scopeweb.route": texts.map(any_value_of),
        "gen_ai.prompt": texts.map(any_value_of),
    },
).map(lambda found: [{"key": key, "value": value} for key, value in found.items()])
otlp_spans = st.fixed_dictionaries(
    {"traceId": mostly(trace_ids), "attributes": mostly(llm_attributes | attributes)},
    optional={"spanId": mostly(span_ids), "startTimeUnixNano": mostly(int64s | int64s.map(str))},
)
otlp_documents = st.builds(
    lambda resource, spans: {
        "resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]
    },
    mostly(attributes),
    st.lists(mostly(otlp_spans), min_size=1, max_size=3),
)


def parses_or_refuses(parser: Parser, body: bytes) -> None:
    try:
        result = parser(body)
    except PayloadError:
        return
    assert isinstance(result, ParseResult)


@many
@given(value=json_values | plain_traces.map(lambda t: {"traces": [t]}) | otlp_documents)
def test_any_json_value_parses_or_is_refused(value: Any) -> None:
    body = json.dumps(value).encode()
    for parser in PARSERS.values():
        parses_or_refuses(parser, body)


@many
@given(body=st.binary(max_size=200))
def test_any_bytes_parse_or_are_refused(body: bytes) -> None:
    for parser in PARSERS.values():
        parses_or_refuses(parser, body)


REAL_PROTOBUF = sdk_request(("chat", NEW_STYLE), ("GET /", {"http.route": "/"})).SerializeToString()


@many
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(REAL_PROTOBUF) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    )
)
def test_a_damaged_real_protobuf_request_parses_or_is_refused(edits: list[tuple[int, int]]) -> None:
    body = bytearray(REAL_PROTOBUF)
    for offset, byte in edits:
        body[offset] = byte
    parses_or_refuses(records_from_otlp_protobuf, bytes(body))
