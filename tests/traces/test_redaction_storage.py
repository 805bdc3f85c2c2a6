"""Redaction before storage (UK ``required``, FR ``strong``): prompts (every field: text, id, tags,
metadata) and token strings are stored redacted, while the engine analyses the original text, so
activations are those of the original; US stores prompts as given and flags credentials."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from django.contrib.auth.models import User
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.audit.models import AuditEvent
from scopeweb.jobs.models import Job, JobState
from scopeweb.redaction.digests import original_digest
from scopeweb.retention.models import RetentionProfile
from tests.conftest import client_for
from tests.traces.conftest import import_prompt_set, jsonl
from traces.bundle.chunks import decode_rows, read_chunk_files
from traces.bundle.format import trace_hash
from traces.bundle.manifest import SCHEMA_PATH
from traces.models import AnalysisRun, PromptSet, SaeRecord, Trace, TraceFeature
from traces.services.originals import (
    OriginalRefused,
    content_digest,
    original_path,
    prompt_set_original_supply,
    prompts_for_analysis,
)
from traces.services.prompt_sets import prompt_set_import, prompt_set_upload
from traces.services.runs import run_execute, run_start
from traces.services.saes import sae_register_shipped, shipped_sae_folders

pytestmark = pytest.mark.django_db
EMAIL = "jane.doe@example.org"
NHS = "943 476 5919"  # a valid NHS number (its check digit holds)
PROMPTS = [
    f"Please email me at {EMAIL} about the results.",
    f"My NHS number is {NHS}, please update my record.",
    "The quick brown fox jumps over the lazy dog.",
]
needs_sae = pytest.mark.skipif(not shipped_sae_folders(), reason="no SAE shipped yet")


def _sha(text: str) -> str:
    """What ``Prompt.text_sha256`` holds: the original's keyed digest, not its plain sha256."""
    digest = content_digest(text)
    assert digest != hashlib.sha256(text.encode()).hexdigest()
    return digest


def _forget_original(prompt_set: PromptSet) -> None:
    """What the retention purge does to the original of a redacted prompt set."""
    job = prompt_set.import_job
    assert job is not None
    default_storage.delete(original_path(prompt_set))
    job.params = job.params | {"original_purged_at": timezone.now().isoformat()}
    job.save(update_fields=["params"])


def _run(prompt_set: PromptSet, sae: SaeRecord, **kwargs: object) -> AnalysisRun:
    run = run_start(actor=Actor.command(), prompt_set=prompt_set, sae=sae, queue=False, **kwargs)  # type: ignore[arg-type]
    run_execute(run.job_id)
    run.refresh_from_db()
    return run


@pytest.fixture
def uk_set(reviewer: User) -> PromptSet:
    return import_prompt_set(reviewer, PROMPTS, profile="UK", name="uk set")


def test_a_uk_import_stores_redacted_text_with_the_originals_sha256(
    uk_set: PromptSet, reviewer: User
) -> None:
    prompts = list(uk_set.prompts.order_by("position"))
    assert prompts[0].text == "Please email me at [EMAIL] about the results."
    assert prompts[1].text == "My NHS number is [UK_NHS], please update my record."
    assert prompts[2].text == PROMPTS[2]
    assert [p.text_sha256 for p in prompts] == [_sha(t) for t in PROMPTS]
    assert [p.redactions for p in prompts] == [{"EMAIL": 1}, {"UK_NHS": 1}, {}]
    us_set = import_prompt_set(reviewer, PROMPTS, profile="US", name="us set")
    us_counts = list(us_set.prompts.order_by("position").values_list("token_count", flat=True))
    assert [p.token_count for p in prompts] == us_counts  # counted on the original
    # The original upload is kept for the engine (until the retention purge).
    assert default_storage.exists(original_path(uk_set))
    assert [t for _, t in prompts_for_analysis(uk_set)] == PROMPTS
    page = client_for(reviewer).get(reverse("prompt_set_detail", args=[uk_set.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert EMAIL not in html and NHS not in html
    assert "Prompts redacted" in html and "2 of 3" in html
    assert "EMAIL 1" in html and "UK_NHS 1" in html
    assert "Supply the original file again" not in html  # still kept


def test_a_us_import_stores_the_text_as_given(reviewer: User) -> None:
    us_set = import_prompt_set(reviewer, PROMPTS, profile="US", name="us set")
    prompts = list(us_set.prompts.order_by("position"))
    assert [p.text for p in prompts] == PROMPTS
    assert [p.text_sha256 for p in prompts] == [_sha(t) for t in PROMPTS]
    assert all(p.redactions == {} for p in prompts)
    assert us_set.source_sha256 == _sha_bytes(jsonl(PROMPTS))  # sha256sum of the file gives it
    assert us_set.import_job is not None
    assert not default_storage.exists(original_path(us_set))  # not needed: the text is stored
    html = client_for(reviewer).get(reverse("prompt_set_detail", args=[us_set.pk])).content
    assert EMAIL in html.decode() and b"Prompts redacted" not in html


def test_the_original_supplied_again_must_match_every_prompt(
    uk_set: PromptSet, reviewer: User
) -> None:
    _forget_original(uk_set)
    client = client_for(reviewer)
    page = client.get(reverse("prompt_set_detail", args=[uk_set.pk])).content.decode()
    assert "Supply the original file again" in page
    url = reverse("prompt_set_original", args=[uk_set.pk])

    changed = [PROMPTS[0], PROMPTS[1].replace("5919", "5918"), PROMPTS[2]]
    answer = client.post(
        url, {"file": _upload(jsonl(changed), "prompts.jsonl")}, follow=True
    ).content.decode()
    assert "The original was refused" in answer and "at line 2" in answer
    assert not AuditEvent.objects.filter(action="prompt_set.original_supplied").exists()
    with pytest.raises(OriginalRefused, match="holds 2 prompts; the prompt set holds 3"):
        data = jsonl(PROMPTS[:2])
        prompt_set_original_supply(
            uk_set,
            file=io.BytesIO(data),
            filename="p.jsonl",
            size=len(data),
            actor=Actor.command(reviewer),
        )

    answer = client.post(
        url, {"file": _upload(jsonl(PROMPTS), "again.jsonl")}, follow=True
    ).content.decode()
    assert "matches all 3 prompts" in answer
    event = AuditEvent.objects.get(action="prompt_set.original_supplied")
    assert event.detail["prompts"] == 3
    # The file's keyed digest, as the prompt set's own: its plain sha256 would confirm a guess.
    assert event.detail["sha256"] == original_digest(jsonl(PROMPTS)) == uk_set.source_sha256
    assert event.detail["sha256"] != _sha_bytes(jsonl(PROMPTS))
    uk_set.refresh_from_db()
    assert [t for _, t in prompts_for_analysis(uk_set)] == PROMPTS


def _upload(data: bytes, name: str) -> io.BytesIO:
    handle = io.BytesIO(data)
    handle.name = name
    return handle


def _sha_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@needs_sae
def test_a_run_without_the_original_fails_and_says_what_to_do(uk_set: PromptSet) -> None:
    _forget_original(uk_set)
    sae = sae_register_shipped()[0]
    run = _run(uk_set, sae)
    job = Job.objects.get(pk=run.job_id)
    assert job.state == JobState.FAILED
    assert "no longer stored" in job.error and "Supply the original file again" in job.error
    assert not Trace.objects.filter(run=run).exists()

    # The SAE quality measure reads what a run would analyse, so it refuses the same way
    # (before loading the model) instead of measuring on "[EMAIL]".
    with pytest.raises(CommandError, match="no longer stored"):
        call_command("sae_quality", "--prompt-set", str(uk_set.pk))


@needs_sae
@pytest.mark.model
def test_sae_quality_on_a_uk_set_measures_the_original_text(
    uk_set: PromptSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from traces.engine import quality
    from traces.engine.tokenizer import load_tokenizer

    record = sae_register_shipped()[0]
    measured: list[list[int]] = []
    real = quality.sae_quality

    def recording(loaded: object, sae: object, sequences: list[list[int]]) -> object:
        measured.extend(sequences)
        return real(loaded, sae, sequences)  # type: ignore[arg-type]

    monkeypatch.setattr(quality, "sae_quality", recording)
    call_command("sae_quality", record.name, "--prompt-set", str(uk_set.pk), stdout=io.StringIO())
    texts = load_tokenizer().decode_batch(measured)
    assert any(EMAIL in text for text in texts) and any(NHS in text for text in texts)
    record.refresh_from_db()
    assert record.quality and "fvu" in json.dumps(record.quality).lower()


@needs_sae
@pytest.mark.model
def test_a_uk_run_analyses_the_original_but_stores_redacted_tokens(
    uk_set: PromptSet, reviewer: User
) -> None:
    sae = sae_register_shipped()[0]
    us_set = import_prompt_set(reviewer, PROMPTS, profile="US", name="us set")
    uk_run, us_run = _run(uk_set, sae), _run(us_set, sae)
    assert Job.objects.get(pk=uk_run.job_id).state == JobState.SUCCEEDED
    uk_traces = list(Trace.objects.filter(run=uk_run).order_by("prompt__position"))
    us_traces = list(Trace.objects.filter(run=us_run).order_by("prompt__position"))
    uk_arrays = decode_rows(read_chunk_files(uk_run.artifact_prefix, 0), top_k=32)
    us_arrays = decode_rows(read_chunk_files(us_run.artifact_prefix, 0), top_k=32)
    # Activations and metrics are those of the original text, token by token.
    for name in ("top_idx", "top_val", "l0", "recon_err", "resid_norm"):
        assert np.array_equal(uk_arrays[name], us_arrays[name]), name
    for uk, us in zip(uk_traces, us_traces, strict=True):
        assert (uk.tokens, uk.l0, uk.fvu) == (us.tokens, us.l0, us.fvu)
        assert _index(uk) == _index(us)
        assert trace_hash(uk_arrays, uk.row, uk.row + uk.tokens) == uk.arrays_sha256
    # Only the tokens of the email and the NHS number are stored redacted, as the pad id.
    marked = uk_arrays["redacted"] > 0
    assert marked.any() and not us_arrays["redacted"].any()
    assert (uk_arrays["token_ids"][marked] == 0).all()
    assert np.array_equal(uk_arrays["token_ids"][~marked], us_arrays["token_ids"][~marked])
    third = uk_traces[2]
    assert not marked[third.row : third.row + third.tokens].any()
    assert uk_traces[2].arrays_sha256 == us_traces[2].arrays_sha256  # nothing redacted there
    assert uk_traces[0].arrays_sha256 != us_traces[0].arrays_sha256
    manifest = json.loads(default_storage.open(f"runs/{uk_run.pk}/manifest.json").read())
    jsonschema.validate(manifest, json.loads(Path(SCHEMA_PATH).read_text()))
    assert manifest["format"] == "scopeweb-trace-bundle/4"
    assert manifest["redaction"]["before_storage"] is True
    assert "EMAIL" in manifest["redaction"]["codes"].values()

    client = client_for(reviewer)
    for trace, category in ((uk_traces[0], "[EMAIL]"), (uk_traces[1], "[UK_NHS]")):
        html = client.get(reverse("trace_detail", args=[trace.pk])).content.decode()
        assert category in html and 'class="tok redacted' in html
        assert "redacted before storage" in html
        for secret in ("jane", "example.org", "5919", "476"):
            # a number of its own, not the digits of a figure on the page ("error 0.0476")
            assert not re.search(rf"(?<![\d.]){secret}(?!\d)", html), secret
        api = client.get(reverse("api_trace_tokens", args=[trace.pk])).json()
        texts = [token["text"] for token in api["tokens"]]
        assert category in texts
        assert not any(s in "".join(texts) for s in ("jane", "example", "5919"))
        redacted = [t for t in api["tokens"] if t["redacted"]]
        assert redacted and all(t["id"] == 0 for t in redacted)
        # Positions are unchanged: the strip stays aligned with the activations.
        assert len(api["tokens"]) == trace.tokens
    us_html = client.get(reverse("trace_detail", args=[us_traces[0].pk])).content.decode()
    assert "example" in us_html and "[EMAIL]" not in us_html


def _index(trace: Trace) -> list[tuple[int, float, int, int]]:
    return list(
        TraceFeature.objects.filter(trace=trace)
        .order_by("feature")
        .values_list("feature", "max_activation", "count", "first_position")
    )


# --- every field of a prompt, credentials, people and places -------------------------------------
CARD = "4111 1111 1111 1111"
IBAN = "GB82 WEST 1234 5698 7654 32"
PHONE = "+44 20 7946 0958"
IP = "192.168.1.20"
API_KEY = "sk-proj-A1b2C3d4E5f6G7h8I9j0T3BlbkFJK1l2M3n4O5p6Q7r8S9t0"
PASSWORD = "hunter2xyz"
OTHER_EMAIL = "other.person@example.co.uk"
SECRETS = [EMAIL, OTHER_EMAIL, NHS, CARD, IBAN, PHONE, IP, API_KEY, PASSWORD]
CSV_ROWS = [
    ["id", "prompt", "tags", "email", "phone", "account", "note"],
    [
        EMAIL,
        f"Summarise the complaint from {EMAIL} about card {CARD}.",
        f"complaint;from {IP}",
        EMAIL,
        PHONE,
        IBAN,
        f"password: {PASSWORD}",
    ],
    [
        "P-2",
        f"My NHS number is {NHS}; call the API with {API_KEY} please.",
        f"nhs;{NHS}",
        OTHER_EMAIL,
        "020 7946 0958",
        "5500-0055-5555-5559",
        f"login from {IP} with key {API_KEY}",
    ],
    ["P-3", "The quick brown fox jumps over the lazy dog.", "plain", "", "", "", "nothing"],
]


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue().encode()


def _import_file(user: User, data: bytes, filename: str, profile: str) -> PromptSet:
    job = prompt_set_upload(
        actor=Actor.command(user),
        name=f"{profile} {filename}",
        description="",
        profile=RetentionProfile.objects.get(code=profile),
        file=io.BytesIO(data),
        filename=filename,
        size=len(data),
        queue=False,
    )
    prompt_set = prompt_set_import(job.pk)
    assert prompt_set is not None, Job.objects.get(pk=job.pk).error
    return prompt_set


def _leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


@pytest.fixture
def uk_csv_set(reviewer: User) -> PromptSet:
    return _import_file(reviewer, _csv(CSV_ROWS), "people.csv", "UK")


def test_a_uk_import_redacts_every_field_of_every_prompt(
    uk_csv_set: PromptSet, reviewer: User
) -> None:
    prompts = list(uk_csv_set.prompts.order_by("position"))
    stored = json.dumps([[p.external_id, p.text, p.messages, p.tags, p.metadata] for p in prompts])
    assert _leaks(stored) == []
    first, second, third = prompts
    assert first.external_id == "[EMAIL]"
    assert first.text == "Summarise the complaint from [EMAIL] about card [CREDIT_CARD]."
    assert first.tags == ["complaint", "from [IP_ADDRESS]"]
    assert first.metadata == {
        "email": "[EMAIL]",
        "phone": "[PHONE]",
        "account": "[IBAN]",
        "note": "password: [CREDENTIAL]",
    }
    assert first.redactions == {
        "CREDENTIAL": 1,
        "CREDIT_CARD": 1,
        "EMAIL": 3,
        "IBAN": 1,
        "IP_ADDRESS": 1,
        "PHONE": 1,
    }
    assert second.text == "My NHS number is [UK_NHS]; call the API with [CREDENTIAL] please."
    assert second.tags == ["nhs", "[UK_NHS]"]
    assert second.metadata["email"] == "[EMAIL]" and second.metadata["account"] == "[CREDIT_CARD]"
    assert second.metadata["note"] == "login from [IP_ADDRESS] with key [CREDENTIAL]"
    assert third.redactions == {} and third.metadata["note"] == "nothing"
    # The originals still match (the engine reads them), by their keyed digests.
    assert [p.text_sha256 for p in prompts] == [_sha(row[1]) for row in CSV_ROWS[1:]]
    assert [t for _, t in prompts_for_analysis(uk_csv_set)] == [row[1] for row in CSV_ROWS[1:]]

    # The import's record counts the spans of every field.
    job = Job.objects.get(prompt_set=uk_csv_set)
    redaction = job.result["redaction"]
    assert redaction["prompts_redacted"] == 2
    assert redaction["redacted_fields"] == {"text": 4, "external_id": 1, "tags": 2, "metadata": 9}
    assert redaction["redacted"]["EMAIL"] == 4 and redaction["redacted"]["CREDENTIAL"] == 3
    event = AuditEvent.objects.get(action="prompt_set.import", object_id=str(uk_csv_set.pk))
    assert event.detail["redacted_fields"] == redaction["redacted_fields"]

    client = client_for(reviewer)
    api = client.get(reverse("api_prompts", args=[uk_csv_set.pk]))
    assert api.status_code == 200 and _leaks(api.content.decode()) == []
    assert api.json()["results"][0]["metadata"]["email"] == "[EMAIL]"
    page = client.get(reverse("prompt_set_detail", args=[uk_csv_set.pk])).content.decode()
    assert _leaks(page) == [] and "By field (spans)" in page and "metadata 9" in page


def test_a_us_import_keeps_credentials_and_flags_them(reviewer: User) -> None:
    us_set = _import_file(reviewer, _csv(CSV_ROWS), "people.csv", "US")
    prompts = list(us_set.prompts.order_by("position"))
    assert prompts[1].text == CSV_ROWS[2][1]  # stored as given, key and all
    assert prompts[0].metadata["note"] == f"password: {PASSWORD}"
    assert all(p.redactions == {} for p in prompts)
    job = Job.objects.get(prompt_set=us_set)
    assert job.result["redaction"]["flagged"] == {"CREDENTIAL": 3}
    assert job.result["redaction"]["prompts_flagged"] == 2
    page = client_for(reviewer).get(reverse("prompt_set_detail", args=[us_set.pk]))
    html = page.content.decode()
    assert "Credentials flagged" in html and "CREDENTIAL 3" in html
    assert "Prompts redacted" not in html


def test_an_fr_import_redacts_people_and_places_in_every_field(reviewer: User) -> None:
    plain = "Le modèle répond en français."
    rows: list[dict[str, object]] = [
        {
            "id": "dossier-1",
            "prompt": "Marie Dubois habite à Lyon et écrit à jane.doe@example.org.",
            "tags": ["plainte"],
            "contact": {"nom": "Jean-Pierre Martin", "ville": "Marseille"},
        },
        {"id": "dossier-2", "prompt": plain, "score": 3},
    ]
    data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    fr_set = _import_file(reviewer, data, "dossiers.jsonl", "FR")
    first, second = fr_set.prompts.order_by("position")
    assert first.text == "[PERSON] habite à [LOCATION] et écrit à [EMAIL]."
    assert first.metadata == {"contact": {"nom": "[PERSON]", "ville": "[LOCATION]"}}
    assert first.redactions == {"EMAIL": 1, "LOCATION": 2, "PERSON": 2}
    assert second.text == plain and second.metadata == {"score": 3}


@needs_sae
@pytest.mark.model
def test_a_uk_run_export_of_a_csv_set_holds_no_personal_data(
    uk_csv_set: PromptSet, reviewer: User, admin: User
) -> None:
    from governance.services.exports import export_decide, export_execute, export_request

    run = _run(uk_csv_set, sae_register_shipped()[0])
    assert Job.objects.get(pk=run.job_id).state == JobState.SUCCEEDED
    export = export_request(
        kind="run", target_id=run.pk, actor=Actor.command(reviewer), purpose="ICO request"
    )
    export = export_decide(export, approve=True, note="checked", actor=Actor.command(admin))
    assert export.job_id is not None
    export_execute(export.job_id)
    export.refresh_from_db()
    with default_storage.open(export.artifact, "rb") as handle:
        archive = zipfile.ZipFile(io.BytesIO(handle.read()))
    for name in archive.namelist():
        content = archive.read(name)
        assert [s for s in SECRETS if s.encode() in content] == [], name
    lines = [json.loads(line) for line in archive.read("prompts.jsonl").decode().splitlines()]
    assert lines[0]["prompt_id"] == "[EMAIL]"
    assert lines[0]["text_sha256"] == _sha(CSV_ROWS[1][1])  # keyed: confirms no guess
    assert lines[1]["redacted_before_storage"]["CREDENTIAL"] == 2
