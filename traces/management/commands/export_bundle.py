from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.jobs.models import JobState
from scopeweb.storage import bytes_sha256, read_bytes
from traces.bundle.manifest import (
    MANIFEST_NAME,
    SCHEMA_NAME,
    SCHEMA_PATH,
    ManifestError,
    manifest_load,
)
from traces.models import AnalysisRun


class Command(BaseCommand):
    help = (
        "Write a run's trace bundle (its manifest, the manifest's JSON Schema and the chunks' "
        "Parquet files) to a folder, checking every chunk against the sha256 in the manifest."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("run", type=int)
        parser.add_argument("--out", type=Path, required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        run = AnalysisRun.objects.select_related("job").filter(pk=options["run"]).first()
        if run is None:
            raise CommandError(f"No run {options['run']}")
        if run.job.state != JobState.SUCCEEDED:
            raise CommandError(f"Run {run.pk} has no bundle yet ({run.job.state})")
        out = Path(options["out"])
        if out.exists() and any(out.iterdir()):
            raise CommandError(f"{out} exists and is not empty")
        try:
            stored = manifest_load(run)
        except ManifestError as exc:
            raise CommandError(str(exc)) from exc
        manifest = stored.content
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for entry in (f for chunk in manifest["chunks"] for f in chunk["files"].values()):
                data = read_bytes(f"{run.artifact_prefix}/{entry['file']}")
                if bytes_sha256(data) != entry["sha256"]:
                    raise CommandError(f"{entry['file']} does not match its sha256 in the manifest")
                (staging / entry["file"]).write_bytes(data)
            (staging / MANIFEST_NAME).write_bytes(stored.data)
            shutil.copy(SCHEMA_PATH, staging / SCHEMA_NAME)
            if out.exists():
                out.rmdir()
            staging.rename(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.stdout.write(
            f"Wrote run {run.pk}: {len(manifest['chunks'])} chunks, {len(manifest['traces'])} "
            f"traces, to {out}"
        )
