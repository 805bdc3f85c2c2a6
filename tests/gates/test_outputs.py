"""The three files ``scopeweb-gate`` writes: JSON, JUnit XML (against the Ant schema) and the
Markdown summary of a pull-request comment."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from scopeweb_gate.outputs import (
    RESULT_SCHEMA,
    SUMMARY_LINKS,
    GateResult,
    MetricResult,
    failure_message,
    junit_xml,
    markdown_summary,
    metric_passes,
    result_from_json,
    result_json,
)

SCHEMA = etree.XMLSchema(etree.parse(str(Path(__file__).parent / "data" / "junit.xsd")))
RUN_URL = "https://scope.example.org/gates/runs/17/"
STARTED = datetime(2025, 3, 4, 10, 0, 0, 250000, tzinfo=UTC)


def trace(n: int) -> str:
    return f"https://scope.example.org/traces/{n}/"


def metric(name: str = "anomaly rate", **changes: object) -> MetricResult:
    base = MetricResult(
        name=name,
        value=0.02,
        threshold=0.05,
        baseline=0.01,
        passed=True,
        comparison="<=",
        unit="share",
        links=(trace(1),),
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def result(*metrics: MetricResult, **changes: object) -> GateResult:
    base = GateResult(
        gate="smoke",
        gate_version=3,
        run_url=RUN_URL,
        verdict="pass",
        metrics=metrics or (metric(),),
        signoff="pending",
        started_at=STARTED,
        finished_at=STARTED + timedelta(minutes=7, seconds=12),
        candidate="checkpoints/gemma-3-270m-ft",
        baseline="run 12",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


FAILING = metric(
    "unsafe-output rate",
    value=0.12,
    threshold=0.05,
    baseline=0.03,
    passed=False,
    links=tuple(trace(n) for n in range(40, 48)),
    detail="5 of 50 completions fired a watched feature",
)
HEADS = metric(
    "unusual attention patterns", value=1, threshold=2, baseline=0, unit="heads", links=()
)


def validate(xml: str) -> etree._Element:
    doc = etree.fromstring(xml.encode("utf-8"))
    SCHEMA.assertValid(doc)
    return doc


# --- JUnit XML -------------------------------------------------------------------------------


def test_passing_gate_is_a_valid_junit_suite_with_one_testcase_per_metric() -> None:
    doc = validate(junit_xml(result(metric(), HEADS)))
    assert doc.tag == "testsuite"
    assert doc.get("name") == "scope-gate: smoke"
    assert (doc.get("tests"), doc.get("failures"), doc.get("errors")) == ("2", "0", "0")
    assert doc.get("time") == "432.000"
    assert doc.get("timestamp") == "2025-03-04T10:00:00"
    assert doc.get("hostname") == "scope.example.org"
    cases = doc.findall("testcase")
    assert [c.get("name") for c in cases] == ["anomaly rate", "unusual attention patterns"]
    assert {c.get("classname") for c in cases} == {"scope-gate.smoke"}
    assert all(len(c) == 0 for c in cases)
    properties = {p.get("name"): p.get("value") for p in doc.find("properties")}
    assert properties["signoff"] == "pending" and properties["run_url"] == RUN_URL


def test_failing_metric_message_gives_value_threshold_baseline_and_first_trace() -> None:
    doc = validate(junit_xml(result(metric(), FAILING, verdict="fail")))
    assert (doc.get("tests"), doc.get("failures"), doc.get("errors")) == ("2", "1", "0")
    failure = doc.find("testcase[@name='unsafe-output rate']/failure")
    assert failure is not None and failure.get("type") == "threshold"
    assert failure.get("message") == (
        f"0.12 against threshold <= 0.05 (baseline 0.03): {trace(40)}"
    )
    text = failure.text or ""
    assert all(trace(n) in text for n in range(40, 48)), "the text lists every trace"
    assert "5 of 50 completions" in text and RUN_URL in text
    assert doc.find("testcase[@name='anomaly rate']/failure") is None


def test_failure_message_without_baseline_or_links() -> None:
    bare = replace(FAILING, baseline=None, links=(), comparison=">=", value=0.5, threshold=0.9)
    assert failure_message(bare) == "0.5 against threshold >= 0.9 (no baseline)"


def test_error_verdict_adds_an_error_testcase_and_unmeasured_metrics_are_errors() -> None:
    unmeasured = metric(value=None, passed=False, links=())
    report = result(
        unmeasured,
        verdict="error",
        error="The worker stopped: out of memory\nTraceback (most recent call last): …",
    )
    doc = validate(junit_xml(report))
    assert (doc.get("tests"), doc.get("failures"), doc.get("errors")) == ("2", "0", "2")
    error = doc.find("testcase[@name='gate run']/error")
    assert error is not None and error.get("message") == "The worker stopped: out of memory"
    assert "Traceback" in (error.text or "")
    assert doc.find("testcase[@name='anomaly rate']/error") is not None


def test_names_and_links_with_xml_characters_round_trip_escaped() -> None:
    odd = '<b>"rate" & co</b>'
    link = 'https://scope.example.org/traces/?q=<x>&a="1"'
    nasty = metric(odd, value=0.9, passed=False, links=(link,), detail="ctrl\x00char\x1b")
    report = result(nasty, gate='g<&">', candidate="a&b", verdict="fail")
    xml = junit_xml(report)
    doc = validate(xml)
    assert '<b>"rate"' not in xml  # escaped, not raw markup
    case = doc.find("testcase")
    assert case is not None and case.get("name") == odd
    assert case.get("classname") == 'scope-gate.g<&">'
    failure = case.find("failure")
    assert failure is not None and (failure.get("message") or "").endswith(link)
    assert "ctrl\ufffdchar\ufffd" in (failure.text or ""), "control characters are replaced"
    assert doc.get("name") == 'scope-gate: g<&">'


def test_schema_rejects_a_report_of_the_wrong_shape() -> None:
    """The schema is strict enough to catch a wrong element name or a missing attribute, so
    that passing it means something."""
    xml = junit_xml(result(metric(), FAILING, verdict="fail"))
    validate(xml)
    for mutate in (
        lambda d: _rename(d, "testcase/failure", "failed"),
        lambda d: _rename(d, "testcase", "test"),
        lambda d: d.find("testcase").attrib.pop("time"),
        lambda d: d.find("testcase/failure").attrib.pop("type"),
        lambda d: d.set("timestamp", "2025-03-04T10:00:00+00:00"),
        lambda d: d.set("tests", "two"),
        lambda d: d.remove(d.find("properties")),
        lambda d: d.find("testcase").append(etree.Element("skipped")),
    ):
        doc = etree.fromstring(xml.encode("utf-8"))
        mutate(doc)
        assert not SCHEMA.validate(doc), etree.tostring(doc)[:200]


def _rename(doc: etree._Element, path: str, tag: str) -> None:
    element = doc.find(path)
    assert element is not None
    element.tag = tag


# --- JSON ------------------------------------------------------------------------------------


def test_json_has_the_documented_fields_and_utc_times() -> None:
    report = result(
        metric(),
        FAILING,
        verdict="fail",
        started_at=datetime(2025, 3, 4, 12, 0, tzinfo=timezone(timedelta(hours=2))),
        finished_at=datetime(2025, 3, 4, 12, 5, tzinfo=timezone(timedelta(hours=2))),
    )
    data = json.loads(result_json(report))
    assert list(data) == [
        "schema", "gate", "gate_version", "run_url", "verdict", "error", "signoff",
        "candidate", "baseline", "started_at", "finished_at", "duration_s", "metrics",
    ]  # fmt: skip
    assert data["schema"] == RESULT_SCHEMA
    assert data["started_at"] == "2025-03-04T10:00:00Z"
    assert data["finished_at"] == "2025-03-04T10:05:00Z"
    assert data["duration_s"] == 300
    assert data["metrics"][1] == {
        "name": "unsafe-output rate",
        "value": 0.12,
        "threshold": 0.05,
        "comparison": "<=",
        "baseline": 0.03,
        "unit": "share",
        "passed": False,
        "links": [trace(n) for n in range(40, 48)],
        "detail": "5 of 50 completions fired a watched feature",
    }


def test_json_reads_back_to_the_same_result() -> None:
    report = result(metric(), FAILING, metric("x", value=None, baseline=None), verdict="error")
    assert result_from_json(result_json(report)) == report


@pytest.mark.parametrize(
    "text",
    ["[]", "{}", json.dumps({"schema": "other"}), json.dumps({"schema": RESULT_SCHEMA})],
)
def test_json_of_another_shape_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="Not a gate result"):
        result_from_json(text)


def test_results_refuse_impossible_values() -> None:
    with pytest.raises(ValueError, match="comparison"):
        metric(comparison="<")
    with pytest.raises(ValueError, match="not finite"):
        metric(value=float("nan"))
    with pytest.raises(ValueError, match="verdict"):
        result(verdict="passed")
    with pytest.raises(ValueError, match="timezone"):
        result(started_at=datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="before"):
        result(finished_at=STARTED - timedelta(seconds=1))


def test_metric_passes_compares_in_the_declared_direction() -> None:
    assert metric_passes(0.05, "<=", 0.05) and not metric_passes(0.051, "<=", 0.05)
    assert metric_passes(3, ">=", 2) and not metric_passes(1, ">=", 2)
    assert not metric_passes(None, "<=", 1)


# --- Markdown --------------------------------------------------------------------------------


def test_markdown_summary_of_a_failing_gate() -> None:
    text = markdown_summary(result(metric(), FAILING, HEADS, verdict="fail", signoff="pending"))
    lines = text.splitlines()
    assert lines[0] == "## ❌ Scope gate smoke failed"
    assert "| Metric | Value | Threshold | Baseline | Result |" in lines
    assert "| anomaly rate | 0.02 share | ≤ 0.05 share | 0.01 share | ✅ pass |" in lines
    assert "| unsafe\\-output rate" not in text  # hyphens need no escaping
    assert "| unsafe-output rate | 0.12 share | ≤ 0.05 share | 0.03 share | ❌ fail |" in lines
    assert "| unusual attention patterns | 1 heads | ≤ 2 heads | 0 heads | ✅ pass |" in lines
    assert "**Sign-off:** pending" in lines
    assert f"[gate run]({RUN_URL})" in text
    assert "7m 12s" in text
    for n in range(40, 40 + SUMMARY_LINKS):
        assert f"({trace(n)})" in text
    assert trace(40 + SUMMARY_LINKS) not in text
    assert "and 3 more" in text


def test_markdown_summary_of_a_passing_and_an_errored_gate() -> None:
    passed = markdown_summary(result(signoff="approved by rita"))
    assert passed.startswith("## ✅ Scope gate smoke passed")
    assert "**Sign-off:** approved by rita" in passed and "Failing" not in passed
    errored = markdown_summary(result(verdict="error", error="Server unreachable"))
    assert errored.startswith("## ❌") and "**Error:** Server unreachable" in errored


def test_markdown_escapes_names_and_links() -> None:
    nasty = metric(
        "rate | <script>alert(1)</script> & *bold* @team",
        passed=False,
        value=0.9,
        links=('https://scope.example.org/t/1?a=<b>&c="d" (x)', "javascript:alert(1)"),
    )
    text = markdown_summary(result(nasty, gate="g_1", verdict="fail"))
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "\\| &lt;script&gt;alert(1)&lt;/script&gt; &amp; \\*bold\\* \\@team" in text
    assert "Scope gate g\\_1" in text
    assert "(https://scope.example.org/t/1?a=%3Cb%3E&c=%22d%22%20%28x%29)" in text
    assert "](javascript" not in text, "only http(s) URLs become links"
    table = [line for line in text.splitlines() if line.startswith("| rate")]
    assert len(table) == 1 and table[0].replace("\\|", "").count("|") == 6
