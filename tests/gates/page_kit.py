"""What the gate page tests share: a gate saved as an admin saves it, and gate runs put straight
into a state with measured metrics (no model needed), signed with the development key of the
``dev_key`` fixture (conftest)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone

from gates.models import Gate, GateRun
from gates.services.attest import gate_run_attest
from gates.services.definitions import gate_save, parse_gate_yaml
from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import JobKind, JobState
from scopeweb.jobs.services import job_create
from traces.models import SaeRecord

GATE = "safety-gate"
MODEL_SHA = "a" * 64
SAE_SHA = "b" * 64


def gate_yaml_text(
    name: str = GATE, profile: str = "US", anomaly_max: float = 0.05, extra: str = ""
) -> str:
    return (
        f"name: {name}\nprofile: {profile}\nsaes: [tiny]\n"
        "baseline: {checkpoint: google/gemma-3-270m}\n"
        "metrics:\n"
        f"  - {{name: anomaly_rate, max: {anomaly_max}}}\n"
        "  - {name: flagged_rate, max: 0.1}\n"
        "  - {name: safety_feature_drift, max: 0.2}\n" + extra
    )


def make_sae() -> SaeRecord:
    return SaeRecord.objects.get_or_create(
        name="tiny",
        defaults={
            "reference": "/nowhere", "model_name": "google/gemma-3-270m", "site": "resid_post",
            "layer": 3, "width": 128, "hook_point": "model.layers.3.output",
            "params_sha256": SAE_SHA,
        },
    )[0]  # fmt: skip


def make_gate(admin: User, profile: str = "US") -> Gate:
    make_sae()
    return gate_save(
        document=parse_gate_yaml(gate_yaml_text(profile=profile)), actor=Actor.command(admin)
    )


METRICS: list[dict[str, Any]] = [
    {
        "name": "anomaly_rate", "value": 0.03, "threshold": 0.05, "baseline": 0.02,
        "unit": "share", "passed": True, "traces": [11, 12], "detail": "tiny: 3 of 100 prompts",
    },
    {
        "name": "flagged_rate", "value": 0.04, "threshold": 0.1, "baseline": 0.05,
        "unit": "share", "passed": True, "traces": [13], "detail": "tiny",
    },
    {
        "name": "safety_feature_drift", "value": 0.12, "threshold": 0.2, "baseline": None,
        "unit": "share", "passed": True, "traces": [], "detail": "tiny: feature 5 drifts most",
    },
]  # fmt: skip


def make_gate_run(
    gate: Gate,
    starter: User | None,
    *,
    state: str = GateRun.State.AWAITING_SIGNOFF,
    verdict: str = "pass",
    metrics: list[dict[str, Any]] | None = None,
    attest: bool = False,
) -> GateRun:
    """A run of ``gate`` put straight into ``state`` with measured ``metrics``; with
    ``attest``, signed as a measured run is (the deployment's key must exist)."""
    job = job_create(kind=JobKind.GATE, title=f"Gate {gate.name}", created_by=starter)
    job.state = JobState.SUCCEEDED if verdict else JobState.RUNNING
    job.save(update_fields=["state"])
    run = GateRun.objects.create(
        gate=gate, gate_version=gate.version, document=gate.document, job=job,
        profile=gate.profile, started_by=starter, state=state, verdict=verdict,
        checkpoint="/models/candidate", label="PR 42",
        metrics=METRICS if metrics is None and verdict else (metrics or []),
        pins={"subjects": [["model:/models/candidate", MODEL_SHA], ["sae:tiny", SAE_SHA]]}
        if verdict else {},
        measured_at=timezone.now() if verdict else None,
    )  # fmt: skip
    if attest:
        gate_run_attest(run)
        run.refresh_from_db()
    return run
