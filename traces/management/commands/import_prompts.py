from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobState
from scopeweb.retention.models import RetentionProfile
from traces.prompt_files import FORMATS, PromptFileError
from traces.services.prompt_sets import prompt_set_import, prompt_set_upload


class Command(BaseCommand):
    help = (
        "Import a prompt set (JSONL, CSV or plain text) in this process, with the same checks "
        "as the web upload. Exits non-zero, listing every problem by line, on a bad file."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)
        parser.add_argument("--name", required=True)
        parser.add_argument("--profile", required=True, help="Retention profile code: US, UK, FR")
        parser.add_argument("--description", default="")
        parser.add_argument("--format", choices=FORMATS, default="")
        parser.add_argument("--user", help="User name to record as the uploader")

    def handle(self, *args: Any, **options: Any) -> None:
        path: Path = options["file"]
        if not path.is_file():
            raise CommandError(f"{path}: no such file")
        profile = RetentionProfile.objects.filter(code=options["profile"].upper()).first()
        if profile is None:
            codes = ", ".join(RetentionProfile.objects.values_list("code", flat=True))
            raise CommandError(f"Unknown profile {options['profile']!r}; choose one of: {codes}")
        user = None
        if options["user"]:
            user = User.objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user named {options['user']!r}")
        try:
            with path.open("rb") as handle:
                job = prompt_set_upload(
                    actor=Actor.command(user),
                    name=options["name"],
                    description=options["description"],
                    profile=profile,
                    file=handle,
                    filename=path.name,
                    size=path.stat().st_size,
                    file_format=options["format"],
                    queue=False,
                )
        except PromptFileError as exc:
            raise CommandError(self._problems(exc.problems)) from None
        prompt_set = prompt_set_import(job.pk)
        job = Job.objects.get(pk=job.pk)
        if job.state != JobState.SUCCEEDED or prompt_set is None:
            lines = [job.error] + [
                f"  line {item['line']}: {item['message']}"
                if item["line"]
                else f"  {item['message']}"
                for item in job.error_details
            ]
            raise CommandError("\n".join(lines))
        self.stdout.write(
            f"Imported prompt set {prompt_set.pk} {prompt_set.name!r}: "
            f"{prompt_set.prompt_count} prompts, {prompt_set.token_total} tokens "
            f"({prompt_set.over_limit_count} over the {profile.code} capture limit of "
            f"{prompt_set.capture_limit})."
        )

    @staticmethod
    def _problems(problems: list[Any]) -> str:
        return "The file was refused; nothing was stored:\n" + "\n".join(
            f"  {problem}" for problem in problems
        )
