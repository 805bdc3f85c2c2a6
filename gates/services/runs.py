"""Gate runs: starting one (a candidate checkpoint, its own prompt file, or both), and the
reviewers' decisions on a run whose metrics passed.

The run itself is computed by ``gates.services.execution`` in an ``analysis`` worker. Decisions
follow the run's retention profile: ``signoffs_required`` distinct approvals, and under
four-eyes the person who started the run (for ``scopeweb-gate``: whoever made its key) cannot
approve it. One rejection ends the run. Each finished run's attestation is signed again with the
decisions in it.
"""

from __future__ import annotations

import io

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from gates.models import Gate, GateDecision, GateRun
from gates.services.attest import gate_run_attest
from gates.services.definitions import GateRefused
from scopeweb.accounts.access import user_may
from scopeweb.accounts.actor import Actor
from scopeweb.audit.services import audit_record
from scopeweb.jobs.models import JobKind
from scopeweb.jobs.services import job_create, job_enqueue
from traces.models import PromptSet
from traces.prompt_files import detect_format, parse_prompt_file, prompt_limits
from traces.services.originals import source_digest
from traces.services.prompt_sets import prompt_set_upload

RUN_TASK = "gates.tasks.gate_run_task"  # by name: services never import their tasks
STATEMENT_MAX = 5000


def gate_run_start(
    *,
    gate: Gate,
    actor: Actor,
    checkpoint: str = "",
    prompts: bytes | None = None,
    prompts_name: str = "",
    label: str = "",
    queue: bool = True,
) -> GateRun:
    """Queue ``gate``'s current version on a candidate: ``checkpoint`` (a folder the workers
    read, or a hub reference; blank: the baseline's), ``prompts`` (a prompt file's bytes, named
    ``prompts_name``; none: the gate's prompt set). The file is checked whole here, so a bad
    line is refused at once, naming it; nothing is stored for a refused run."""
    checkpoint, label = checkpoint.strip(), label.strip()
    if len(checkpoint) > 300:
        raise GateRefused("The checkpoint reference is over 300 characters.", field="checkpoint")
    if len(label) > 200:
        raise GateRefused("The label is over 200 characters.", field="label")
    if prompts is None and gate.prompt_set is None:
        raise GateRefused(
            f"The gate {gate.name} names no prompt set: send a prompt file.", field="prompts"
        )
    known = None
    if prompts is not None:
        detect_format(prompts_name, "")
        parse_prompt_file(prompts, filename=prompts_name, limits=prompt_limits(), file_format="")
        known = _known_prompt_set(gate, prompts)
    with transaction.atomic():
        prompts_job = None
        if prompts is not None and known is None:
            prompts_job = prompt_set_upload(
                actor=actor,
                name=f"{gate.name} candidate prompts" + (f" ({label})" if label else ""),
                description=f"Uploaded with a run of gate {gate.name}",
                profile=gate.profile,
                file=io.BytesIO(prompts),
                filename=prompts_name,
                size=len(prompts),
                queue=False,
            )
        job = job_create(
            kind=JobKind.GATE,
            title=f"Gate {gate.name} v{gate.version}" + (f" on {label}" if label else ""),
            created_by=actor.user,
        )
        run = GateRun.objects.create(
            gate=gate,
            gate_version=gate.version,
            document=gate.document,
            job=job,
            label=label,
            checkpoint=checkpoint,
            prompt_set=None if prompts_job else (known or gate.prompt_set),
            prompts_job=prompts_job,
            profile=gate.profile,
            started_by=actor.user,
            via=actor.via[:40],
        )
        audit_record(
            "gate_run.start",
            actor=actor,
            obj=run,
            after={
                "gate": gate.name,
                "version": gate.version,
                "checkpoint": checkpoint,
                "label": label,
                "prompts": prompts_name if prompts_job else f"set {run.prompt_set_id}",
            },
        )
        if queue:
            job_enqueue(job, RUN_TASK)
    return run


def _known_prompt_set(gate: Gate, prompts: bytes) -> PromptSet | None:
    """The prompt set this gate already ran with these exact bytes, if any. Reusing it keeps
    the comparison like for like: generation seeds follow the prompt set's prompts, so the
    same file imported again would sample other completions than its baseline did."""
    used = GateRun.objects.filter(gate=gate).values("prompt_set")
    return (
        PromptSet.objects.filter(
            source_sha256=source_digest(prompts, gate.profile), profile=gate.profile
        )
        .filter(Q(pk__in=used) | Q(pk=gate.prompt_set_id))
        .order_by("pk")
        .first()
    )


def counted_approvals(run: GateRun) -> list[int]:
    """Ids of the approvers that count toward the profile's requirement: under four-eyes,
    never the run's starter."""
    approvers = list(
        run.decisions.filter(decision=GateDecision.Decision.APPROVE).values_list(
            "reviewer_id", flat=True
        )
    )
    if run.profile.four_eyes:
        approvers = [a for a in approvers if a != run.started_by_id]
    return approvers


def gate_run_decide(*, run: GateRun, actor: Actor, approve: bool, statement: str) -> GateDecision:
    """A reviewer approves or rejects ``run``, which must await sign-off.

    Only holders of ``sign_off_gate`` decide, each once. Under four-eyes the run's starter may
    reject but not approve. A rejection makes the run ``rejected``; the approval that reaches
    ``signoffs_required`` makes it ``passed``. Either way the attestation is signed again with
    the decisions in it."""
    reviewer = actor.person
    statement = statement.strip()
    if not statement:
        raise GateRefused("Say why: a decision needs a statement.", field="statement")
    if len(statement) > STATEMENT_MAX:
        raise GateRefused(f"The statement is over {STATEMENT_MAX} characters.", field="statement")
    with transaction.atomic():
        run = GateRun.objects.select_for_update().select_related("profile", "gate").get(pk=run.pk)
        if run.state != GateRun.State.AWAITING_SIGNOFF:
            raise GateRefused(
                f"Gate run {run.pk} is {run.get_state_display().lower()}: only a run awaiting "
                "sign-off can be approved or rejected.",
                status=409,
            )
        if not user_may(reviewer, "sign_off_gate"):
            raise GateRefused(f"{reviewer.get_username()} may not sign gate runs off.", status=403)
        if run.decisions.filter(reviewer=reviewer).exists():
            raise GateRefused(
                f"{reviewer.get_username()} has already decided on gate run {run.pk}.", status=409
            )
        if approve and run.profile.four_eyes and reviewer.pk == run.started_by_id:
            raise GateRefused(
                f"Profile {run.profile.code} has four-eyes sign-off: {reviewer.get_username()} "
                "started this run and cannot approve it; another reviewer must.",
                status=409,
            )
        decision = GateDecision.objects.create(
            run=run,
            reviewer=reviewer,
            decision=GateDecision.Decision.APPROVE if approve else GateDecision.Decision.REJECT,
            statement=statement,
        )
        counted, required = len(counted_approvals(run)), run.profile.signoffs_required
        audit_record(
            "gate_run.approve" if approve else "gate_run.reject",
            actor=actor,
            obj=run,
            detail={"statement": statement, "counted": counted, "required": required},
        )
        if not approve or counted >= required:
            before = run.state
            run.state = GateRun.State.PASSED if approve else GateRun.State.REJECTED
            run.finished_at = timezone.now()
            run.save(update_fields=["state", "finished_at"])
            audit_record(
                "gate_run.transition",
                actor=actor,
                obj=run,
                before={"state": before},
                after={"state": run.state},
            )
            gate_run_attest(run)
    return decision
