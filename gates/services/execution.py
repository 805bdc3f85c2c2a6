"""Computing a gate run in an ``analysis`` worker (``gates.tasks.gate_run_task``).

In one task, in this order, each step shown as the gate job's progress:

1. the candidate's own prompt file, when it brought one, is imported (the import's checks);
2. the baseline: the gate's baseline run, or the baseline checkpoint on the same prompts. The
   first finished run of that checkpoint with the same SAE, prompt set, generation and top-k
   is reused, so a gate computes its baseline once per prompt set (a prompt file sent again
   with the same bytes runs on the set it made the first time: ``gate_run_start``);
3. the candidate: the candidate checkpoint on the prompts, every SAE in one pass, generating;
4. the metrics, each against its threshold; ``unusual_attention`` runs both checkpoints again
   on the stored token sequences with eager attention at the gate's layers only.

The runs are ordinary analysis runs (their own jobs, bundles, traces and retention), executed
in this process rather than queued, so a gate never waits on a queue it is itself holding.
A metric that cannot be measured is recorded as not measured, which fails it.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Sequence
from typing import Any, TypedDict

from django.db import transaction
from django.utils import timezone

from gates.metrics import EVIDENCE, MetricError, measure
from gates.models import GateRun
from gates.services.attest import gate_run_attest
from gates.services.definitions import metric_thresholds
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import Job, JobState
from scopeweb.jobs.services import JobError, job_progress, job_running, job_succeed
from traces.models import AnalysisRun, PromptSet, SaeRecord, Trace
from traces.selectors.run_sequences import run_token_sequences
from traces.services.prompt_sets import prompt_set_import
from traces.services.runs import run_execute, run_pass, run_start

log = logging.getLogger(__name__)
STEPS = 4
ATTENTION_SEQUENCES = 200  # sequences per side for the attention statistics
UNITS = {"unusual_attention": "heads"}


class RunSpec(TypedDict):
    generate_tokens: int
    seed: int
    top_k: int


def gate_run_execute(job_id: uuid.UUID | str) -> GateRun | None:
    """Execute (or resume) the gate run behind ``job_id``; see the module docstring."""
    job = Job.objects.get(pk=job_id)
    if job.finished:
        return None
    run = GateRun.objects.select_related("gate", "profile", "job").get(job=job)
    with job_running(job_id):
        GateRun.objects.filter(pk=run.pk, state=GateRun.State.QUEUED).update(
            state=GateRun.State.RUNNING
        )
        try:
            _execute(run)
        except JobError as exc:
            _finish(run, verdict="error", error=exc.message)
            raise
    return run


def _step(run: GateRun, step: int, note: str, current: Job | None = None) -> None:
    log.info("gate run %s: step %d/%d, %s", run.pk, step, STEPS, note)
    job_progress(run.job_id, done=step, total=STEPS, note=note)
    Job.objects.filter(pk=run.job_id).update(
        params={"current_job": str(current.pk) if current else ""}
    )


def _execute(run: GateRun) -> None:
    document = run.document
    saes = _saes(document["saes"])
    prompt_set = _prompts(run)
    generation = document["generation"]
    spec: RunSpec = {
        "generate_tokens": int(generation["new_tokens"]),
        "seed": int(generation["seed"]),
        "top_k": int(document["top_k"]),
    }
    baseline_checkpoint = document.get("baseline", {}).get("checkpoint", "")
    actor = Actor.worker(run.started_by)
    baselines = _baselines(run, actor, saes, prompt_set, baseline_checkpoint, spec)
    _step(run, 2, "candidate run")
    candidate = run_start(
        actor=actor,
        prompt_set=prompt_set,
        saes=saes,
        checkpoint=run.checkpoint or baseline_checkpoint,
        queue=False,
        **spec,
    )
    GateRun.objects.filter(pk=run.pk).update(candidate_run=candidate)
    run.candidate_run = candidate
    _step(run, 2, "candidate run", candidate.job)
    candidates = _executed(candidate, "candidate")
    _step(run, 3, "measuring the metrics")
    results = []
    for name, threshold in metric_thresholds(document).items():
        started = time.monotonic()
        results.append(_metric(name, threshold, candidates, baselines, document, run))
        log.info("gate run %s: %s in %.1f s", run.pk, name, time.monotonic() - started)
    verdict = "pass" if all(r["passed"] for r in results) else "fail"
    _finish(run, verdict=verdict, metrics=results, pins=_pins(candidates, baselines))


def _saes(names: Sequence[str]) -> list[SaeRecord]:
    found = {sae.name: sae for sae in SaeRecord.objects.filter(name__in=names)}
    missing = [name for name in names if name not in found]
    if missing:
        raise JobError(f"The gate's SAEs are no longer in the registry: {', '.join(missing)}.")
    return [found[name] for name in names]


def _prompts(run: GateRun) -> PromptSet:
    if run.prompt_set is not None:
        return run.prompt_set
    assert run.prompts_job is not None  # gate_run_start sets one of the two
    _step(run, 0, "importing the candidate's prompts", run.prompts_job)
    prompt_set = prompt_set_import(run.prompts_job.pk)
    if prompt_set is None:
        refused = Job.objects.get(pk=run.prompts_job.pk)
        raise JobError(f"The candidate's prompt file was refused: {refused.error}")
    GateRun.objects.filter(pk=run.pk).update(prompt_set=prompt_set)
    run.prompt_set = prompt_set
    return prompt_set


def _baselines(
    run: GateRun,
    actor: Actor,
    saes: list[SaeRecord],
    prompt_set: PromptSet,
    checkpoint: str,
    spec: RunSpec,
) -> dict[int, AnalysisRun]:
    """{SAE id: its baseline run}."""
    fixed = run.document.get("baseline", {}).get("run")
    if fixed is not None:
        baseline = AnalysisRun.objects.filter(pk=fixed, job__state=JobState.SUCCEEDED).first()
        if baseline is None:
            raise JobError(f"The gate's baseline run {fixed} is gone or did not finish.")
        GateRun.objects.filter(pk=run.pk).update(baseline_run=baseline)
        return {baseline.sae_id: baseline}
    _step(run, 1, "baseline run")
    reused = {
        sae.pk: found
        for sae in saes
        if (found := _reusable(sae, prompt_set, checkpoint, spec)) is not None
    }
    if len(reused) == len(saes):
        first = reused[saes[0].pk]
        GateRun.objects.filter(pk=run.pk).update(baseline_run=first)
        _step(run, 1, f"baseline: run {first.pk} of the same prompts, reused")
        return reused
    leader = run_start(
        actor=actor, prompt_set=prompt_set, saes=saes, checkpoint=checkpoint, queue=False, **spec
    )
    GateRun.objects.filter(pk=run.pk).update(baseline_run=leader)
    _step(run, 1, "baseline run", leader.job)
    return {member.sae_id: member for member in _executed(leader, "baseline")}


def _reusable(
    sae: SaeRecord, prompt_set: PromptSet, checkpoint: str, spec: RunSpec
) -> AnalysisRun | None:
    return (
        AnalysisRun.objects.filter(
            sae=sae,
            checkpoint=checkpoint,
            prompt_set=prompt_set,  # the same set: generation seeds follow its prompts
            job__state=JobState.SUCCEEDED,
            **spec,
        )
        .filter(traces__isnull=False)
        .distinct()
        .order_by("created_at", "pk")  # the first: a gate's baseline stays the same run
        .first()
    )


def _executed(leader: AnalysisRun, what: str) -> list[AnalysisRun]:
    run_execute(leader.job_id)
    runs = run_pass(leader)
    for member in runs:
        job = Job.objects.get(pk=member.job_id)
        if job.state != JobState.SUCCEEDED:
            raise JobError(f"The {what} run {member.pk} did not finish: {job.error or job.state}")
    return runs


def _metric(
    name: str,
    threshold: float,
    candidates: list[AnalysisRun],
    baselines: dict[int, AnalysisRun],
    document: dict[str, Any],
    run: GateRun,
) -> dict[str, Any]:
    """One metric's result: for SAE metrics the worst SAE's, naming it."""
    found: dict[str, Any] = {"name": name, "threshold": threshold, "unit": UNITS.get(name, "share")}
    try:
        if name == "unusual_attention":
            found |= _attention(candidates[0], baselines, document, run)
        else:
            worst: dict[str, Any] | None = None
            for candidate in candidates:
                if candidate.sae_id not in baselines:
                    continue
                measured = measure(name, candidate, baselines[candidate.sae_id])
                value = measured.value
                if (
                    worst is None
                    or value is None
                    or (worst["value"] is not None and value > worst["value"])
                ):
                    detail = f"{candidate.sae.name}" + (
                        f": {measured.detail}" if measured.detail else ""
                    )
                    worst = {
                        "value": value,
                        "baseline": measured.baseline,
                        "traces": list(measured.traces),
                        "detail": detail,
                    }
                if value is None:
                    break
            if worst is None:
                raise MetricError("No SAE of the candidate has a baseline run.")
            found |= worst
    except MetricError as exc:
        found |= {"value": None, "baseline": None, "traces": [], "detail": str(exc)}
    value = found["value"]
    found["passed"] = value is not None and value <= threshold
    return found


def _attention(
    candidate: AnalysisRun,
    baselines: dict[int, AnalysisRun],
    document: dict[str, Any],
    run: GateRun,
) -> dict[str, Any]:
    from traces.engine import runtime
    from traces.engine.attention_stats import attention_stats, heads_outside_band

    baseline = baselines.get(candidate.sae_id) or next(iter(baselines.values()))
    layers = [int(layer) for layer in document["attention_layers"]]
    sides = {}
    for side, source in (("baseline", baseline), ("candidate", candidate)):
        stored = run_token_sequences(source, limit=ATTENTION_SEQUENCES)
        sequences = [s for s in stored if len(s) > 1]
        if not sequences:
            raise MetricError(f"The {side} run {source.pk} holds no readable sequence.")
        dtype = runtime.default_dtype() if source.dtype == AnalysisRun.DType.AUTO else source.dtype
        try:
            loaded = runtime.model_for(source.model_reference, dtype)
            sides[side] = attention_stats(loaded, sequences, layers)
        except ValueError as exc:
            raise MetricError(f"Attention statistics of the {side}: {exc}") from None
    outside = heads_outside_band(sides["baseline"], sides["candidate"])
    listed = "; ".join(
        f"L{h.layer} H{h.head} {h.stat} {h.value:.3g} outside {h.low:.3g}–{h.high:.3g}"
        for h in outside.heads[:EVIDENCE]
    )
    return {
        "value": float(outside.count),
        "baseline": 0.0,
        "traces": [],
        "detail": f"layers {layers}: " + (listed or "every head inside the baseline's band"),
    }


def _digest(values: Sequence[Any]) -> str:
    return hashlib.sha256("\n".join(str(v) for v in values).encode()).hexdigest()


def _pins(candidates: list[AnalysisRun], baselines: dict[int, AnalysisRun]) -> dict[str, Any]:
    """The attestation's subjects: the candidate model, the SAEs, the prompts and the baseline
    (the sha256 of its traces' array hashes in prompt order, which pins what was compared)."""
    first = candidates[0]
    subjects = [
        (f"model:{first.model_reference}", first.pins["model_weights"]),
        (f"prompt-set:{first.prompt_set_id}", first.prompt_set.source_sha256),
    ]
    subjects += [(f"sae:{c.sae.name}", c.pins["sae_params"]) for c in candidates]
    for _, baseline in sorted(baselines.items()):
        hashes = Trace.objects.filter(run=baseline).order_by("prompt__position")
        subjects.append(
            (
                f"baseline:run {baseline.pk}",
                _digest(list(hashes.values_list("arrays_sha256", flat=True))),
            )
        )
    return {"subjects": subjects}


def _finish(
    run: GateRun,
    *,
    verdict: str,
    metrics: list[dict[str, Any]] | None = None,
    pins: dict[str, Any] | None = None,
    error: str = "",
) -> None:
    """Record the verdict: ``fail`` and ``error`` finish the run; ``pass`` awaits sign-off."""
    now = timezone.now()
    with transaction.atomic():
        run = GateRun.objects.select_for_update().select_related("profile", "gate").get(pk=run.pk)
        if run.verdict:
            return  # already recorded (a retried task)
        run.verdict, run.error = verdict, error
        run.metrics = metrics or []
        run.pins = pins or {}
        run.measured_at = now
        states = {"pass": GateRun.State.AWAITING_SIGNOFF, "fail": GateRun.State.FAILED}
        run.state = states.get(verdict, GateRun.State.ERROR)
        if run.state != GateRun.State.AWAITING_SIGNOFF:
            run.finished_at = now
        run.save()
        audit_record(
            "gate_run.measure",
            actor=Actor.worker(run.started_by),
            obj=run,
            after={"verdict": verdict, "state": run.state},
            detail={"metrics": run.metrics, "error": error},
        )
        gate_run_attest(run)
        if verdict != "error":
            job_succeed(run.job_id, result={"verdict": verdict}, note=f"verdict: {verdict}")
