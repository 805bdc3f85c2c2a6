"""The plain JSON format of ``POST /api/ingest/v1/traces`` as IngestRecords.

For tracers that do not speak OTLP. A body is ``{"traces": [trace, ...]}``, each trace::

    {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",   required, 32 hex characters
     "span_id": "00f067aa0ba902b7",                   16 hex characters
     "service": "chat-staging", "model": "google/gemma-3-270m",
     "messages": [{"role": "user", "content": "Hi"}], exactly one of messages and prompt
     "prompt": "Hi",                                  a bare prompt: one user message
     "completion": "Hello!",
     "tags": {"route": "/v1/chat", "tenant": "acme"}, string values only
     "input_tokens": 3, "output_tokens": 4,           non-negative integers
     "started_at": "2026-12-02T12:00:00Z",            RFC 3339, with an offset
     "overhead_ms": 2.5,                              the tracer's own overhead for the request
     "features": null}                                a JSON object or null, kept verbatim

Every field but ``trace_id`` is optional, and null stands for an absent field (but for
``features``, whose null is kept). Unlike OTLP, which must ignore fields it does not know, this
format refuses unknown keys: a misspelt field must not vanish silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from traces.ingest.records import (
    BODY,
    MAX_RECORDS,
    IngestRecord,
    Message,
    ParseResult,
    PayloadError,
    check_duration_ms,
    check_messages,
    check_name,
    check_role,
    check_span_id,
    check_tag_key,
    check_tag_value,
    check_text,
    check_token_count,
    check_trace_id,
    decode_json,
    fail,
    frozen,
    frozen_tags,
)

_TRACE_KEYS = (
    "trace_id",
    "span_id",
    "service",
    "model",
    "messages",
    "prompt",
    "completion",
    "tags",
    "input_tokens",
    "output_tokens",
    "started_at",
    "overhead_ms",
    "features",
)
_MESSAGE_KEYS = ("role", "content")
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def records_from_plain_json(body: bytes) -> ParseResult:
    """The records of a plain-format body; ``skipped_spans`` is always 0."""
    document = _object(decode_json(body), BODY)
    _refuse_unknown_keys(document, ("traces",), BODY)
    if "traces" not in document:
        raise PayloadError(BODY, 'has no "traces"')
    traces = document["traces"]
    if not isinstance(traces, list):
        fail("traces", "an array", traces)
    if len(traces) > MAX_RECORDS:
        raise PayloadError(
            "traces", f"holds {len(traces)} traces; the limit (MAX_RECORDS) is {MAX_RECORDS}"
        )
    return ParseResult(
        records=tuple(_record(trace, f"traces[{index}]") for index, trace in enumerate(traces))
    )


def _record(value: Any, path: str) -> IngestRecord:
    trace = _object(value, path)
    _refuse_unknown_keys(trace, _TRACE_KEYS, path)
    if "trace_id" not in trace:
        raise PayloadError(path, 'has no "trace_id"')

    def optional(key: str, check: Callable[[Any, str], Any], default: Any = None) -> Any:
        given = trace.get(key)
        return default if given is None else check(given, f"{path}.{key}")

    return IngestRecord(
        trace_id=check_trace_id(trace["trace_id"], f"{path}.trace_id"),
        span_id=optional("span_id", check_span_id, ""),
        service=optional("service", check_name, ""),
        model=optional("model", check_name, ""),
        messages=_input(trace, path),
        completion=optional("completion", check_text, ""),
        input_tokens=optional("input_tokens", check_token_count),
        output_tokens=optional("output_tokens", check_token_count),
        tags=frozen_tags(optional("tags", _tags, {}), f"{path}.tags"),
        started_at=optional("started_at", _timestamp),
        extra=frozen(_extra(trace, path)),
    )


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        fail(path, "an object", value)
    return value


def _refuse_unknown_keys(value: Mapping[str, Any], known: tuple[str, ...], path: str) -> None:
    unknown = sorted(key for key in value if key not in known)
    if unknown:
        names = ", ".join(f'"{key[:64]}"' for key in unknown[:10])
        allowed = ", ".join(known)
        raise PayloadError(path, f"has unknown keys {names}; the keys allowed: {allowed}")


def _input(trace: dict[str, Any], path: str) -> tuple[Message, ...]:
    """``messages`` or ``prompt``: exactly one of them."""
    messages, prompt = trace.get("messages"), trace.get("prompt")
    if (messages is None) == (prompt is None):
        raise PayloadError(path, 'needs exactly one of "messages" and "prompt"')
    if prompt is not None:
        text = check_text(prompt, f"{path}.prompt")
        if not text:
            fail(f"{path}.prompt", "a non-empty string", text)
        return (Message("user", text),)
    if not isinstance(messages, list):
        fail(f"{path}.messages", "an array of messages", messages)
    items = [_message(item, f"{path}.messages[{index}]") for index, item in enumerate(messages)]
    return check_messages(items, f"{path}.messages")


def _message(value: Any, path: str) -> Message:
    message = _object(value, path)
    _refuse_unknown_keys(message, _MESSAGE_KEYS, path)
    for key in _MESSAGE_KEYS:
        if key not in message:
            raise PayloadError(path, f'has no "{key}"')
    role = check_role(message["role"], f"{path}.role")
    return Message(role, check_text(message["content"], f"{path}.content"))


def _tags(value: Any, path: str) -> dict[str, str]:
    tags = _object(value, path)
    return {
        check_tag_key(key, path): check_tag_value(tag, f"{path}.{key[:64]}")
        for key, tag in tags.items()
    }


def _timestamp(value: Any, path: str) -> datetime:
    """An RFC 3339 timestamp with its offset, in UTC."""
    expected = 'an RFC 3339 timestamp with an offset, like "2026-12-02T12:00:00Z"'
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        fail(path, expected, value)
    try:
        # fromisoformat takes any number of fractional digits and "Z" from Python 3.11 on.
        return datetime.fromisoformat(value.upper()).astimezone(UTC)
    except (ValueError, OverflowError):  # a 13th month; a year 1 moved before year 1
        fail(path, expected, value)


def _extra(trace: dict[str, Any], path: str) -> dict[str, Any]:
    """What the format carries beyond a record's fields: the tracer's overhead, the features."""
    extra: dict[str, Any] = {}
    if trace.get("overhead_ms") is not None:
        extra["overhead_ms"] = check_duration_ms(trace["overhead_ms"], f"{path}.overhead_ms")
    if "features" in trace:
        features = trace["features"]
        if features is not None and not isinstance(features, dict):
            fail(f"{path}.features", "a JSON object or null", features)
        _check_texts(features, f"{path}.features")
        extra["features"] = features
    return extra


def _check_texts(value: Any, path: str) -> None:
    """Every key and string in ``value`` is storable text (``check_text``): the batch file
    keeps it as UTF-8, which has no unpaired surrogate."""
    pending = [(value, path)]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            check_text(item, where)
        elif isinstance(item, dict):
            for key, child in item.items():
                check_text(key, where)
                pending.append((child, f"{where}.{key[:64]}"))
        elif isinstance(item, list):
            pending += [(child, f"{where}[{index}]") for index, child in enumerate(item)]
