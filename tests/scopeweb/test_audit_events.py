"""Each audited action leaves an event naming who, what, which object, from where, and before
and after where something changed. Actions go through the real views and API endpoints."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from scopeweb.accounts.actor import Actor
from scopeweb.accounts.models import ApiToken
from scopeweb.accounts.services import api_token_create
from scopeweb.audit.models import AuditEvent
from scopeweb.audit.services import audit_chain_check
from scopeweb.retention.models import RetentionProfile
from tests.conftest import client_for
from tests.factories import PASSWORD, make_prompt_set, make_run, make_sae, make_trace
from traces.models import AnalysisRun, FeatureAnnotation, Trace

pytestmark = pytest.mark.django_db


def _only(action: str) -> AuditEvent:
    events = list(AuditEvent.objects.filter(action=action))
    assert len(events) == 1, f"{action}: {len(events)} events"
    return events[0]


def _token_client(user: User) -> Client:
    _, key = api_token_create(actor=Actor.command(user), name="audit test")
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


# Sign-ins


def test_sign_in_and_sign_out_are_recorded_with_the_address(reviewer: User) -> None:
    client = Client(REMOTE_ADDR="10.1.2.3")
    response = client.post(reverse("login"), {"username": "rita", "password": PASSWORD})
    assert response.status_code == 302
    login = _only("auth.login")
    assert (login.actor, login.actor_id, login.via) == ("rita", reviewer.pk, "web")
    assert (login.object_type, login.object_id, login.source) == (
        "user",
        str(reviewer.pk),
        "10.1.2.3",
    )
    client.post(reverse("logout"))
    logout = _only("auth.logout")
    assert logout.actor == "rita" and logout.source == "10.1.2.3"


def test_a_failed_sign_in_records_the_attempted_name_and_address(reviewer: User) -> None:
    client = Client(REMOTE_ADDR="192.0.2.7")
    response = client.post(reverse("login"), {"username": "rita", "password": "wrong"})
    assert response.status_code == 200  # the form again, with its error
    failed = _only("auth.login_failed")
    assert failed.actor == "" and failed.actor_id is None
    assert failed.source == "192.0.2.7"
    assert failed.detail == {"username": "rita"}
    assert (failed.object_type, failed.object_id) == ("user", str(reviewer.pk))
    assert "wrong" not in str(failed.detail) + failed.object_repr
    client.post(reverse("login"), {"username": "nobody", "password": "x"})
    unknown = AuditEvent.objects.filter(action="auth.login_failed").first()
    assert unknown is not None and unknown.detail == {"username": "nobody"}
    assert unknown.object_type == "" and unknown.object_repr == "nobody"
    assert not AuditEvent.objects.filter(action="auth.login").exists()


# Users and tokens


def test_user_creation_and_role_change_are_recorded_with_before_and_after(admin: User) -> None:
    client = client_for(admin)
    client.post(
        reverse("user_create"),
        {"username": "newbie", "email": "n@example.org", "role": "reviewer", "password": ""},
    )
    newbie = User.objects.get(username="newbie")
    created = _only("user.create")
    assert created.actor == "ada" and created.object_id == str(newbie.pk)
    assert created.after == {"email": "n@example.org", "role": "reviewer", "is_active": True}
    client.post(
        reverse("user_edit", args=[newbie.pk]),
        {"email": "n@example.org", "role": "auditor", "is_active": ""},
    )
    updated = _only("user.update")
    assert updated.before == {"role": "reviewer", "is_active": True}
    assert updated.after == {"role": "auditor", "is_active": False}
    assert updated.object_repr == "newbie"


def test_api_tokens_created_and_revoked_are_recorded(reviewer: User) -> None:
    client = client_for(reviewer)
    client.post(reverse("token_list"), {"name": "ci gate", "scopes": ["read", "write"], "days": 7})
    token = ApiToken.objects.get(name="ci gate")
    created = _only("token.create")
    assert created.actor == "rita" and created.object_type == "apitoken"
    after = dict(created.after or {})
    assert str(after.pop("expires_at")).startswith(f"{token.expires_at:%Y-%m-%dT%H:%M:%S}")
    assert after == {
        "name": "ci gate",
        "prefix": token.prefix,
        "owner": "rita",
        "scopes": ["read", "write"],
    }
    client.post(reverse("token_revoke", args=[token.pk]))
    revoked = _only("token.revoke")
    assert revoked.before == {"revoked_at": None} and (revoked.after or {})["revoked_at"]


def test_a_call_made_with_an_api_token_names_the_token(reviewer: User, admin: User) -> None:
    client = _token_client(admin)
    token = ApiToken.objects.get(user=admin)
    response = client.patch(
        reverse("api_retention_profile", args=["UK"]),
        {"retention_days": 90},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    event = _only("retention.update")
    assert event.via == f"api-token:{token.pk}" and event.actor == "ada"


# Retention


def test_retention_profile_changes_are_recorded_with_before_and_after(admin: User) -> None:
    profile = RetentionProfile.objects.get(code="FR")
    response = client_for(admin).patch(
        reverse("api_retention_profile", args=["FR"]),
        {"retention_days": 365, "four_eyes": not profile.four_eyes},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    event = _only("retention.update")
    assert (event.object_type, event.object_id, event.via) == ("retentionprofile", "FR", "api")
    assert event.before == {"retention_days": 30, "four_eyes": profile.four_eyes}
    assert event.after == {"retention_days": 365, "four_eyes": not profile.four_eyes}
    client_for(admin).patch(
        reverse("api_retention_profile", args=["FR"]),
        {"retention_days": 365},
        content_type="application/json",
    )
    assert AuditEvent.objects.filter(action="retention.update").count() == 1  # nothing changed


# Prompt sets, runs, traces


def test_a_prompt_set_upload_is_recorded(reviewer: User) -> None:
    upload = io.BytesIO(b'{"prompt": "hello"}\n')
    upload.name = "prompts.jsonl"
    response = client_for(reviewer).post(
        reverse("prompt_set_upload"),
        {"name": "demo", "description": "", "profile": "UK", "file": upload, "file_format": ""},
    )
    assert response.status_code == 302, response.content[:2000]
    event = _only("prompt_set.upload")
    assert event.actor == "rita" and event.object_type == "job"
    assert event.detail == {
        "name": "demo",
        "filename": "prompts.jsonl",
        "bytes": 20,
        "profile": "UK",
    }


def test_the_worker_records_the_import_it_finished(reviewer: User) -> None:
    from tests.traces.conftest import import_prompt_set

    prompt_set = import_prompt_set(reviewer, ["one prompt", "two prompts"])
    event = _only("prompt_set.import")
    assert (event.via, event.actor, event.object_id) == ("worker", "rita", str(prompt_set.pk))
    assert event.detail["prompts"] == 2


def test_runs_started_cancelled_and_reproduced_are_recorded(reviewer: User) -> None:
    sae = make_sae()
    prompt_set = make_prompt_set()
    client = client_for(reviewer)
    client.post(
        reverse("run_start", args=[prompt_set.pk]),
        {"sae": sae.name, "top_k": 16, "dtype": "auto", "generate_tokens": 0, "seed": 3},
    )
    run = AnalysisRun.objects.get(prompt_set=prompt_set)
    started = _only("run.start")
    assert started.object_id == str(run.pk) and started.actor == "rita"
    assert (started.after or {})["top_k"] == 16 and (started.after or {})["sae"] == sae.name
    assert (started.after or {})["seed"] == 3 and (started.after or {})["reproduces"] is None
    client.post(reverse("run_cancel", args=[run.pk]))
    cancelled = _only("run.cancel")
    assert cancelled.object_id == str(run.pk)
    assert cancelled.detail == {"before_start": True, "runs": [run.pk]}
    finished = make_run(sae=sae, prompt_set=prompt_set)
    client.post(reverse("run_reproduce", args=[finished.pk]))
    reproduced = _only("run.reproduce")
    assert (reproduced.after or {})["reproduces"] == finished.pk


def test_each_trace_view_is_one_event_on_the_page_and_the_api(reviewer: User) -> None:
    trace = make_trace(make_run(sae=make_sae()))
    client = client_for(reviewer)
    assert client.get(reverse("trace_detail", args=[trace.pk])).status_code == 200
    assert client.get(reverse("api_trace_tokens", args=[trace.pk])).status_code == 410
    events = list(AuditEvent.objects.filter(action="trace.view").order_by("id"))
    assert [(e.object_type, e.object_id, e.via) for e in events] == [
        ("trace", str(trace.pk), "web"),
        ("trace", str(trace.pk), "api"),
    ]
    client.get(reverse("trace_detail", args=[999999]))
    assert AuditEvent.objects.filter(action="trace.view").count() == 2  # a 404 views nothing


# Annotations


def test_annotation_changes_are_recorded_with_before_and_after(reviewer: User) -> None:
    sae = make_sae()
    client = client_for(reviewer)
    client.post(
        reverse("feature_annotate", args=[sae.name, 5]),
        {"label": "lies", "description": "", "free_tags": "", "watch_threshold": ""},
    )
    first = _only("annotation.change")
    assert first.before == {"label": ""} and first.after == {"label": "lies"}
    assert first.object_repr == f"{sae.name} #5" and first.detail["via"] == "web"
    response = client.patch(
        reverse("api_feature_annotation", args=[sae.name, 5]),
        {"watch_threshold": 2.5, "tags": ["deception"]},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    second = AuditEvent.objects.filter(action="annotation.change").first()
    assert second is not None and second.via == "api"
    assert second.before == {"tags": [], "watch_threshold": None}
    assert second.after == {"tags": ["deception"], "watch_threshold": 2.5}


def test_annotation_exports_and_imports_are_recorded(reviewer: User, auditor: User) -> None:
    sae = make_sae()
    FeatureAnnotation.objects.create(sae=sae, index=1, label="one")
    auditor_client = client_for(auditor)
    auditor_client.get(reverse("annotations_export", args=[sae.name]))
    document = auditor_client.get(reverse("api_annotations_export", args=[sae.name])).json()
    exports = list(AuditEvent.objects.filter(action="annotation.export").order_by("id"))
    assert [(e.actor, e.via, e.object_id, e.detail) for e in exports] == [
        ("audrey", "web", sae.name, {"count": 1}),
        ("audrey", "api", sae.name, {"count": 1}),
    ]
    document["annotations"].append({"index": 2, "label": "two"})
    response = client_for(reviewer).post(
        reverse("api_annotations_import", args=[sae.name]),
        document,
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    imported = _only("annotation.import")
    assert imported.actor == "rita"
    assert imported.detail == {"entries": 2, "created": 1, "changed": 0}
    change = AuditEvent.objects.filter(action="annotation.change").get()
    assert change.after == {"label": "two"} and change.detail["via"] == "import"


# Triage


def test_triage_decisions_are_recorded(reviewer: User) -> None:
    sae = make_sae()
    FeatureAnnotation.objects.create(sae=sae, index=5, tags=["deception"], watch_threshold=2.0)
    trace: Trace = make_trace(make_run(sae=sae), 0, {5: (3.0, 1, 1)})
    response = client_for(reviewer).post(
        reverse("triage_decide", args=[trace.pk]), {"decision": "reviewed", "note": "benign"}
    )
    assert response.status_code == 302
    event = _only("triage.decide")
    assert (event.actor, event.object_type, event.object_id) == ("rita", "trace", str(trace.pk))
    assert event.after == {"decision": "reviewed", "note": "benign"}


def test_every_recorded_event_keeps_the_chain_whole(reviewer: User, admin: User) -> None:
    test_runs_started_cancelled_and_reproduced_are_recorded(reviewer)
    test_user_creation_and_role_change_are_recorded_with_before_and_after(admin)
    report = audit_chain_check()
    assert report.ok and report.checked == AuditEvent.objects.count()
