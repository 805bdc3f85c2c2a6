"""Reading gate runs: their status as the API and ``scopeweb-gate`` see it, the sign-off queue."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import reverse

from gates.models import Gate, GateDecision, GateRun
from gates.services.attest import gate_run_result, public_url, run_url, signoff_text
from gates.services.runs import counted_approvals
from scopeweb.jobs.models import Job, JobState
from scopeweb_gate.outputs import result_dict


def effective_state(run: GateRun) -> tuple[str, str]:
    """(state, error): a run whose job failed outside the run's own handling (a worker that
    died past its retries, the stale-job reaper) is in error with the job's words."""
    if not run.finished and run.job.state in (JobState.FAILED, JobState.CANCELLED):
        return GateRun.State.ERROR, run.error or run.job.error or "The gate's job stopped."
    return run.state, run.error


def _progress(run: GateRun) -> dict[str, Any]:
    job = run.job
    note = job.progress_note
    current = (job.params or {}).get("current_job")
    if current and not run.verdict:
        sub = Job.objects.filter(pk=current).first()
        if sub is not None and sub.progress_total:
            note = f"{note}: {sub.progress_done}/{sub.progress_total} prompts"
    return {"done": job.progress_done, "total": job.progress_total, "note": note}


def gate_run_status(run: GateRun) -> dict[str, Any]:
    """The status object of the REST contract (docs/gates-ci.md)."""
    state, error = effective_state(run)
    result = gate_run_result(run)
    approvals = len(counted_approvals(run))
    rejected = run.decisions.filter(decision=GateDecision.Decision.REJECT).exists()
    signoff_state = (
        "not required"
        if run.verdict != "pass"
        else "rejected"
        if rejected
        else "approved"
        if state == GateRun.State.PASSED
        else "pending"
    )
    return {
        "id": run.pk,
        "gate": run.gate.name,
        "gate_version": run.gate_version,
        "url": run_url(run),
        "state": state,
        "finished": state in GateRun.FINISHED,
        "verdict": run.verdict or None,
        "progress": _progress(run),
        "signoff": {
            "required": run.profile.signoffs_required if run.verdict == "pass" else 0,
            "approvals": approvals,
            "state": signoff_state,
            "text": signoff_text(run),
        },
        "error": error,
        "result": result_dict(result) if result is not None else None,
        "attestation_url": (
            public_url(reverse("api_gate_run_attestation", args=[run.pk]))
            if run.attestation
            else None
        ),
    }


def gate_runs(gate: Gate | None = None) -> QuerySet[GateRun]:
    runs = GateRun.objects.select_related("gate", "job", "profile", "started_by")
    return runs.filter(gate=gate) if gate is not None else runs


def signoff_queue() -> QuerySet[GateRun]:
    """Runs whose metrics passed and that wait for reviewers, oldest first."""
    return gate_runs().filter(state=GateRun.State.AWAITING_SIGNOFF).order_by("created_at", "pk")
