"""Fixtures of the governance tests: a small world of prompt sets, runs with stored bundle files,
cases and exports, and an S3-compatible server (moto's) for the storage tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from governance.models import Export, ExportKind, ExportState
from reports.models import AuditCase, CaseState, Evidence
from scopeweb.jobs.models import JobState
from scopeweb.retention.models import RetentionProfile
from tests.factories import make_prompt_set, make_run, make_sae, make_trace
from traces.models import AnalysisRun, PromptSet, SaeRecord, Trace

BUNDLE_FILES = ("chunk-00000.tokens.parquet", "chunk-00000.features.parquet", "manifest.json")


def profile(code: str = "US") -> RetentionProfile:
    return RetentionProfile.objects.get(code=code)


def stored_prompt_set(expires_at: datetime | None, code: str = "US", **fields: Any) -> PromptSet:
    prompt_set = make_prompt_set(profile=profile(code), expires_at=expires_at, **fields)
    assert prompt_set.import_job is not None
    path = default_storage.save(
        f"uploads/{prompt_set.import_job.pk}/prompts.jsonl", ContentFile(b'{"text": "hi"}\n' * 8)
    )
    prompt_set.import_job.params = {"upload_path": path, "profile_id": prompt_set.profile_id}
    prompt_set.import_job.save(update_fields=["params"])
    return prompt_set


def stored_run(
    prompt_set: PromptSet,
    expires_at: datetime | None,
    *,
    sae: SaeRecord | None = None,
    state: str = JobState.SUCCEEDED,
) -> AnalysisRun:
    """A run with two traces, their index rows, and bundle files in default storage."""
    run = make_run(
        sae=sae or make_sae(),
        prompt_set=prompt_set,
        expires_at=expires_at,
        manifest_sha256="ab" * 32,
        pins={"model": "cd" * 32, "sae": "ef" * 32},
    )
    run.job.state = state
    run.job.save(update_fields=["state"])
    make_trace(run, 0, {1: (2.0, 3, 0), 7: (1.0, 1, 2)})
    make_trace(run, 1, {1: (1.5, 2, 1)})
    for name in BUNDLE_FILES:
        default_storage.save(f"{run.artifact_prefix}/{name}", ContentFile(b"x" * 100))
    return run


def cite(
    run: AnalysisRun, state: str = CaseState.OPEN, hold_until: datetime | None = None
) -> AuditCase:
    case = AuditCase.objects.create(
        title=f"case citing run {run.pk}", profile=run.profile, state=state, hold_until=hold_until
    )
    trace = Trace.objects.filter(run=run).first()
    assert trace is not None
    Evidence.objects.create(case=case, trace=trace, token_start=0, token_end=2, pins={"x": "1"})
    return case


def stored_export(
    run: AnalysisRun, expires_at: datetime | None, state: str = ExportState.DOWNLOADED
) -> Export:
    name = default_storage.save(f"exports/run-{run.pk}.zip", ContentFile(b"z" * 50))
    return Export.objects.create(
        kind=ExportKind.RUN,
        target_id=run.pk,
        profile=run.profile,
        state=state,
        artifact=name,
        sha256="12" * 32,
        size_bytes=50,
        expires_at=expires_at,
    )


def files_under(prefix: str) -> list[str]:
    from scopeweb.storage import storage_files

    return storage_files(prefix)


def days(n: float) -> datetime:
    return timezone.now() + timedelta(days=n)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3-compatible server (moto's server mode) on a free local port."""
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_storage(s3_endpoint: str, settings: Any) -> Iterator[str]:
    """Default storage pointed at a fresh bucket on the moto server; yields the bucket."""
    import uuid

    import boto3

    bucket = f"scopeweb-{uuid.uuid4().hex[:12]}"
    options = {
        "bucket_name": bucket,
        "endpoint_url": s3_endpoint,
        "region_name": "us-east-1",
        "access_key": "testing",
        "secret_key": "testing",
        "default_acl": None,
        "file_overwrite": False,
        "addressing_style": "path",
    }
    boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket=bucket)
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    yield bucket


def s3_keys(endpoint: str, bucket: str) -> list[str]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    listed = client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))
