from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError, CommandParser

from scopeweb.jobs.models import JobState
from traces.bundle import SCHEMA_PATH
from traces.models import AnalysisRun


class Command(BaseCommand):
    help = (
        "Write a run's trace bundle (manifest.json, its JSON Schema and the chunks' Parquet files) "
        "to a folder, checking every chunk against the sha256 in the manifest."
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
        with default_storage.open(f"{run.artifact_prefix}/manifest.json", "rb") as handle:
            manifest_bytes = handle.read()
        if hashlib.sha256(manifest_bytes).hexdigest() != run.manifest_sha256:
            raise CommandError("The stored manifest does not match the sha256 the run recorded")
        manifest = json.loads(manifest_bytes)
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            for entry in (f for chunk in manifest["chunks"] for f in chunk["files"].values()):
                with default_storage.open(f"{run.artifact_prefix}/{entry['file']}", "rb") as src:
                    data = src.read()
                if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                    raise CommandError(f"{entry['file']} does not match its sha256 in the manifest")
                (staging / entry["file"]).write_bytes(data)
            (staging / "manifest.json").write_bytes(manifest_bytes)
            shutil.copy(SCHEMA_PATH, staging / "manifest.schema.json")
            if out.exists():
                out.rmdir()
            staging.rename(out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.stdout.write(
            f"Wrote run {run.pk}: {len(manifest['chunks'])} chunks, {len(manifest['traces'])} "
            f"traces, to {out}"
        )
