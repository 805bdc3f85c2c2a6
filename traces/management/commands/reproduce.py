from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobState
from traces.models import AnalysisRun
from traces.services.runs import run_execute, run_reproduce, run_reproduction_check


class Command(BaseCommand):
    help = (
        "Rerun a run's spec in this process and report whether every trace's sha256 matches. "
        "Exits non-zero when one differs (on the same device kind and dtype they must be equal)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        original = AnalysisRun.objects.select_related("job").filter(pk=options["run"]).first()
        if original is None:
            raise CommandError(f"No run {options['run']}")
        if original.job.state != JobState.SUCCEEDED:
            raise CommandError(f"Run {original.pk} has not succeeded ({original.job.state})")
        rerun = run_reproduce(original, actor=Actor.command(), queue=False)
        run_execute(rerun.job_id)
        rerun.refresh_from_db()
        job = Job.objects.get(pk=rerun.job_id)
        if job.state != JobState.SUCCEEDED:
            raise CommandError(f"The rerun ({rerun.pk}) {job.state}: {job.error}")
        check = run_reproduction_check(rerun)
        assert check is not None
        self.stdout.write(
            f"Run {rerun.pk} reran run {original.pk} on {rerun.device_kind} ({rerun.dtype}): "
            f"{check['identical']} of {check['traces']} traces have identical hashes."
        )
        if not check["same_device"]:
            self.stdout.write(
                f"Note: the original ran on {original.device_kind}; hashes are only promised "
                "equal on the same device kind."
            )
        if check["identical"] != check["traces"]:
            raise CommandError(
                f"{check['traces'] - check['identical']} traces differ (prompts "
                f"{', '.join(map(str, check['differing_prompt_ids']))})"
            )
