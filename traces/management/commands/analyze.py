from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobState
from scopeweb.refusals import Refused
from traces.models import AnalysisRun, PromptSet, SaeRecord
from traces.services.run_plans import run_preview
from traces.services.runs import run_execute, run_pass, run_start
from traces.services.saes import sae_register_reference, sae_sweep


class Command(BaseCommand):
    help = (
        "Analyse a prompt set with an SAE. PROMPT_SET is an id or a name; --sae is a registered "
        "SAE's name, a local folder in the Gemma Scope 2 layout or a hub reference. Without "
        "--wait the run is queued for an analysis worker; with --wait it runs here and prints "
        "its summary."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prompt_set")
        parser.add_argument(
            "--sae",
            action="append",
            default=[],
            help="repeat for several SAEs of one model: one forward pass feeds them all",
        )
        parser.add_argument(
            "--preset",
            choices=["sweep"],
            help="sweep: the registered SAEs of --site at the model's Gemma Scope 2 sweep layers "
            "(5, 9, 12 and 15 for Gemma 3 270M)",
        )
        parser.add_argument("--site", default="resid_post", help="the preset's site")
        parser.add_argument("--model", default="google/gemma-3-270m", help="the preset's model")
        parser.add_argument("--top-k", type=int, default=32)
        parser.add_argument(
            "--dtype",
            choices=["auto", "float32", "bfloat16"],
            default="auto",
            help="auto: bfloat16 on CUDA or CPUs with native bfloat16, float32 elsewhere",
        )
        parser.add_argument("--generate", type=int, default=0, metavar="N")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--capture-limit", type=int)
        parser.add_argument("--wait", action="store_true")
        parser.add_argument(
            "--checkpoint", default="", help="the checkpoint to run (default: the SAEs' model)"
        )
        parser.add_argument(
            "--plan",
            action="store_true",
            help="print the cost plan (FLOPs per token, peak memory, time, storage) and stop",
        )

    def _prompt_set(self, value: str) -> PromptSet:
        found = (
            PromptSet.objects.filter(pk=int(value)).first()
            if value.isdigit()
            else PromptSet.objects.filter(name=value).order_by("-created_at").first()
        )
        if found is None:
            raise CommandError(f"No prompt set {value!r} (give its id or its name)")
        return found

    def _sae(self, value: str) -> SaeRecord:
        record = SaeRecord.objects.filter(name=value).first()
        if record is not None:
            return record
        record = SaeRecord.objects.filter(reference=value).first()
        if record is not None:
            return record
        try:
            return sae_register_reference(value)
        except (ValueError, OSError) as exc:
            names = ", ".join(SaeRecord.objects.values_list("name", flat=True)) or "none"
            raise CommandError(
                f"{value!r} is not a registered SAE (registered: {names}), and as a folder or "
                f"hub reference: {exc}"
            ) from None

    def _saes(self, options: dict[str, Any]) -> list[SaeRecord]:
        saes = [self._sae(value) for value in options["sae"]]
        if options["preset"] == "sweep":
            try:
                saes += sae_sweep(options["model"], options["site"])
            except Refused as exc:
                raise CommandError(exc.message) from None
        if not saes:
            raise CommandError("Name at least one --sae, or --preset sweep")
        return saes

    def handle(self, *args: Any, **options: Any) -> None:
        if not 1 <= options["top_k"] <= 256:
            raise CommandError("--top-k must be between 1 and 256")
        try:
            preview = run_preview(
                prompt_set=self._prompt_set(options["prompt_set"]),
                saes=self._saes(options),
                preset="",
                dtype=options["dtype"],
                top_k=options["top_k"],
                capture_limit=options["capture_limit"],
                generate_tokens=options["generate"],
                checkpoint=options["checkpoint"],
            )
        except Refused as exc:
            raise CommandError(exc.message) from None
        for warning in preview.warnings:
            self.stderr.write(f"Warning: {warning}")
        if options["plan"]:
            self.stdout.write("\n".join(preview.lines or [f"No plan: {preview.problem}"]))
            if preview.refusal:
                raise CommandError(preview.refusal)
            return
        if preview.refusal:
            raise CommandError(preview.refusal)
        try:
            run = self._start(options, preview.saes)
        except Refused as exc:
            raise CommandError(exc.message) from None
        if not options["wait"]:
            runs = ", ".join(f"{r.pk} ({r.sae.name})" for r in run_pass(run))
            self.stdout.write(f"Queued runs {runs} in one pass (job {run.job_id}).")
            return
        run_execute(run.job_id)
        for member in run_pass(run):
            self._report(member)

    def _report(self, run: AnalysisRun) -> None:
        job = Job.objects.get(pk=run.job_id)
        if job.state != JobState.SUCCEEDED:
            raise CommandError(f"Run {run.pk} {job.state}: {job.error or job.progress_note}")
        summary = {k: v for k, v in run.summary.items() if k != "top_features"}
        self.stdout.write(f"Run {run.pk} ({run.sae.name}) finished on {run.device_kind}.")
        self.stdout.write(json.dumps(summary, indent=2, default=str))

    def _start(self, options: dict[str, Any], saes: list[SaeRecord]) -> AnalysisRun:
        return run_start(
            actor=Actor.command(),
            prompt_set=self._prompt_set(options["prompt_set"]),
            saes=saes,
            checkpoint=options["checkpoint"],
            top_k=options["top_k"],
            capture_limit=options["capture_limit"],
            dtype=options["dtype"],
            generate_tokens=options["generate"],
            seed=options["seed"],
            queue=not options["wait"],
        )
