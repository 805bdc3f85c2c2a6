"""Importing prompt sets through the service, the page, the API and the shell command."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job, JobState
from scopeweb.retention.models import RetentionProfile
from tests.conftest import client_for
from tests.traces.conftest import jsonl
from traces.engine.tokenizer import count_tokens, load_tokenizer
from traces.models import Prompt, PromptSet
from traces.services.originals import content_digest, prompts_for_analysis
from traces.services.prompt_sets import prompt_set_import, prompt_set_upload

pytestmark = pytest.mark.django_db


def _import(user: User | None, data: bytes, filename: str = "p.jsonl", profile: str = "US") -> Job:
    job = prompt_set_upload(
        actor=Actor.command(user),
        name="set",
        description="",
        profile=RetentionProfile.objects.get(code=profile),
        file=io.BytesIO(data),
        filename=filename,
        size=len(data),
        queue=False,
    )
    prompt_set_import(job.pk)
    return Job.objects.get(pk=job.pk)


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_good_file_is_stored_with_gemma_token_counts(reviewer: User, uploads_dir: Path) -> None:
    prompts = ["Hello world, how are you?", "Tell me a story about a river.", "naïve café 😀"]
    job = _import(reviewer, jsonl(prompts))
    assert job.state == JobState.SUCCEEDED, job.error
    prompt_set = PromptSet.objects.get(pk=job.result["prompt_set_id"])
    stored = list(prompt_set.prompts.order_by("position"))
    assert [p.text for p in stored] == prompts
    assert [p.token_count for p in stored] == count_tokens(prompts)
    assert stored[0].token_count == 8  # <bos> Hello ▁world , ▁how ▁are ▁you ?
    assert prompt_set.token_total == sum(p.token_count for p in stored)
    assert (prompt_set.prompt_count, prompt_set.created_by) == (3, reviewer)
    assert job.progress_done == job.progress_total == 3
    assert _files(uploads_dir) == []  # the upload is not kept once imported


def test_prompts_longer_than_the_capture_limit_are_marked(reviewer: User) -> None:
    RetentionProfile.objects.filter(code="UK").update(capture_limit=16)
    job = _import(reviewer, jsonl(["short one", "word " * 40]), profile="UK")
    prompt_set = PromptSet.objects.get(pk=job.result["prompt_set_id"])
    assert [p.over_capture_limit for p in prompt_set.prompts.all()] == [False, True]
    assert (prompt_set.over_limit_count, prompt_set.capture_limit) == (1, 16)


def test_bad_file_is_refused_whole_and_nothing_is_kept(reviewer: User, uploads_dir: Path) -> None:
    data = jsonl(["fine", "also fine"]) + b'{"prompt": 3}\n' + jsonl(["fine"])
    job = _import(reviewer, data)
    assert job.state == JobState.FAILED
    assert "Nothing from it was stored" in job.error
    assert job.error_details == [
        {"line": 3, "message": '"prompt" must be a string'},
        {"line": 4, "message": "the same prompt as line 1"},
        {"line": 4, "message": 'id "p0" is already used on line 1'},
    ]
    assert not PromptSet.objects.exists() and not Prompt.objects.exists()
    assert _files(uploads_dir) == []


def test_upload_page_queues_an_import_and_shows_its_job(
    reviewer: User, django_capture_on_commit_callbacks: object
) -> None:
    client = client_for(reviewer)
    with django_capture_on_commit_callbacks() as callbacks:  # type: ignore[operator]
        response = client.post(
            reverse("prompt_set_upload"),
            {
                "name": "demo",
                "profile": "UK",
                "file": SimpleUploadedFile("demo.jsonl", jsonl(["a prompt"])),
            },
        )
    job = Job.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse(
        "job_detail", args=[job.pk]
    )
    assert len(callbacks) == 1 and job.state == JobState.QUEUED
    assert job.params["name"] == "demo" and job.created_by == reviewer
    page = client.get(response["Location"]).content.decode()
    assert "Waiting for a worker" in page and 'hx-trigger="every 1s"' in page


def test_oversize_upload_is_refused_at_once(
    reviewer: User, settings: object, uploads_dir: Path
) -> None:
    settings.PROMPT_FILE_MAX_BYTES = 2_000  # type: ignore[attr-defined]
    response = client_for(reviewer).post(
        reverse("prompt_set_upload"),
        {"name": "big", "profile": "US", "file": SimpleUploadedFile("big.txt", b"x" * 2_001)},
    )
    assert response.status_code == 200
    assert "The file is 2,001 bytes; the limit is 2,000 bytes." in response.content.decode()
    assert not Job.objects.exists() and _files(uploads_dir) == []


def test_api_upload_answers_202_with_the_job(
    reviewer: User, django_capture_on_commit_callbacks: object
) -> None:
    with django_capture_on_commit_callbacks():  # type: ignore[operator]
        response = client_for(reviewer).post(
            reverse("api_prompt_sets"),
            {"name": "api", "profile": "FR", "file": SimpleUploadedFile("a.csv", b"prompt\nhi\n")},
        )
    assert response.status_code == 202, response.content
    assert response.json()["state"] == "queued"


def test_api_upload_with_unknown_profile_names_the_field(reviewer: User) -> None:
    response = client_for(reviewer).post(
        reverse("api_prompt_sets"),
        {"name": "api", "profile": "DE", "file": SimpleUploadedFile("a.txt", b"hi\n")},
    )
    assert response.status_code == 400
    assert "profile" in response.json()
    assert not Job.objects.exists()


def test_auditor_cannot_upload(auditor: User) -> None:
    response = client_for(auditor).post(
        reverse("prompt_set_upload"),
        {"name": "x", "profile": "US", "file": SimpleUploadedFile("a.txt", b"hi\n")},
    )
    assert response.status_code == 403
    assert not Job.objects.exists()


def test_import_command_imports_a_file(tmp_path: Path, reviewer: User) -> None:
    path = tmp_path / "prompts.txt"
    path.write_text("first prompt\n\nsecond prompt\n")
    out = io.StringIO()
    call_command(
        "import_prompts", str(path), name="shell set", profile="fr", user="rita", stdout=out
    )
    assert "2 prompts" in out.getvalue()
    prompt_set = PromptSet.objects.get(name="shell set")
    assert prompt_set.profile.code == "FR" and prompt_set.created_by == reviewer


def test_import_command_lists_bad_lines_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "prompts.csv"
    path.write_text('prompt,id\nfine,1\n"broken,2\n')
    with pytest.raises(CommandError) as caught:
        call_command("import_prompts", str(path), name="bad", profile="US")
    assert "line 3" in str(caught.value)
    assert not PromptSet.objects.exists()


def test_import_command_refuses_unknown_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("hi\n")
    with pytest.raises(CommandError, match="Unknown profile 'DE'; choose one of: FR, UK, US"):
        call_command("import_prompts", str(path), name="x", profile="DE")


EMAIL = "jane.doe@example.org"
CHAT = [
    {"role": "system", "content": "Answer in one line."},
    {"role": "user", "content": f"Write to {EMAIL} for me."},
    {"role": "assistant", "content": f"Done: I wrote to {EMAIL}."},
    {"role": "user", "content": "Thanks!"},
]


def _chat_file() -> bytes:
    rows = [{"messages": CHAT, "id": "c1"}, {"prompt": "A plain prompt."}]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def test_a_conversation_is_stored_with_its_messages_and_chat_template_token_count(
    reviewer: User,
) -> None:
    job = _import(reviewer, _chat_file())
    assert job.state == JobState.SUCCEEDED, job.error
    chat, plain = PromptSet.objects.get(pk=job.result["prompt_set_id"]).prompts.order_by("position")
    assert chat.messages == CHAT and plain.messages == []
    assert chat.text.splitlines()[:2] == [
        "system: Answer in one line.",
        f"user: Write to {EMAIL} for me.",
    ]
    # Gemma 3's template: the system message opens the first user turn; BOS once, at the start.
    rendered = (
        "<bos><start_of_turn>user\nAnswer in one line.\n\nWrite to jane.doe@example.org for me."
        "<end_of_turn>\n<start_of_turn>model\nDone: I wrote to jane.doe@example.org.<end_of_turn>\n"
        "<start_of_turn>user\nThanks!<end_of_turn>\n<start_of_turn>model\n"
    )
    expected = load_tokenizer().encode(rendered, add_special_tokens=False).ids
    assert expected[:2] == [2, 105]  # <bos> <start_of_turn>
    assert chat.token_count == len(expected)
    assert plain.token_count == count_tokens(["A plain prompt."])[0]
    assert chat.text_sha256 == content_digest(CHAT)
    assert [content for _, content in prompts_for_analysis(chat.prompt_set)] == [
        CHAT,
        "A plain prompt.",
    ]


@pytest.mark.parametrize("profile", ["UK", "FR"])
def test_a_conversation_is_redacted_message_by_message_and_analysed_as_given(
    reviewer: User, profile: str
) -> None:
    job = _import(reviewer, _chat_file(), profile=profile)
    assert job.state == JobState.SUCCEEDED, job.error
    prompt_set = PromptSet.objects.get(pk=job.result["prompt_set_id"])
    chat = prompt_set.prompts.order_by("position")[0]
    assert [m["content"] for m in chat.messages] == [
        "Answer in one line.",
        "Write to [EMAIL] for me.",
        "Done: I wrote to [EMAIL].",
        "Thanks!",
    ]
    assert [m["role"] for m in chat.messages] == [m["role"] for m in CHAT]
    assert EMAIL not in chat.text and "user: Write to [EMAIL] for me." in chat.text
    assert chat.redactions == {"EMAIL": 2}
    assert chat.text_sha256 == content_digest(CHAT)  # of the original conversation
    us_job = _import(reviewer, _chat_file())
    us_chat = PromptSet.objects.get(pk=us_job.result["prompt_set_id"]).prompts.get(position=0)
    assert chat.token_count == us_chat.token_count  # counted on the original
    # The engine reads the original conversation from the kept upload; the API, the stored one.
    assert prompts_for_analysis(prompt_set)[0] == (chat.pk, CHAT)
    listed = client_for(reviewer).get(reverse("api_prompts", args=[prompt_set.pk]))
    assert listed.json()["results"][0]["messages"] == chat.messages
    assert EMAIL not in listed.content.decode()


def test_a_uk_import_redacts_ids_tags_and_nested_metadata_keeping_keys_and_types(
    reviewer: User,
) -> None:
    row = {
        "id": "ann.lee@nhs.net",
        "prompt": "Summarise the ward round notes.",
        "tags": ["ward", "ann.lee@nhs.net"],
        "patient": {"nhs": 9434765919, "phones": ["07911 123456", "none"], "consent": True},
        "beds": 12,
        "note": None,
    }
    job = _import(reviewer, (json.dumps(row) + "\n").encode(), profile="UK")
    assert job.state == JobState.SUCCEEDED, job.error
    prompt = Prompt.objects.get(prompt_set_id=job.result["prompt_set_id"])
    assert prompt.external_id == "[EMAIL]" and prompt.tags == ["ward", "[EMAIL]"]
    assert prompt.metadata == {
        "patient": {"nhs": "[UK_NHS]", "phones": ["[PHONE]", "none"], "consent": True},
        "beds": 12,
        "note": None,
    }
    assert prompt.redactions == {"EMAIL": 2, "PHONE": 1, "UK_NHS": 1}
    assert job.result["redaction"]["redacted_fields"] == {
        "external_id": 1,
        "tags": 1,
        "metadata": 2,
    }
