"""A gate run as its result (``scopeweb_gate.outputs.GateResult``, the one shape the API, the
CLI's JSON, JUnit and Markdown, the page and the PDF all read) and its signed attestation."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from gates.models import GateDecision, GateRun
from gates.signing import deployment_signing_key
from reports.pdf.signing import SigningError
from scopeweb_gate.attestation import PREDICATE_TYPE, AttestationError, sign_envelope, statement
from scopeweb_gate.outputs import GateResult, MetricResult, result_dict

log = logging.getLogger(__name__)


def public_url(path: str) -> str:
    return settings.PUBLIC_URL + path


def run_url(run: GateRun) -> str:
    return public_url(reverse("gate_run", args=[run.pk]))


def trace_url(trace_id: int) -> str:
    return public_url(reverse("trace_detail", args=[trace_id]))


def signoff_text(run: GateRun) -> str:
    """``not required`` (the metrics failed, or the run did not finish), ``pending``,
    ``approved by …`` or ``rejected by …: statement``."""
    if run.verdict != "pass":
        return "not required"
    decisions = list(run.decisions.select_related("reviewer"))
    rejected = [d for d in decisions if d.decision == GateDecision.Decision.REJECT]
    if rejected:
        return f"rejected by {rejected[0].reviewer.get_username()}: {rejected[0].statement}"
    if run.state == GateRun.State.PASSED:
        return "approved by " + ", ".join(d.reviewer.get_username() for d in decisions)
    return "pending"


def candidate_text(run: GateRun) -> str:
    checkpoint = run.checkpoint or "the baseline checkpoint"
    prompts = f"prompt set {run.prompt_set_id}" if run.prompt_set_id else "uploaded prompts"
    return f"{checkpoint} on {prompts}" + (f" ({run.label})" if run.label else "")


def baseline_text(run: GateRun) -> str:
    baseline = run.document.get("baseline", {})
    if "run" in baseline:
        return f"run {baseline['run']}"
    checkpoint = baseline.get("checkpoint") or "the SAEs' model"
    return f"{checkpoint}" + (f", run {run.baseline_run_id}" if run.baseline_run_id else "")


def gate_run_result(run: GateRun) -> GateResult | None:
    """The run's result once its verdict is set; None before."""
    if not run.verdict:
        return None
    metrics = tuple(
        MetricResult(
            name=m["name"],
            value=m["value"],
            threshold=m["threshold"],
            baseline=m["baseline"],
            passed=m["passed"],
            comparison="<=",
            unit=m["unit"],
            links=tuple(trace_url(t) for t in m["traces"]),
            detail=m["detail"],
        )
        for m in run.metrics
    )
    started = run.job.started_at or run.created_at
    return GateResult(
        gate=run.gate.name,
        gate_version=run.gate_version,
        run_url=run_url(run),
        verdict=run.verdict,
        metrics=metrics,
        signoff=signoff_text(run),
        started_at=started,
        finished_at=max(started, run.measured_at or timezone.now()),
        candidate=candidate_text(run),
        baseline=baseline_text(run),
        error=run.error,
    )


def decisions_list(run: GateRun) -> list[dict[str, Any]]:
    return [
        {
            "reviewer": d.reviewer.get_username(),
            "decision": d.decision,
            "statement": d.statement,
            "at": d.decided_at.isoformat(),
        }
        for d in run.decisions.select_related("reviewer")
    ]


def gate_run_attest(run: GateRun) -> None:
    """Sign the run's statement (its result, decisions and pins) with the deployment's key and
    keep the envelope on the run. A key that cannot sign leaves the verdict standing: the run
    records why it has no attestation."""
    result = gate_run_result(run)
    subjects = [(name, digest) for name, digest in run.pins.get("subjects", [])]
    if result is None or not subjects:
        return
    predicate = result_dict(result) | {
        "state": run.state,
        "signoffs_required": run.profile.signoffs_required,
        "four_eyes": run.profile.four_eyes,
        "decisions": decisions_list(run),
    }
    try:
        key, _ = deployment_signing_key()
        run.attestation = sign_envelope(
            statement(subjects=subjects, predicate_type=PREDICATE_TYPE, predicate=predicate), key
        )
        run.attestation_error = ""
    except (SigningError, AttestationError) as exc:
        log.warning("gate run %s: no attestation: %s", run.pk, exc)
        run.attestation, run.attestation_error = None, str(exc)[:500]
    run.save(update_fields=["attestation", "attestation_error"])
