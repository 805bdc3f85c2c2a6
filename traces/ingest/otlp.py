"""OTLP/HTTP trace exports, JSON or protobuf, as IngestRecords: the LLM calls among the spans.

Both encodings share one reading. A protobuf body becomes the dict an OTLP/JSON body decodes to
(``MessageToDict``, then its base64 ids rewritten in hex as OTLP/JSON writes them), and
``_records_from_request`` reads that dict. OTLP/JSON per the OTLP specification: lowerCamelCase
keys, hex ``traceId``/``spanId`` (any case), 64-bit integers as numbers or decimal strings,
unknown fields ignored (``traces.ingest.otlp_values`` reads the values inside).

This module walks the envelope, ``resourceSpans`` → ``scopeSpans`` → ``spans``, and reads each
span's own fields: ``trace_id`` and ``span_id`` from its ``traceId`` and ``spanId``,
``started_at`` from its ``startTimeUnixNano`` (0 or absent: None). Which spans are LLM calls,
and the rest of a record, come from the attributes by the GenAI semantic conventions
(``traces.ingest.genai``). The other spans are counted in ``ParseResult.skipped_spans``.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from traces.ingest import genai
from traces.ingest.otlp_values import (
    DECIMAL_INTEGER,
    Attributes,
    json_object,
    key_values,
    message_field,
    repeated_field,
)
from traces.ingest.records import (
    BODY,
    MAX_DEPTH,
    MAX_RECORDS,
    IngestRecord,
    ParseResult,
    PayloadError,
    check_body_size,
    check_messages,
    check_span_id,
    check_trace_id,
    decode_json,
    depth_error,
    fail,
    frozen_tags,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def records_from_otlp_json(body: bytes) -> ParseResult:
    """The LLM calls of an OTLP/HTTP JSON ``ExportTraceServiceRequest``."""
    return _records_from_request(decode_json(body))


def records_from_otlp_protobuf(body: bytes) -> ParseResult:
    """The LLM calls of an OTLP/HTTP protobuf ``ExportTraceServiceRequest``."""
    check_body_size(body)
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
        document = MessageToDict(request, use_integers_for_enums=True)
    except DecodeError as error:
        reason = str(error).splitlines()[0]
        raise PayloadError(BODY, f"is not an OTLP ExportTraceServiceRequest: {reason}") from None
    except RecursionError:
        raise depth_error(BODY) from None
    if _nesting_depth(document) > MAX_DEPTH:  # the limit holds as for the same request in JSON
        raise depth_error(BODY)
    _ids_to_hex(document)
    return _records_from_request(document)


def _nesting_depth(value: Any) -> int:
    """How deep ``value`` nests lists and dicts, counted as JSON counts brackets."""
    deepest = 0
    pending = [(value, 1)]
    while pending and deepest <= MAX_DEPTH:  # beyond the limit, how much deeper is moot
        item, depth = pending.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, depth)
            pending.extend((child, depth + 1) for child in item)
    return deepest


def _ids_to_hex(document: dict[str, Any]) -> None:
    """Rewrite the spans' ids from base64 (proto3 JSON's bytes) to hex (OTLP/JSON's ids)."""
    for resource_spans in document.get("resourceSpans", []):
        for scope_spans in resource_spans.get("scopeSpans", []):
            for span in scope_spans.get("spans", []):
                for key in ("traceId", "spanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()


# --- The request's structure ------------------------------------------------------------------


def _records_from_request(document: Any) -> ParseResult:
    records: list[IngestRecord] = []
    skipped = 0
    for span, path, resource in _spans(json_object(document, BODY)):
        record = _span_record(span, path, resource)
        if record is None:
            skipped += 1
        elif len(records) == MAX_RECORDS:
            raise PayloadError(
                path, f"is LLM call {MAX_RECORDS + 1}; the limit (MAX_RECORDS) is {MAX_RECORDS}"
            )
        else:
            records.append(record)
    return ParseResult(records=tuple(records), skipped_spans=skipped)


def _spans(request: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str, Attributes]]:
    """Each span with its path and its resource's attributes."""
    for r_index, raw in enumerate(repeated_field(request.get("resourceSpans"), "resourceSpans")):
        path = f"resourceSpans[{r_index}]"
        resource_spans = json_object(raw, path)
        resource = message_field(resource_spans.get("resource"), f"{path}.resource")
        attributes = key_values(resource.get("attributes"), f"{path}.resource.attributes")
        for s_index, raw_scope in enumerate(
            repeated_field(resource_spans.get("scopeSpans"), f"{path}.scopeSpans")
        ):
            scope_path = f"{path}.scopeSpans[{s_index}]"
            scope_spans = json_object(raw_scope, scope_path)
            spans = repeated_field(scope_spans.get("spans"), f"{scope_path}.spans")
            for index, raw_span in enumerate(spans):
                span_path = f"{scope_path}.spans[{index}]"
                yield json_object(raw_span, span_path), span_path, attributes


def _span_record(span: dict[str, Any], path: str, resource: Attributes) -> IngestRecord | None:
    """The record of an LLM call's span; None for any other span."""
    attributes = key_values(span.get("attributes"), f"{path}.attributes")
    messages = genai.input_messages(attributes)
    if not messages:
        return None
    return IngestRecord(
        trace_id=check_trace_id(span.get("traceId"), f"{path}.traceId"),
        span_id=_span_id(span, path),
        service=genai.service_name(resource),
        model=genai.model_name(attributes),
        messages=check_messages(messages, f"{path}.attributes"),
        completion=genai.completion(attributes),
        input_tokens=genai.input_tokens(attributes),
        output_tokens=genai.output_tokens(attributes),
        tags=frozen_tags(genai.tags(attributes, resource), f"{path}.attributes"),
        started_at=_started_at(span.get("startTimeUnixNano"), f"{path}.startTimeUnixNano"),
    )


def _span_id(span: dict[str, Any], path: str) -> str:
    value = span.get("spanId")
    return "" if value in (None, "") else check_span_id(value, f"{path}.spanId")


def _started_at(value: Any, path: str) -> datetime | None:
    """A ``fixed64`` of nanoseconds since the epoch (a number or a decimal string) in UTC."""
    if isinstance(value, str) and DECIMAL_INTEGER.fullmatch(value):
        value = int(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        fail(path, "nanoseconds since the Unix epoch", value)
    return None if value == 0 else _EPOCH + timedelta(microseconds=value // 1000)
