"""OTLP/HTTP trace exports, JSON or protobuf, as IngestRecords: the LLM calls among the spans.

Both encodings share one reading. A protobuf body becomes the dict an OTLP/JSON body decodes to
(``MessageToDict``, then its base64 ids rewritten in hex as OTLP/JSON writes them), and
``_records_from_request`` reads that dict. OTLP/JSON per the OTLP specification: lowerCamelCase
keys, hex ``traceId``/``spanId`` (any case), 64-bit integers as numbers or decimal strings,
unknown fields ignored.

Which spans are LLM calls: those whose attributes hold input content, ``gen_ai.input.messages``,
``gen_ai.prompt`` or the flattened ``gen_ai.prompt.<n>.content``, and at least one message of
it. The other spans are counted in ``ParseResult.skipped_spans``.

How the GenAI semantic conventions map onto a record (span attributes unless said otherwise):

=================  ==========================================================================
record field       read from
=================  ==========================================================================
trace_id, span_id  the span's ``traceId``, ``spanId``
service            the resource attribute ``service.name``
model              ``gen_ai.request.model``, else ``gen_ai.response.model``
messages           ``gen_ai.system_instructions`` (parts, or plain text) as a leading system
                   message, then ``gen_ai.input.messages``; else ``gen_ai.prompt`` (a JSON list
                   of ``{role, content}``, or plain text: one user message); else
                   ``gen_ai.prompt.<n>.role`` / ``.content`` in order of ``n``
completion         the first message (choice) of ``gen_ai.output.messages``; else
                   ``gen_ai.completion`` (as ``gen_ai.prompt``); else
                   ``gen_ai.completion.0.content``
input_tokens       ``gen_ai.usage.input_tokens``, else ``gen_ai.usage.prompt_tokens``
output_tokens      ``gen_ai.usage.output_tokens``, else ``gen_ai.usage.completion_tokens``
tags["route"]      ``scopeweb.route``, else ``http.route``
tags["tenant"]     ``scopeweb.tenant``
tags["experiment"] ``scopeweb.experiment``
started_at         the span's ``startTimeUnixNano`` (0 or absent: None)
=================  ==========================================================================

A tag is read from the span's attributes first, then from the resource's. Messages are
``{"role", "parts": [...]}`` (the text parts' ``content`` joined by newlines, other parts
ignored) or ``{"role", "content"}``, given as a JSON string or as an OTLP array of kvlists.
``gen_ai.conversation.id`` and every other attribute are not kept.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from traces.ingest.records import (
    BODY,
    MAX_DEPTH,
    MAX_RECORDS,
    IngestRecord,
    Message,
    ParseResult,
    PayloadError,
    check_body_size,
    check_messages,
    check_name,
    check_role,
    check_span_id,
    check_tag_value,
    check_text,
    check_token_count,
    check_trace_id,
    decode_json,
    depth_error,
    describe,
    fail,
    frozen_tags,
    load_json_text,
)

# An attribute's key -> (its raw AnyValue, its path for errors).
Attributes = dict[str, tuple[Any, str]]

_PROMPT_PART = re.compile(r"gen_ai\.prompt\.([0-9]{1,6})\.(role|content)")
_TAG_SOURCES = {
    "route": ("scopeweb.route", "http.route"),
    "tenant": ("scopeweb.tenant",),
    "experiment": ("scopeweb.experiment",),
}
_INTEGER = re.compile(r"-?[0-9]{1,20}")  # int64 and fixed64 in decimal, ASCII digits only
_DOUBLE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|-?Infinity")
_ANY_VALUE_KINDS = (
    "stringValue",
    "boolValue",
    "intValue",
    "doubleValue",
    "arrayValue",
    "kvlistValue",
    "bytesValue",
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
    for span, path, resource in _spans(_object(document, BODY)):
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
    for r_index, raw in enumerate(_list(request.get("resourceSpans"), "resourceSpans")):
        path = f"resourceSpans[{r_index}]"
        resource_spans = _object(raw, path)
        resource = _object_or_empty(resource_spans.get("resource"), f"{path}.resource")
        attributes = _attributes(resource.get("attributes"), f"{path}.resource.attributes")
        for s_index, raw_scope in enumerate(
            _list(resource_spans.get("scopeSpans"), f"{path}.scopeSpans")
        ):
            scope_path = f"{path}.scopeSpans[{s_index}]"
            scope_spans = _object(raw_scope, scope_path)
            spans = _list(scope_spans.get("spans"), f"{scope_path}.spans")
            for index, raw_span in enumerate(spans):
                span_path = f"{scope_path}.spans[{index}]"
                yield _object(raw_span, span_path), span_path, attributes


def _span_record(span: dict[str, Any], path: str, resource: Attributes) -> IngestRecord | None:
    """The record of an LLM call's span; None for any other span."""
    attributes = _attributes(span.get("attributes"), f"{path}.attributes")
    messages = _input_messages(attributes)
    if not messages:
        return None
    return IngestRecord(
        trace_id=check_trace_id(span.get("traceId"), f"{path}.traceId"),
        span_id=_span_id(span, path),
        service=_name(resource, ("service.name",)),
        model=_name(attributes, ("gen_ai.request.model", "gen_ai.response.model")),
        messages=check_messages(messages, f"{path}.attributes"),
        completion=_completion(attributes),
        input_tokens=_tokens(
            attributes, ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
        ),
        output_tokens=_tokens(
            attributes, ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
        ),
        tags=frozen_tags(_tags(attributes, resource), f"{path}.attributes"),
        started_at=_started_at(span.get("startTimeUnixNano"), f"{path}.startTimeUnixNano"),
    )


def _span_id(span: dict[str, Any], path: str) -> str:
    value = span.get("spanId")
    return "" if value in (None, "") else check_span_id(value, f"{path}.spanId")


def _started_at(value: Any, path: str) -> datetime | None:
    """A ``fixed64`` of nanoseconds since the epoch (a number or a decimal string) in UTC."""
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        value = int(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        fail(path, "nanoseconds since the Unix epoch", value)
    return None if value == 0 else _EPOCH + timedelta(microseconds=value // 1000)


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(path, "an object", value)
    return value


def _object_or_empty(value: Any, path: str) -> dict[str, Any]:
    """A message field: absent or null is an empty message, as in proto3 JSON."""
    return {} if value is None else _object(value, path)


def _list(value: Any, path: str) -> list[Any]:
    """A repeated field: absent or null is empty, as in proto3 JSON."""
    if value is None:
        return []
    if not isinstance(value, list):
        fail(path, "an array", value)
    return value


def _attributes(value: Any, path: str) -> Attributes:
    """A KeyValue list as key -> (raw value, path); values are read only when used."""
    attributes: Attributes = {}
    for index, raw in enumerate(_list(value, path)):
        entry = _object(raw, f"{path}[{index}]")
        key = entry.get("key")
        if not isinstance(key, str):
            fail(f"{path}[{index}].key", "a string", key)
        attributes[key] = (entry.get("value"), f"{path}[{key}]")
    return attributes


# --- AnyValue ---------------------------------------------------------------------------------


def _value(attributes: Attributes, key: str) -> Any:
    """The Python value of an attribute (see ``_any_value``); None when absent."""
    if key not in attributes:
        return None
    raw, path = attributes[key]
    return _any_value(raw, path)


def _any_value(raw: Any, path: str) -> Any:
    """An OTLP AnyValue as a Python value: str, bool, int, float, bytes, list, dict or None.

    Recursion is bounded: the request nests no deeper than ``MAX_DEPTH`` by then.
    """
    value = _object_or_empty(raw, path)
    kinds = [kind for kind in _ANY_VALUE_KINDS if kind in value]
    if len(kinds) > 1:
        raise PayloadError(path, f"holds {' and '.join(kinds)}; an AnyValue holds one value")
    if not kinds:
        return None
    kind = kinds[0]
    return _READERS[kind](value[kind], f"{path}.{kind}")


def _string_value(value: Any, path: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        fail(path, "a string", value)
    return value


def _bool_value(value: Any, path: str) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        fail(path, "true or false", value)
    return value


def _int_value(value: Any, path: str) -> int:
    if value is None:
        return 0
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        fail(path, "a 64-bit integer (a number or a decimal string)", value)
    return value


def _double_value(value: Any, path: str) -> float:
    if value is None:
        return 0.0
    if isinstance(value, str) and _DOUBLE.fullmatch(value):
        return float(value)  # a string too big for a double is infinity
    if isinstance(value, bool) or not isinstance(value, int | float):
        fail(path, "a number", value)
    try:
        return float(value)
    except OverflowError:  # an integer beyond any double
        fail(path, "a number", value)


def _bytes_value(value: Any, path: str) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        fail(path, "base64 text", value)
    standard = value.replace("-", "+").replace("_", "/")  # proto3 JSON also takes URL-safe
    try:
        return base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except binascii.Error:
        fail(path, "base64 text", value)


def _array_value(value: Any, path: str) -> list[Any]:
    array = _object_or_empty(value, path)
    values = _list(array.get("values"), f"{path}.values")
    return [_any_value(item, f"{path}.values[{index}]") for index, item in enumerate(values)]


def _kvlist_value(value: Any, path: str) -> dict[str, Any]:
    kvlist = _object_or_empty(value, path)
    entries = _attributes(kvlist.get("values"), f"{path}.values")
    return {key: _any_value(raw, entry_path) for key, (raw, entry_path) in entries.items()}


_READERS = {
    "stringValue": _string_value,
    "boolValue": _bool_value,
    "intValue": _int_value,
    "doubleValue": _double_value,
    "arrayValue": _array_value,
    "kvlistValue": _kvlist_value,
    "bytesValue": _bytes_value,
}


# --- GenAI attributes -------------------------------------------------------------------------


def _input_messages(attributes: Attributes) -> list[Message]:
    """The input as chat turns, from the newest convention the span follows; [] for none."""
    if "gen_ai.input.messages" in attributes:
        _, path = attributes["gen_ai.input.messages"]
        value = _value(attributes, "gen_ai.input.messages")
        messages = _chat_messages(_json_if_text(value, path), path)
    elif "gen_ai.prompt" in attributes:
        _, path = attributes["gen_ai.prompt"]
        messages = _legacy_messages(_value(attributes, "gen_ai.prompt"), path)
    else:
        messages = _flattened_prompt(attributes)
    if messages:
        return _system_instructions(attributes) + messages
    return []


def _system_instructions(attributes: Attributes) -> list[Message]:
    """``gen_ai.system_instructions`` as a leading system message, when it holds text."""
    if "gen_ai.system_instructions" not in attributes:
        return []
    _, path = attributes["gen_ai.system_instructions"]
    value = _value(attributes, "gen_ai.system_instructions")
    if isinstance(value, str) and not value.lstrip().startswith("["):
        text = check_text(value, path)  # plain text, as some instrumentations record it
    else:
        text = _parts_text(_json_if_text(value, path), path)
    return [Message("system", text)] if text else []


def _completion(attributes: Attributes) -> str:
    if "gen_ai.output.messages" in attributes:
        _, path = attributes["gen_ai.output.messages"]
        value = _value(attributes, "gen_ai.output.messages")
        choices = _chat_messages(_json_if_text(value, path), path)
        return choices[0].content if choices else ""
    if "gen_ai.completion" in attributes:
        _, path = attributes["gen_ai.completion"]
        messages = _legacy_messages(_value(attributes, "gen_ai.completion"), path)
        return messages[0].content if messages else ""
    if "gen_ai.completion.0.content" in attributes:
        _, path = attributes["gen_ai.completion.0.content"]
        return check_text(_value(attributes, "gen_ai.completion.0.content"), path)
    return ""


def _json_if_text(value: Any, path: str) -> Any:
    """A structured attribute's value: recorded as a JSON string, or as an AnyValue already."""
    return load_json_text(value, path) if isinstance(value, str) else value


def _chat_messages(value: Any, path: str) -> list[Message]:
    if not isinstance(value, list):
        fail(path, "an array of messages", value)
    return [_chat_message(item, f"{path}[{index}]") for index, item in enumerate(value)]


def _chat_message(value: Any, path: str) -> Message:
    """``{"role", "parts": [...]}`` (the conventions) or ``{"role", "content"}`` (older)."""
    message = _object(value, path)
    role = check_role(message.get("role"), f"{path}.role")
    if "parts" in message:
        return Message(role, _parts_text(message["parts"], f"{path}.parts"))
    if "content" in message:
        content = message["content"]
        return Message(role, "" if content is None else check_text(content, f"{path}.content"))
    raise PayloadError(path, 'has neither "parts" nor "content"')


def _parts_text(value: Any, path: str) -> str:
    """The text parts' content joined by newlines; tool calls, media and reasoning are left out."""
    if not isinstance(value, list):
        fail(path, "an array of parts", value)
    texts = []
    for index, raw in enumerate(value):
        part = _object(raw, f"{path}[{index}]")
        if part.get("type") == "text":
            content = part.get("content")
            if not isinstance(content, str):
                fail(f"{path}[{index}].content", "a string", content)
            texts.append(content)
    return check_text("\n".join(texts), path)


def _legacy_messages(value: Any, path: str) -> list[Message]:
    """``gen_ai.prompt`` / ``gen_ai.completion``: a JSON list of messages, or plain text."""
    if isinstance(value, str):
        structured = _json_messages_or_none(value, path)
        if structured is None:
            return [Message("user", check_text(value, path))] if value else []
        value = structured
    return _chat_messages(value, path)


def _json_messages_or_none(text: str, path: str) -> list[Any] | None:
    """``text`` parsed, when it is a JSON array of objects with a role; else None (plain text)."""
    if not text.lstrip().startswith("["):
        return None
    try:
        value = load_json_text(text, path)
    except PayloadError:
        return None
    if isinstance(value, list) and all(isinstance(item, dict) and "role" in item for item in value):
        return value
    return None


def _flattened_prompt(attributes: Attributes) -> list[Message]:
    """The older flattening, ``gen_ai.prompt.<n>.role`` and ``gen_ai.prompt.<n>.content``."""
    numbers = sorted(
        {int(match[1]) for key in attributes if (match := _PROMPT_PART.fullmatch(key))}
    )
    messages = []
    for number in numbers:
        role_key, content_key = f"gen_ai.prompt.{number}.role", f"gen_ai.prompt.{number}.content"
        if content_key not in attributes:
            continue
        role = "user"
        if role_key in attributes:
            role = check_role(_value(attributes, role_key), attributes[role_key][1])
        content = check_text(_value(attributes, content_key), attributes[content_key][1])
        messages.append(Message(role, content))
    return messages


def _name(attributes: Attributes, keys: tuple[str, ...]) -> str:
    for key in keys:
        if key in attributes:
            return check_name(_value(attributes, key), attributes[key][1])
    return ""


def _tokens(attributes: Attributes, keys: tuple[str, ...]) -> int | None:
    for key in keys:
        if key in attributes:
            return check_token_count(_value(attributes, key), attributes[key][1])
    return None


def _tags(attributes: Attributes, resource: Attributes) -> dict[str, str]:
    tags = {}
    for tag, keys in _TAG_SOURCES.items():
        found = next(
            (source[key] for source in (attributes, resource) for key in keys if key in source),
            None,
        )
        if found is not None:
            tags[tag] = _tag_value(_any_value(*found), found[1])
    return tags


def _tag_value(value: Any, path: str) -> str:
    """A scalar attribute as tag text (an integer tenant id, say); arrays and maps are refused."""
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, int | float):
        value = str(value)
    elif not isinstance(value, str):
        raise PayloadError(path, f"expected a string, got {describe(value)}")
    return check_tag_value(value, path)
