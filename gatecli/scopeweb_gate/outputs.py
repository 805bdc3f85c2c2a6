"""What ``scopeweb-gate`` writes about a gate run: JSON, JUnit XML and a Markdown summary.

One ``GateResult`` feeds all three, so that the CI job's verdict, its test report and the pull
request's comment cannot disagree. This module is the one owner of these formats: it writes
them, and ``result_from_json`` reads the JSON back.

The JSON (``result_json``) is an object with these fields, stable within ``RESULT_SCHEMA``:

=================  ====================================================================
``schema``         ``RESULT_SCHEMA``; a new URI when a field changes meaning or goes away
``gate``           the gate's name; ``gate_version`` its version (an integer)
``run_url``        the gate run's page in Scope Web
``verdict``        ``"pass"``, ``"fail"`` or ``"error"`` (the run did not finish)
``error``          why the run did not finish; ``""`` unless the verdict is ``"error"``
``signoff``        ``"not required"``, ``"pending"``, ``"approved by …"`` or
                   ``"rejected by …: statement"``
``candidate``      what was gated (a checkpoint, hub reference or prompt set); ``baseline``
                   what it was compared with
``started_at``     ISO 8601 in UTC (``…Z``), as is ``finished_at``; ``duration_s`` seconds
``metrics``        a list of objects: ``name``, ``value`` (null when not measured),
                   ``threshold``, ``comparison`` (``"<="``: the value must be at most the
                   threshold, ``">="``: at least), ``baseline`` (the baseline run's value or
                   null), ``unit``, ``passed``, ``links`` (the contributing traces' URLs),
                   ``detail``
=================  ====================================================================
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlsplit

RESULT_SCHEMA = "https://scopeweb.example/gate-result/v1"
VERDICTS = ("pass", "fail", "error")
COMPARISONS = ("<=", ">=")
SUMMARY_LINKS = 5  # trace links per failing metric in the Markdown summary
ERROR_TESTCASE = "gate run"


@dataclass(frozen=True)
class MetricResult:
    """One gate metric: its value against its threshold, with the baseline's value for
    context and the traces that contributed, so a reader can check the number."""

    name: str
    value: float | None  # None: not measured (the run stopped, or no trace qualified)
    threshold: float
    baseline: float | None
    passed: bool
    comparison: str  # "<=": value must be <= threshold (rates); ">=": at least the threshold
    unit: str
    links: tuple[str, ...]  # URLs of the traces that contributed
    detail: str = ""

    def __post_init__(self) -> None:
        if self.comparison not in COMPARISONS:
            raise ValueError(f"comparison must be one of {COMPARISONS}, not {self.comparison!r}")
        for field, number in (("value", self.value), ("threshold", self.threshold)):
            if number is not None and not math.isfinite(number):
                raise ValueError(f"The {field} of metric {self.name!r} is not finite: {number}")
        if self.baseline is not None and not math.isfinite(self.baseline):
            raise ValueError(f"The baseline of metric {self.name!r} is not finite")


@dataclass(frozen=True)
class GateResult:
    """A finished gate run as the CI job reports it."""

    gate: str
    gate_version: int
    run_url: str
    verdict: str  # "pass" | "fail" | "error"
    metrics: tuple[MetricResult, ...]
    signoff: str  # "not required" | "pending" | "approved by …" | "rejected by …: statement"
    started_at: datetime
    finished_at: datetime
    candidate: str
    baseline: str
    error: str = ""  # why the run did not finish (verdict "error")

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, not {self.verdict!r}")
        if self.started_at.tzinfo is None or self.finished_at.tzinfo is None:
            raise ValueError("started_at and finished_at must be timezone-aware")
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is before started_at")

    @property
    def duration_s(self) -> float:
        return (self.finished_at - self.started_at).total_seconds()


def metric_passes(value: float | None, comparison: str, threshold: float) -> bool:
    """Whether ``value`` meets ``threshold`` under ``comparison``; an unmeasured value never
    does (a gate that could not measure must not pass)."""
    if value is None:
        return False
    return value <= threshold if comparison == "<=" else value >= threshold


# --- JSON ------------------------------------------------------------------------------------


def result_dict(result: GateResult) -> dict[str, Any]:
    """The JSON object described in this module's docstring (also a gate attestation's
    predicate body)."""
    return {
        "schema": RESULT_SCHEMA,
        "gate": result.gate,
        "gate_version": result.gate_version,
        "run_url": result.run_url,
        "verdict": result.verdict,
        "error": result.error,
        "signoff": result.signoff,
        "candidate": result.candidate,
        "baseline": result.baseline,
        "started_at": _iso(result.started_at),
        "finished_at": _iso(result.finished_at),
        "duration_s": result.duration_s,
        "metrics": [
            {
                "name": m.name,
                "value": m.value,
                "threshold": m.threshold,
                "comparison": m.comparison,
                "baseline": m.baseline,
                "unit": m.unit,
                "passed": m.passed,
                "links": list(m.links),
                "detail": m.detail,
            }
            for m in result.metrics
        ],
    }


def result_json(result: GateResult) -> str:
    """``result_dict`` as indented JSON, fields in a fixed order (diffs between runs stay
    readable)."""
    return json.dumps(result_dict(result), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def result_from_json(text: str | bytes) -> GateResult:
    """A ``GateResult`` read back from ``result_json``. Raises ``ValueError`` on another
    schema or a missing or mistyped field."""
    try:
        data = json.loads(text)
        if data.get("schema") != RESULT_SCHEMA:
            raise ValueError(f"expected schema {RESULT_SCHEMA!r}, got {data.get('schema')!r}")
        metrics = tuple(
            MetricResult(
                name=str(m["name"]),
                value=None if m["value"] is None else float(m["value"]),
                threshold=float(m["threshold"]),
                baseline=None if m["baseline"] is None else float(m["baseline"]),
                passed=bool(m["passed"]),
                comparison=str(m["comparison"]),
                unit=str(m["unit"]),
                links=tuple(str(link) for link in m["links"]),
                detail=str(m.get("detail", "")),
            )
            for m in data["metrics"]
        )
        return GateResult(
            gate=str(data["gate"]),
            gate_version=int(data["gate_version"]),
            run_url=str(data["run_url"]),
            verdict=str(data["verdict"]),
            metrics=metrics,
            signoff=str(data["signoff"]),
            started_at=datetime.fromisoformat(data["started_at"]),
            finished_at=datetime.fromisoformat(data["finished_at"]),
            candidate=str(data["candidate"]),
            baseline=str(data["baseline"]),
            error=str(data.get("error", "")),
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"Not a gate result: {exc!r}") from None
    except ValueError as exc:
        raise ValueError(f"Not a gate result: {exc}") from None


# --- JUnit XML -------------------------------------------------------------------------------


def junit_xml(result: GateResult) -> str:
    """A JUnit report in the Ant/Jenkins format (the one GitHub, GitLab and Jenkins read):
    one testsuite, one testcase per metric, and for an ``error`` verdict one more testcase
    holding the error. A failing metric's ``failure`` message gives its value against the
    threshold and the first contributing trace; the element's text lists every trace.

    Testcases carry time 0: the metrics are computed together from one run, whose duration
    is the suite's ``time``.
    """
    classname = f"scope-gate.{result.gate}"
    suite = ET.Element("testsuite")
    properties = ET.SubElement(suite, "properties")
    for name, value in (
        ("gate", result.gate),
        ("gate_version", str(result.gate_version)),
        ("verdict", result.verdict),
        ("signoff", result.signoff),
        ("candidate", result.candidate),
        ("baseline", result.baseline),
        ("run_url", result.run_url),
    ):
        ET.SubElement(properties, "property", name=name, value=_xml(value))
    failures = errors = 0
    for metric in result.metrics:
        case = ET.SubElement(
            suite, "testcase", classname=_xml(classname), name=_xml(metric.name), time="0.000"
        )
        if metric.passed:
            continue
        if metric.value is None:
            errors += 1
            problem = ET.SubElement(case, "error", type="not measured")
            problem.set("message", _xml(f"{metric.name} was not measured"))
        else:
            failures += 1
            problem = ET.SubElement(case, "failure", type="threshold")
            problem.set("message", _xml(failure_message(metric)))
        problem.text = _xml(_failure_text(metric, result.run_url))
    if result.verdict == "error":
        errors += 1
        case = ET.SubElement(
            suite, "testcase", classname=_xml(classname), name=ERROR_TESTCASE, time="0.000"
        )
        reason = result.error.strip() or "The gate run did not finish."
        problem = ET.SubElement(case, "error", type="error")
        problem.set("message", _xml(reason.splitlines()[0]))
        problem.text = _xml(f"{reason}\nGate run: {result.run_url}")
    ET.SubElement(suite, "system-out").text = _xml(_plain_summary(result))
    ET.SubElement(suite, "system-err")
    # Attributes after the children are counted; ElementTree keeps insertion order.
    suite.attrib = {
        "name": _xml(f"scope-gate: {result.gate}"),
        "tests": str(len(suite.findall("testcase"))),
        "failures": str(failures),
        "errors": str(errors),
        "time": f"{result.duration_s:.3f}",
        # The Ant schema allows no zone in the timestamp: it is UTC, without microseconds.
        "timestamp": result.started_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "hostname": urlsplit(result.run_url).hostname or "localhost",
    }
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def failure_message(metric: MetricResult) -> str:
    """``<value> against threshold <comparison> <threshold> (baseline <b>): <first link>``."""
    baseline = "no baseline" if metric.baseline is None else f"baseline {_num(metric.baseline)}"
    message = (
        f"{_num(metric.value)} against threshold {metric.comparison} "
        f"{_num(metric.threshold)} ({baseline})"
    )
    return f"{message}: {metric.links[0]}" if metric.links else message


def _failure_text(metric: MetricResult, run_url: str) -> str:
    unit = f" {metric.unit}" if metric.unit else ""
    value = "not measured" if metric.value is None else f"{_num(metric.value)}{unit}"
    baseline = "none" if metric.baseline is None else f"{_num(metric.baseline)}{unit}"
    lines = [
        f"{metric.name}: {value}, threshold {metric.comparison} {_num(metric.threshold)}{unit}, "
        f"baseline {baseline}"
    ]
    if metric.detail:
        lines.append(metric.detail)
    lines.append(f"Traces that contributed ({len(metric.links)}):")
    lines.extend(f"  {link}" for link in metric.links)
    lines.append(f"Gate run: {run_url}")
    return "\n".join(lines)


def _plain_summary(result: GateResult) -> str:
    lines = [
        f"Gate {result.gate} (version {result.gate_version}): {result.verdict}",
        f"Candidate: {result.candidate}",
        f"Baseline: {result.baseline}",
        f"Sign-off: {result.signoff}",
        f"Gate run: {result.run_url}",
    ]
    return "\n".join(lines)


# Characters XML 1.0 cannot hold at all, even escaped (C0 controls but tab, LF, CR).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """``text`` with what XML cannot hold replaced (ElementTree escapes ``<&"`` itself)."""
    return _NOT_XML.sub("\ufffd", text)


# --- Markdown --------------------------------------------------------------------------------

_HEADINGS = {"pass": ("✅", "passed"), "fail": ("❌", "failed"), "error": ("❌", "did not finish")}
# Backslash-escaped: what can start emphasis, code or a link mid-line, the table's pipe, and
# @ (no mentions). Nothing escaped ever starts a line, so ``#``, ``-`` and ``+`` are left.
_MD_ESCAPE = re.compile(r"([\\`*_\[\]|~@])")
# Kept as they are in a link target; everything else (space, quotes, <>, parentheses, pipe,
# backslash, backtick) is percent-encoded.
_URL_SAFE = "/:?#@!$&'*+,;=%~-._"


def markdown_summary(result: GateResult) -> str:
    """A pull-request comment: the verdict, the metric table, the sign-off, and for each
    failing metric up to ``SUMMARY_LINKS`` trace links; names are escaped, so nothing in
    them renders as Markdown or HTML."""
    icon, outcome = _HEADINGS[result.verdict]
    lines = [
        f"## {icon} Scope gate {_md(result.gate)} {outcome}",
        "",
        f"Candidate {_md(result.candidate)} against baseline {_md(result.baseline)} · "
        f"gate version {result.gate_version} · {_duration(result.duration_s)} · "
        f"{_md_link('gate run', result.run_url)}",
        "",
    ]
    if result.verdict == "error":  # its first line: a traceback belongs in the JUnit report
        reason = (result.error.strip() or "The gate run did not finish.").splitlines()[0]
        lines += [f"**Error:** {_md(reason)}", ""]
    symbols = {"<=": "≤", ">=": "≥"}
    if result.metrics:
        lines += ["| Metric | Value | Threshold | Baseline | Result |", "|---|---:|---:|---:|---|"]
        for m in result.metrics:
            unit = f" {_md(m.unit)}" if m.unit else ""
            value = "—" if m.value is None else f"{_num(m.value)}{unit}"
            baseline = "—" if m.baseline is None else f"{_num(m.baseline)}{unit}"
            mark = "✅ pass" if m.passed else ("⚠️ not measured" if m.value is None else "❌ fail")
            threshold = f"{symbols[m.comparison]} {_num(m.threshold)}{unit}"
            lines.append(f"| {_md(m.name)} | {value} | {threshold} | {baseline} | {mark} |")
        lines.append("")
    lines += [f"**Sign-off:** {_md(result.signoff)}", ""]
    failing = [m for m in result.metrics if not m.passed]
    if failing:
        lines += ["**Did not pass**", ""]
        for m in failing:
            unit = f" {_md(m.unit)}" if m.unit else ""
            if m.value is None:
                what = "not measured."
            else:
                what = (
                    f"{_num(m.value)}{unit} against {symbols[m.comparison]} "
                    f"{_num(m.threshold)}{unit}."
                )
            detail = f" {_md(m.detail.rstrip('.'))}." if m.detail.strip(". ") else ""
            shown = [_md_link(f"trace {n}", url) for n, url in enumerate(m.links, 1)]
            more = len(m.links) - SUMMARY_LINKS
            traces = ", ".join(shown[:SUMMARY_LINKS]) + (f" and {more} more" if more > 0 else "")
            lines.append(f"- **{_md(m.name)}**: {what}{detail} Traces: {traces or 'none linked'}")
        lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    """``text`` as literal Markdown on one line: punctuation escaped, ``<>&`` as entities."""
    text = " ".join(text.split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_ESCAPE.sub(r"\\\1", text)


def _md_link(label: str, url: str) -> str:
    """A Markdown link to an http(s) ``url``, percent-encoded so that no character in it ends
    the link; any other URL is shown as text, not linked."""
    if urlsplit(url).scheme not in ("http", "https"):
        return _md(url)
    return f"[{_md(label)}]({quote(url, safe=_URL_SAFE)})"


def _num(value: float | None) -> str:
    """Six significant digits: close values stay distinguishable, rates stay short."""
    return "none" if value is None else f"{value:.6g}"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m {rest:02d}s" if minutes else f"{rest}s"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
