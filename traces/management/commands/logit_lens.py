from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobState
from traces.models import SaeRecord
from traces.services.feature_stats import feature_stats_execute, feature_stats_start


class Command(BaseCommand):
    help = (
        "Compute an SAE's logit lens (the tokens each feature promotes and suppresses through "
        "the unembedding) and decoder neighbours in this process, and store them where the "
        "feature pages read them. Recorded as a job, like the button on a feature page."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("sae", help="Registry name of the SAE")

    def handle(self, *args: Any, **options: Any) -> None:
        sae = SaeRecord.objects.filter(name=options["sae"]).first()
        if sae is None:
            raise CommandError(f"Not in the registry: {options['sae']}")
        job = feature_stats_start(sae, actor=Actor.command(), queue=False)
        if job.state == JobState.RUNNING:
            raise CommandError(f"A worker is computing it now (job {job.pk}).")
        started = time.monotonic()
        folder = feature_stats_execute(job.pk)
        job = Job.objects.get(pk=job.pk)
        if folder is None:
            raise CommandError(f"Failed: {job.error}")
        self.stdout.write(
            f"{sae.name}: {job.result.get('features')} features in "
            f"{time.monotonic() - started:.1f} s (computing {job.result.get('seconds')} s), "
            f"stored in {folder}/"
        )
