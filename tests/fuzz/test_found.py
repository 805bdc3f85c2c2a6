"""The inputs the fuzzing found answered with a server error (or that PostgreSQL refused), each
answered now with a 4xx naming the problem, and nothing written. Written out so that every run
checks them, whatever Hypothesis generates (its example database stays on one machine)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from scopeweb.accounts.actor import Actor
from scopeweb.jobs.models import Job
from tests.factories import make_sae
from tests.fuzz.conftest import Snapshot, fuzz_client
from tests.fuzz.multipart import multipart
from traces.models import SaeRecord
from traces.prompt_files import PromptFileError, parse_prompt_file, prompt_limits
from traces.services.manifests import ingest_token_create, manifest_save, parse_manifest_yaml

pytestmark = pytest.mark.django_db
BIG = "1" * 5_000  # more digits than Python converts
DEEP = "[" * 5_000 + "]" * 5_000


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"prompt": "x", "n": ' + BIG + "}", "line 1: not valid JSON: Exceeds the limit"),
        ('{"prompt": "x", "n": ' + DEEP + "}", "line 1: not valid JSON: nested too deeply"),
        ('{"prompt": "x", "n": NaN}', "line 1: not valid JSON: NaN is not a JSON number"),
        ('{"prompt": "x\\ud800"}', "line 1: the line holds an unpaired surrogate (U+D800)"),
        ('{"prompt": "x", "id": "a\\u0000"}', "line 1: the line holds a NUL character"),
        ('{"prompt": "x", "tags": ["\\udfff"]}', "the line holds an unpaired surrogate"),
    ],
)
def test_a_prompt_line_no_database_can_keep_is_refused_naming_it(line: str, expected: str) -> None:
    with pytest.raises(PromptFileError) as refused:
        parse_prompt_file(line.encode(), filename="p.jsonl", limits=prompt_limits())
    assert expected in str(refused.value)


def test_a_problem_quoting_a_nul_or_a_lone_surrogate_can_be_stored_and_shown() -> None:
    data = b'{"prompt": "a", "id": "\\ud800\\u0000"}\n{"prompt": "b", "id": "\\ud800\\u0000"}\n'
    with pytest.raises(PromptFileError) as refused:
        parse_prompt_file(data, filename="p.jsonl", limits=prompt_limits())
    words = str(refused.value)
    assert "\\ud800\\x00" in words and words.encode("utf-8") and "\x00" not in words


@pytest.fixture
def sae() -> SaeRecord:
    return make_sae(name="found-sae", width=16)


ANNOTATIONS = [
    (b'{"annotations": [{"index": 1, "watch_threshold": ' + b"9" * 400 + b"}]}", "watch_threshold"),
    (b'{"annotations": [{"index": 1, "label": "\\ud800"}]}', "unpaired surrogate"),
    (b'{"annotations": [{"index": 1, "description": "a\\u0000"}]}', "NUL"),
    (b'{"annotations": [{"index": 1, "\\ud800": 1}]}', "Unknown field"),
    (b'{"annotations": [{"index": 1, "n": ' + BIG.encode() + b"}]}", "Exceeds the limit"),
    (b'{"annotations": ' + DEEP.encode() + b"}", "nested too deeply"),
]


@pytest.mark.parametrize("route", ["json body", "api file", "page file"])
@pytest.mark.parametrize(("document", "expected"), ANNOTATIONS)
def test_an_annotations_import_found_failing_is_refused(
    reviewer: User, sae: SaeRecord, route: str, document: bytes, expected: str
) -> None:
    client = fuzz_client(reviewer)
    before = Snapshot()
    if route == "json body":
        url, body, kind = reverse("api_annotations_import", args=[sae.name]), document, None
    else:
        name = "api_annotations_import" if route == "api file" else "annotations_import"
        url = reverse(name, args=[sae.name])
        body, kind = multipart({}, {"file": ("annotations.json", document)})
    answer = client.post(url, body, content_type=kind or "application/json")
    assert answer.status_code == (200 if route == "page file" else 400), answer.content[:300]
    shown = answer.content.decode()
    assert expected in shown or (expected == "Unknown field" and "\\ud800" in shown)
    assert Snapshot() == before, before.diff(Snapshot())


JSON_BODIES = [  # (route, body, words of the 400)
    ("api_cases", b'{"title": "t", "profile": "US", "a": ' + DEEP.encode() + b"}", "too deeply"),
    ("api_cases", b'{"title": "t", "profile": "US", "severity": "\\ud800"}', "valid choice"),
    ("api_cases", b'{"title": "t", "profile": "U\\u0000S"}', "profile holds a NUL"),
    ("api_cases", b'{"title": "t", "profile": "US", "assignees": ["rob\\u0000"]}', "assignees[0]"),
    ("api_runs", b'{"prompt_set": 1e400, "sae": "found-sae"}', "prompt_set is a number beyond"),
]


@pytest.mark.parametrize(("route", "body", "expected"), JSON_BODIES)
def test_an_api_body_found_failing_is_refused_naming_where(
    reviewer: User, sae: SaeRecord, route: str, body: bytes, expected: str
) -> None:
    client = fuzz_client(reviewer)  # signing in writes (a session, the sign-in log)
    before = Snapshot()
    answer = client.post(reverse(route), body, content_type="application/json")
    assert answer.status_code == 400, answer.content[:300]
    assert expected in str(answer.json())
    assert Snapshot() == before, before.diff(Snapshot())


def test_a_form_field_holding_nul_is_refused(reviewer: User) -> None:
    body, kind = multipart({"name": "n", "profile": "U\x00S"}, {"file": ("p.txt", b"hi\n")})
    answer = fuzz_client(reviewer).post(reverse("api_prompt_sets"), body, content_type=kind)
    assert answer.status_code == 400
    assert answer.json()["detail"] == "Form parse error - the field profile holds a NUL (%00)"


def test_a_long_name_and_file_name_make_a_job_title_that_fits(reviewer: User) -> None:
    body, kind = multipart(
        {"name": "n" * 200, "profile": "US"}, {"file": ("f" * 240 + ".txt", b"hi")}
    )
    answer = fuzz_client(reviewer).post(reverse("api_prompt_sets"), body, content_type=kind)
    assert answer.status_code == 202
    assert len(Job.objects.get().title) == Job.TITLE_MAX


def test_a_case_list_filtered_by_a_code_with_nul_is_empty(reviewer: User) -> None:
    answer = fuzz_client(reviewer).get(reverse("api_cases"), {"profile": "U\x00S"})
    assert answer.status_code == 200 and answer.json()["count"] == 0


def test_tracer_features_holding_a_lone_surrogate_are_refused(admin: User) -> None:
    make_sae(name="tiny", width=128)
    manifest = manifest_save(
        document=parse_manifest_yaml(
            "service: chat\ncheckpoint: google/gemma-3-270m\nsaes: [tiny]\nsample_rate: 1.0\n"
            "profile: US\nmax_tokens_capture: 256\ntop_k: 8\n"
        ),
        actor=Actor.command(admin),
    )
    key = ingest_token_create(manifest=manifest, name="k", actor=Actor.command(admin))[1]
    body = (
        b'{"traces": [{"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "prompt": "Hi", '
        b'"features": {"sae": "\\ud800"}}]}'
    )
    client = fuzz_client(authorization=f"Token {key}")
    before = Snapshot()
    answer = client.post(reverse("api_ingest"), body, content_type="application/json")
    assert answer.status_code == 400
    assert answer.json()["field"] == "traces[0].features.sae"
    assert Snapshot() == before, before.diff(Snapshot())
