"""A real Celery worker process takes imports off the real broker (file system or Redis)."""

from __future__ import annotations

import subprocess

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from scopeweb.accounts.actor import Actor
from scopeweb.accounts.services import api_token_create
from tests.conftest import wait_for_job
from tests.traces.conftest import jsonl
from traces.models import PromptSet

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_worker_imports_an_api_upload(
    celery_worker_process: subprocess.Popen[bytes], reviewer: User
) -> None:
    from django.test import Client

    _, key = api_token_create(actor=Actor.command(reviewer), name="worker test")
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    prompts = [f"Prompt number {i} asks about rivers and banks." for i in range(300)]
    response = client.post(
        reverse("api_prompt_sets"),
        {
            "name": "via worker",
            "profile": "UK",
            "file": SimpleUploadedFile("w.jsonl", jsonl(prompts)),
        },
    )
    assert response.status_code == 202, response.content
    job = wait_for_job(response.json()["id"])
    assert job.state == "succeeded", job.error
    polled = client.get(reverse("api_job", args=[job.pk])).json()
    assert polled["state"] == "succeeded" and polled["percent"] == 100
    prompt_set = PromptSet.objects.get(pk=job.result["prompt_set_id"])
    assert prompt_set.prompt_count == 300 and prompt_set.created_by == reviewer
    listed = client.get(reverse("api_prompts", args=[prompt_set.pk])).json()
    assert listed["count"] == 300
    assert all(row["token_count"] > 5 for row in listed["results"])


def test_worker_refuses_a_bad_file_by_line(
    celery_worker_process: subprocess.Popen[bytes], reviewer: User
) -> None:
    from django.test import Client

    client = Client()
    client.force_login(reviewer)
    data = jsonl([f"p{i}" for i in range(50)]) + b"{oops}\n"
    response = client.post(
        reverse("api_prompt_sets"),
        {"name": "bad", "profile": "US", "file": SimpleUploadedFile("b.jsonl", data)},
    )
    job = wait_for_job(response.json()["id"])
    assert job.state == "failed"
    assert job.error_details == [
        {
            "line": 51,
            "message": "not valid JSON: Expecting property name enclosed in double quotes "
            "(column 2)",
        }
    ]
    assert not PromptSet.objects.exists()
