"""Which requests to trace: OpenTelemetry's ratio rule, W3C trace context and manifest rules.

A serving process asks `decide` once per request. The decision depends only on the trace id,
the request's tags, the clock and the instrumentation manifest (the plain dict the server
serialises), so every process that sees the same trace id decides the same way, and agrees
with an OpenTelemetry SDK configured with ``TraceIdRatioBased`` at the same rate.

Standard library only: this module runs inside the serving process.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# OpenTelemetry's TraceIdRatioBased looks at the 64 low-order bits of the trace id only,
# so that 64-bit trace ids from older systems sample at the same rate.
TRACE_ID_LIMIT = (1 << 64) - 1
_TRACE_ID_HEX = re.compile(r"[0-9a-fA-F]{32}")
# Version 00 has exactly these four fields; a later version may append "-..." (W3C, 4.3).
_TRACEPARENT = re.compile(
    r"[ \t]*([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?[ \t]*"
)
_TRACEPARENT_MAX_LENGTH = 512
_SAMPLED_FLAG = 0x01
DEFAULT_SAMPLE_RATE = 0.01  # the manifest schema's default (traces/ingest/manifest_schema.json)


@dataclass(frozen=True)
class TraceContext:
    """The part of a W3C ``traceparent`` header the tracer uses."""

    trace_id: int
    span_id: int
    sampled: bool


@dataclass(frozen=True)
class Decision:
    """Whether to trace a request, at which rate, and which manifest entry set the rate."""

    sampled: bool
    rate: float
    reason: str


def bound_for_rate(rate: float) -> int:
    """The exclusive upper bound on a trace id's low 64 bits for ``rate`` (OpenTelemetry's)."""
    _check_rate(rate)
    return round(rate * (TRACE_ID_LIMIT + 1))


def ratio_sampled(trace_id: int, rate: float) -> bool:
    """Whether OpenTelemetry's ``TraceIdRatioBased(rate)`` samples ``trace_id``, bit for bit."""
    return trace_id & TRACE_ID_LIMIT < bound_for_rate(rate)


def _check_rate(rate: float) -> None:
    # `not (0 <= rate <= 1)` also refuses NaN, which every comparison answers False.
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"sampling rate must be within [0, 1], got {rate!r}")


def parse_trace_id(value: str | int) -> int:
    """A trace id from 32 hex digits (either case) or an int; all zeros is invalid (W3C)."""
    if isinstance(value, bool):
        raise ValueError(f"trace id must be 32 hex digits or an int, got {value!r}")
    if isinstance(value, int):
        trace_id = value
    elif isinstance(value, str) and _TRACE_ID_HEX.fullmatch(value):
        trace_id = int(value, 16)
    else:
        raise ValueError(f"trace id must be 32 hex digits, got {value!r}")
    if not 0 < trace_id < 1 << 128:
        raise ValueError(f"trace id must be a non-zero 128-bit number, got {value!r}")
    return trace_id


def parse_traceparent(header: str) -> TraceContext | None:
    """The context in a ``traceparent`` header, or None where the header is invalid.

    Follows W3C Trace Context level 1 as OpenTelemetry's propagator reads it: lowercase hex,
    version ff and all-zero ids refused, nothing after the flags in version 00.
    """
    if len(header) > _TRACEPARENT_MAX_LENGTH:
        return None
    match = _TRACEPARENT.fullmatch(header)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return TraceContext(trace_id, span_id, bool(int(flags_hex, 16) & _SAMPLED_FLAG))


def format_traceparent(ctx: TraceContext) -> str:
    """The version 00 ``traceparent`` header for ``ctx``."""
    flags = _SAMPLED_FLAG if ctx.sampled else 0
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags:02x}"


def rate_for(
    manifest: Mapping[str, Any], tags: Mapping[str, str], now: datetime
) -> tuple[float, str]:
    """The sampling rate for a request with ``tags`` at ``now``, and why.

    An open forensic window that matches wins (rate 1.0; the manifest holds approved windows
    only), then the first matching rule, then the manifest's ``sample_rate`` (the schema's
    default, 0.01, where it has none). A window or rule matches when every key of its
    ``match`` equals the request's tag; an empty or missing match takes every request.
    Windows are half-open, [start, end), compared in UTC.
    """
    instant = _aware(now, "now")
    for window in manifest.get("forensic_windows") or ():
        if _window_open(window, instant) and _matches(window.get("match"), tags):
            return 1.0, f"forensic window: {window.get('reason', '')}"
    for rule in manifest.get("rules") or ():
        if _matches(rule.get("match"), tags):
            return _rate(rule["rate"]), f"rule: {rule.get('name', '')}"
    return _rate(manifest.get("sample_rate", DEFAULT_SAMPLE_RATE)), "default"


def decide(
    manifest: Mapping[str, Any], trace_id: int, tags: Mapping[str, str], now: datetime
) -> Decision:
    """Whether to trace the request ``trace_id``; the same id and rate always decide alike."""
    rate, reason = rate_for(manifest, tags, now)
    return Decision(ratio_sampled(trace_id, rate), rate, reason)


def _rate(value: Any) -> float:
    rate = float(value)
    _check_rate(rate)
    return rate


def _matches(match: Mapping[str, str] | None, tags: Mapping[str, str]) -> bool:
    return all(key in tags and tags[key] == want for key, want in (match or {}).items())


def _window_open(window: Mapping[str, Any], instant: datetime) -> bool:
    # The server sends approved windows only. `approved_by` is not checked: it is "" once the
    # approver's account is deleted, and the window stays approved.
    start = _instant(window["start"], "forensic window start")
    end = _instant(window["end"], "forensic window end")
    return start <= instant < end


def _instant(value: str | datetime, what: str) -> datetime:
    """A UTC datetime from an ISO 8601 string (``Z`` accepted) or a datetime; naive is UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{what} is not an ISO 8601 time: {value!r}") from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _aware(value: datetime, what: str) -> datetime:
    # A naive `now` is usually datetime.now(), local time: refuse it rather than guess.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)
