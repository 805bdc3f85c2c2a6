"""The cost plan of a prompt set's run before it starts, for the run form and ``analyze``.
Torch-free: it reads the prompts' stored token counts, the SAEs' and the model's shapes
(``traces.run_plan``), the recorded matmul peaks and this machine's free memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from scopeweb.refusals import Refused
from traces.checkpoints import checkpoint_mismatch
from traces.models import PromptSet, SaeRecord
from traces.run_plan import (
    PlanError,
    RunPlan,
    latest_recorded_peak,
    memory_available,
    model_shape_for,
    plan_run,
    sae_shape_for,
)
from traces.services.saes import sae_folder, sae_sweep


def pass_check(saes: list[SaeRecord]) -> None:
    """One pass reads one model: its SAEs must name the same one, each once."""
    if not saes:
        raise Refused("Choose at least one SAE.", field="saes", status=400)
    names = [record.name for record in saes]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise Refused(
            f"Each SAE may be chosen once; twice: {', '.join(twice)}.", field="saes", status=400
        )
    models = sorted({record.model_name for record in saes})
    if len(models) > 1:
        listed = "; ".join(f"{r.name}: {r.model_name or 'unknown'}" for r in saes)
        raise Refused(
            f"The SAEs of one run must be of one model; these are of {len(models)} ({listed}).",
            field="saes",
            status=400,
        )


def run_plan_for(
    *,
    prompt_set: PromptSet,
    saes: Sequence[SaeRecord],
    dtype: str,
    top_k: int,
    capture_limit: int | None,
    generate_tokens: int,
    checkpoint: str = "",
    memory: int | None = None,
) -> RunPlan:
    """The plan of analysing ``prompt_set`` with ``saes`` in one pass, with ``run_start``'s
    options. Each prompt counts as the engine captures it: its stored token count plus
    ``generate_tokens``, at most the capture limit (the run's, else the profile's), since a
    completion only fills the room the limit leaves. ``dtype`` "auto" plans bfloat16 when a
    worker has recorded a bfloat16 matmul peak, float32 otherwise; the plan's lines say which.
    ``memory`` is the bytes free where the run will run (a worker passes its own); by default
    this machine's. SAEs a run would refuse raise ``Refused`` (``pass_check``); ``PlanError``
    (a ValueError) when a shape cannot be read, the
    model's config among them (the default model's is cached by a worker's first load)."""
    pass_check(list(saes))
    model_name = saes[0].model_name
    limit = capture_limit or prompt_set.profile.capture_limit
    counts = prompt_set.prompts.order_by("position").values_list("token_count", flat=True)
    token_counts = [min(count + generate_tokens, limit) for count in counts]
    try:
        model = model_shape_for(checkpoint or model_name)
    except PlanError as exc:
        shown = checkpoint or model_name or "the default model"
        raise PlanError(f"Cannot plan a run of {shown}: {exc}") from None
    shapes = [sae_shape_for(sae_folder(record)) for record in saes]
    notes: list[str] = []
    if dtype == "auto":
        if latest_recorded_peak("bfloat16") is not None:
            dtype, why = "bfloat16", "a worker has measured a bfloat16 matmul peak"
        else:
            dtype, why = "float32", "no worker has measured a bfloat16 matmul peak yet"
        notes.append(f"dtype auto: planned in {dtype}, since {why}.")
    peak = latest_recorded_peak(dtype)
    if peak is not None:
        notes.append(f"Matmul peak measured on {peak[0]}.")
    result = plan_run(
        model,
        shapes,
        token_counts=token_counts,
        dtype=dtype,
        top_k=top_k,
        peak_gflops=peak[1] if peak else None,
        memory_available=memory if memory is not None else memory_available(),
    )
    return replace(result, notes=tuple(notes))


def run_sae_choice(saes: Sequence[SaeRecord], preset: str = "") -> list[SaeRecord]:
    """The SAEs a run form or command chose: those named, then a preset's (``sweep``: the
    model's Gemma Scope 2 sweep layers, of the named SAEs' model or Gemma 3 270M)."""
    chosen = list(saes)
    if preset == "sweep":
        model = chosen[0].model_name if chosen else "google/gemma-3-270m"
        chosen += [record for record in sae_sweep(model) if record not in chosen]
    elif preset:
        raise Refused(f"Unknown preset {preset!r} (known: sweep).", field="preset", status=400)
    return chosen


def run_warnings(saes: Sequence[SaeRecord], checkpoint: str = "") -> list[str]:
    """What a reviewer should know before trusting the run: pt SAEs on an it checkpoint (or the
    reverse) do not transfer."""
    found = (checkpoint_mismatch(r.model_name, checkpoint or r.model_name) for r in saes)
    return sorted({warning for warning in found if warning})


@dataclass(frozen=True)
class RunPreview:
    """What the run form shows before a run starts: the plan, why it would be refused, and the
    warnings a reviewer should read (pt SAEs on an it checkpoint)."""

    saes: list[SaeRecord]
    lines: list[str]
    refusal: str | None
    warnings: list[str]
    problem: str = ""  # why there is no plan (a shape the planner cannot read yet)


def run_preview(
    *,
    prompt_set: PromptSet,
    saes: Sequence[SaeRecord],
    preset: str,
    dtype: str,
    top_k: int,
    capture_limit: int | None,
    generate_tokens: int,
    checkpoint: str = "",
) -> RunPreview:
    """Raises ``Refused`` for a choice ``run_start`` would refuse (an unknown preset, SAEs of
    two models)."""
    chosen = run_sae_choice(saes, preset)
    warnings = run_warnings(chosen, checkpoint)
    try:
        plan = run_plan_for(
            prompt_set=prompt_set,
            saes=chosen,
            dtype=dtype,
            top_k=top_k,
            capture_limit=capture_limit,
            generate_tokens=generate_tokens,
            checkpoint=checkpoint,
        )
    except PlanError as exc:
        return RunPreview(chosen, [], None, warnings, problem=str(exc))
    return RunPreview(chosen, plan.lines(), plan.refusal(), warnings)
