"""The tracer's sampling: OpenTelemetry's ratio rule, W3C trace context, manifest rules."""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from opentelemetry.sdk.trace.sampling import Decision as OtelDecision
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased

from scopeweb_tracer.sampling import (
    Decision,
    TraceContext,
    decide,
    format_traceparent,
    parse_trace_id,
    parse_traceparent,
    rate_for,
    ratio_sampled,
)

NOON = datetime(2026, 12, 2, 11, 0, tzinfo=UTC)
ACME_CHAT = {"route": "/v1/chat", "tenant": "acme"}


def manifest(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "version": 3,
        "service": "chat-staging",
        "checkpoint": "google/gemma-3-270m",
        "sample_rate": 0.01,
        "rules": [
            {
                "name": "support route",
                "match": {"route": "/v1/chat", "tenant": "acme"},
                "rate": 0.05,
            },
            {"name": "all of acme", "match": {"tenant": "acme"}, "rate": 0.2},
        ],
        "forensic_windows": [],
        "max_tokens_capture": 1000,
    }
    return base | overrides


def window(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "start": "2026-12-02T10:00:00Z",
        "end": "2026-12-02T12:00:00Z",
        "reason": "incident 42",
        "approved_by": "alice",
        "match": {},
    }
    return base | overrides


def otel_samples(sampler: TraceIdRatioBased, trace_id: int) -> bool:
    """The SDK's own decision (what `Decision.is_sampled`, untyped, answers)."""
    decision = sampler.should_sample(None, trace_id, "x").decision
    return decision is OtelDecision.RECORD_AND_SAMPLE


def random_ids(count: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    return [rng.getrandbits(128) or 1 for _ in range(count)]


# The ratio rule


@pytest.mark.parametrize("rate", [0.01, 0.05, 0.5])
def test_ratio_sampler_hits_its_rate(rate: float) -> None:
    # One standard error at 0.5 is 0.16 points, so ±0.3 points is 1.9 of them: a fixed seed
    # keeps the test deterministic (about one seed in sixteen lands outside at 0.5).
    ids = random_ids(100_000, seed=2)
    share = sum(ratio_sampled(trace_id, rate) for trace_id in ids) / len(ids)
    assert abs(share - rate) <= 0.003


@pytest.mark.parametrize("rate", [0.0, 1e-6, 0.01, 0.05, 0.25, 0.5, 0.999, 1.0])
def test_ratio_sampler_agrees_with_opentelemetry(rate: float) -> None:
    reference = TraceIdRatioBased(rate)
    for trace_id in random_ids(10_000, seed=11):
        assert ratio_sampled(trace_id, rate) == otel_samples(reference, trace_id), hex(trace_id)


def test_ratio_sampler_agrees_with_opentelemetry_at_the_bound() -> None:
    rate = 0.25
    bound = TraceIdRatioBased(rate).bound
    high_bits = 0xABCDEF << 64  # ignored by the rule: only the low 64 bits count
    for low in (0, bound - 1, bound, bound + 1, (1 << 64) - 1):
        trace_id = high_bits | low
        assert ratio_sampled(trace_id, rate) == otel_samples(TraceIdRatioBased(rate), trace_id)


def test_ratio_sampler_is_deterministic() -> None:
    ids = random_ids(1000, seed=3)
    first = [ratio_sampled(trace_id, 0.3) for trace_id in ids]
    assert [ratio_sampled(trace_id, 0.3) for trace_id in ids] == first


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_rate_outside_zero_one_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(rate))):
        ratio_sampled(1, rate)


# Trace ids


def test_trace_id_parses_either_case_and_ints() -> None:
    assert parse_trace_id("4bf92f3577b34da6a3ce929d0e0e4736") == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert parse_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736") == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert parse_trace_id(42) == 42


@pytest.mark.parametrize(
    "value",
    [
        "0" * 32,
        "4bf92f3577b34da6a3ce929d0e0e473",
        "4bf92f3577b34da6a3ce929d0e0e47361",
        "4bf92f3577b34da6a3ce929d0e0e473g",
        " 4bf92f3577b34da6a3ce929d0e0e473",
        "",
        0,
        -1,
        1 << 128,
        True,
    ],
)
def test_bad_trace_ids_are_refused(value: str | int) -> None:
    with pytest.raises(ValueError, match="trace id"):
        parse_trace_id(value)


# W3C trace context

HEADER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_traceparent_parses_the_w3c_example() -> None:
    assert parse_traceparent(HEADER) == TraceContext(
        trace_id=0x4BF92F3577B34DA6A3CE929D0E0E4736, span_id=0x00F067AA0BA902B7, sampled=True
    )


@pytest.mark.parametrize(
    "header", [HEADER, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"]
)
def test_traceparent_round_trips(header: str) -> None:
    ctx = parse_traceparent(header)
    assert ctx is not None
    assert format_traceparent(ctx) == header


def test_traceparent_sampled_is_the_low_flag_bit() -> None:
    ctx = parse_traceparent(HEADER[:-2] + "03")
    assert ctx is not None and ctx.sampled
    ctx = parse_traceparent(HEADER[:-2] + "02")
    assert ctx is not None and not ctx.sampled


def test_traceparent_of_a_later_version_keeps_its_first_fields() -> None:
    ctx = parse_traceparent("01" + HEADER[2:] + "-whatever")
    assert ctx == parse_traceparent(HEADER)


def test_format_traceparent_pads_small_ids() -> None:
    assert format_traceparent(TraceContext(1, 2, False)) == f"00-{1:032x}-{2:016x}-00"


@pytest.mark.parametrize(
    "header",
    [
        "",
        "garbage",
        "ff" + HEADER[2:],  # version ff is invalid
        HEADER + "-extra",  # version 00 has exactly four fields
        HEADER.upper(),  # lowercase hex only
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-" + "0" * 16 + "-01",  # all-zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # short span id
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "01" + HEADER[2:] + "-" + "x" * 600,  # over 512 characters
    ],
)
def test_invalid_traceparent_is_none(header: str) -> None:
    assert parse_traceparent(header) is None


# Manifest rules


def test_default_rate_without_a_matching_rule() -> None:
    assert rate_for(manifest(), {"route": "/v1/chat", "tenant": "globex"}, NOON) == (
        0.01,
        "default",
    )


def test_first_matching_rule_wins() -> None:
    assert rate_for(manifest(), ACME_CHAT, NOON) == (0.05, "rule: support route")
    assert rate_for(manifest(), {"route": "/v1/embed", "tenant": "acme"}, NOON) == (
        0.2,
        "rule: all of acme",
    )


def test_rule_needs_every_key_of_its_match() -> None:
    only = manifest(
        rules=[{"name": "r", "match": {"route": "/v1/chat", "tenant": "acme"}, "rate": 1}]
    )
    assert rate_for(only, {"route": "/v1/chat"}, NOON) == (0.01, "default")


def test_window_beats_rules() -> None:
    with_window = manifest(forensic_windows=[window()])
    assert rate_for(with_window, ACME_CHAT, NOON) == (1.0, "forensic window: incident 42")


def test_window_is_half_open_in_utc() -> None:
    with_window = manifest(forensic_windows=[window()])
    start = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    end = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert rate_for(with_window, {}, start)[0] == 1.0
    assert rate_for(with_window, {}, end - timedelta(microseconds=1))[0] == 1.0
    assert rate_for(with_window, {}, end)[0] == 0.01
    assert rate_for(with_window, {}, start - timedelta(microseconds=1))[0] == 0.01
    # 12:30 in Paris (UTC+1) is 11:30 UTC: inside.
    paris = timezone(timedelta(hours=1))
    assert rate_for(with_window, {}, datetime(2026, 12, 2, 12, 30, tzinfo=paris))[0] == 1.0


def test_window_match_narrows_it() -> None:
    with_window = manifest(forensic_windows=[window(match={"tenant": "globex"})])
    assert rate_for(with_window, ACME_CHAT, NOON) == (0.05, "rule: support route")
    assert rate_for(with_window, {"tenant": "globex"}, NOON)[0] == 1.0


def test_window_without_match_takes_every_request() -> None:
    unmatched = window()
    del unmatched["match"]
    assert rate_for(manifest(forensic_windows=[unmatched]), {}, NOON)[0] == 1.0


def test_window_whose_approver_was_deleted_still_applies() -> None:
    # The server sends approved windows only; a deleted approver serialises as "".
    orphaned = manifest(forensic_windows=[window(approved_by="")])
    assert rate_for(orphaned, ACME_CHAT, NOON) == (1.0, "forensic window: incident 42")


def test_window_accepts_datetimes_and_offsets() -> None:
    parsed = window(start=datetime(2026, 12, 2, 10, 0, tzinfo=UTC), end="2026-12-02T13:00:00+01:00")
    with_window = manifest(forensic_windows=[parsed])
    assert rate_for(with_window, {}, NOON)[0] == 1.0
    assert rate_for(with_window, {}, datetime(2026, 12, 2, 12, 0, tzinfo=UTC))[0] == 0.01


def test_missing_rules_and_windows_fall_back_to_the_default() -> None:
    assert rate_for({"sample_rate": 0.3}, ACME_CHAT, NOON) == (0.3, "default")


def test_missing_sample_rate_is_the_schema_default() -> None:
    assert rate_for({}, ACME_CHAT, NOON) == (0.01, "default")


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rate_for(manifest(), {}, datetime(2026, 12, 2, 11, 0))


def test_rule_rate_outside_zero_one_is_refused() -> None:
    bad = manifest(rules=[{"name": "r", "match": {}, "rate": 2}])
    with pytest.raises(ValueError, match=r"got 2\.0"):
        rate_for(bad, {}, NOON)


def test_decide_uses_the_rate_and_reason() -> None:
    with_window = manifest(forensic_windows=[window()])
    assert decide(with_window, 12345, {}, NOON) == Decision(
        True, 1.0, "forensic window: incident 42"
    )
    never = manifest(sample_rate=0.0, rules=[])
    assert decide(never, 12345, {}, NOON) == Decision(False, 0.0, "default")


def test_decide_is_deterministic_and_follows_the_ratio_rule() -> None:
    for trace_id in random_ids(2000, seed=5):
        first = decide(manifest(), trace_id, ACME_CHAT, NOON)
        assert decide(manifest(), trace_id, ACME_CHAT, NOON) == first
        assert first.sampled == ratio_sampled(trace_id, 0.05)
