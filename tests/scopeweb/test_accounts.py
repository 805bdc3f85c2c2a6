from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from scopeweb.accounts.actor import Actor
from scopeweb.accounts.models import ApiToken
from scopeweb.accounts.roles import CAPABILITIES, Role
from scopeweb.accounts.services import admin_ensure, api_token_create, api_token_revoke
from tests.conftest import client_for
from tests.factories import PASSWORD
from tests.gates.page_kit import GATE, make_gate
from traces.services.manifests import manifest_save, parse_manifest_yaml

pytestmark = pytest.mark.django_db


def test_roles_exist_with_the_design_permissions() -> None:
    perms = {
        group.name: {p.codename for p in group.permissions.all()} for group in Group.objects.all()
    }
    assert set(perms) == {"reviewer", "auditor", "admin"}
    assert "upload_prompt_set" in perms["reviewer"] and "manage_retention" not in perms["reviewer"]
    assert perms["auditor"] == {
        "read_signed_case",
        "verify_report",
        "read_audit_log",
        "read_annotations",
        "use_export_link",  # an export link a reviewer passed on
        "view_operations",  # ingestion's rates and sizes, no content
        "view_gates",  # gate runs' metrics, decisions and attestations, read only
    }
    assert perms["admin"] == set(CAPABILITIES)


def test_login_and_logout_with_a_password(reviewer: User) -> None:
    client = Client()
    response = client.post(reverse("login"), {"username": "rita", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("home")).status_code == 200
    client.post(reverse("logout"))
    assert client.get(reverse("home")).status_code == 302


def test_wrong_password_is_refused_with_a_message(reviewer: User) -> None:
    response = Client().post(reverse("login"), {"username": "rita", "password": "nope"})
    assert response.status_code == 200
    assert "did not match" in response.content.decode()


def test_password_change(reviewer: User) -> None:
    client = client_for(reviewer)
    response = client.post(
        reverse("password_change"),
        {
            "old_password": PASSWORD,
            "new_password1": "a new long pass 42",
            "new_password2": "a new long pass 42",
        },
    )
    assert response.status_code == 302
    reviewer.refresh_from_db()
    assert reviewer.check_password("a new long pass 42")


def test_passwords_need_twelve_characters_even_when_an_admin_sets_them(admin: User) -> None:
    client = client_for(admin)
    short = client.post(
        reverse("user_create"),
        {"username": "shorty", "role": "reviewer", "password": "Tr0ub4dor&3"},
    )
    assert short.status_code == 200 and not User.objects.filter(username="shorty").exists()
    assert "at least 12 characters" in short.content.decode()
    common = client.post(
        reverse("user_create"),
        {"username": "common", "role": "reviewer", "password": "password1234"},
    )
    assert "too common" in common.content.decode()
    made = client.post(
        reverse("user_create"),
        {"username": "longer", "role": "reviewer", "password": "a long enough phrase"},
    )
    assert made.status_code == 200 and "no-store" in made["Cache-Control"]
    assert User.objects.get(username="longer").check_password("a long enough phrase")
    User.objects.filter(groups__name="admin").update(is_active=False)
    with pytest.raises(ValidationError, match="at least 12"):
        admin_ensure(username="boss", password="short")


def test_admin_makes_a_reviewer_and_an_auditor(admin: User) -> None:
    client = client_for(admin)
    for name, role in [("newrev", "reviewer"), ("newaud", "auditor")]:
        response = client.post(reverse("user_create"), {"username": name, "role": role})
        assert response.status_code == 200
        password = response.context["password"]
        user = User.objects.get(username=name)
        assert user.check_password(password)
        assert list(user.groups.values_list("name", flat=True)) == [role]


def test_duplicate_user_name_is_refused(admin: User, reviewer: User) -> None:
    response = client_for(admin).post(
        reverse("user_create"), {"username": "RITA", "role": "auditor"}
    )
    assert "already exists" in response.content.decode()


def test_admin_cannot_demote_themself(admin: User) -> None:
    response = client_for(admin).post(
        reverse("user_edit", kwargs={"user_id": admin.pk}), {"role": "reviewer", "is_active": "on"}
    )
    assert "cannot remove your own admin role" in response.content.decode()
    assert admin.groups.filter(name="admin").exists()


def test_first_admin_is_made_once() -> None:
    created = admin_ensure(username="boss", password=None)
    assert created is not None
    user, password = created
    assert user.check_password(password) and user.groups.filter(name=Role.ADMIN).exists()
    assert admin_ensure(username="boss2") is None


def test_api_token_authenticates_and_revocation_ends_it(reviewer: User) -> None:
    token, key = api_token_create(actor=Actor.command(reviewer), name="ci")
    assert key.startswith("sw_") and ApiToken.hash_key(key) == token.key_sha256
    assert key not in str(ApiToken.objects.values_list())  # only the hash is stored
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get(reverse("api_me"))
    assert response.json() == {"username": "rita", "roles": ["reviewer"]}
    api_token_revoke(token=token, actor=Actor.command(reviewer))
    response = client.get(reverse("api_me"))
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_token_page_shows_a_new_key_once(reviewer: User) -> None:
    client = client_for(reviewer)
    response = client.post(reverse("token_list"), {"name": "laptop", "scopes": "read", "days": 30})
    key = response.context["new_key"]
    assert key and key in response.content.decode()
    assert "no-store" in response["Cache-Control"]  # no cache keeps the page with the key
    assert key not in client.get(reverse("token_list")).content.decode()


def test_revoking_someone_elses_token_is_404(reviewer: User, second_reviewer: User) -> None:
    token, _ = api_token_create(actor=Actor.command(reviewer), name="mine")
    response = client_for(second_reviewer).post(
        reverse("token_revoke", kwargs={"token_id": token.pk})
    )
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_an_idle_session_is_signed_out_and_each_request_restarts_the_clock(
    reviewer: User, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    assert settings.SESSION_COOKIE_AGE == 30 * 60
    client = Client()
    client.post(reverse("login"), {"username": "rita", "password": PASSWORD})
    start = timezone.now()

    def minutes_later(minutes: int) -> None:
        monkeypatch.setattr(timezone, "now", lambda: start + timedelta(minutes=minutes))

    minutes_later(29)
    assert client.get(reverse("home")).status_code == 200
    minutes_later(58)  # 29 idle minutes since the last request
    assert client.get(reverse("home")).status_code == 200
    minutes_later(89)  # 31 idle minutes: signed out
    response = client.get(reverse("home"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_every_page_that_shows_a_secret_once_is_never_stored(admin: User) -> None:
    make_gate(admin)  # and the SAE the manifest names
    manifest_save(
        document=parse_manifest_yaml(
            "service: svc\ncheckpoint: google/gemma-3-270m\nsaes: [tiny]\nprofile: US\n"
        ),
        actor=Actor.command(admin),
    )
    client = client_for(admin)
    shown = {
        "API token": client.post(reverse("token_list"), {"name": "k", "scopes": "read", "days": 1}),
        "password": client.post(reverse("user_create"), {"username": "newbie", "role": "reviewer"}),
        "ingest key": client.post(reverse("ingest_token_create", args=["svc"]), {"name": "k"}),
        "gate key": client.post(reverse("gate_key_create", args=[GATE]), {"name": "k"}),
    }
    for what, response in shown.items():
        assert response.status_code == 200, what
        assert response.context.get("new_key") or response.context.get("password"), what
        directives = {d.strip() for d in response["Cache-Control"].split(",")}
        assert {"no-store", "private"} <= directives, what


def test_a_session_is_saved_at_most_once_a_minute_while_in_use(
    reviewer: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.contrib.sessions.models import Session

    client = Client()
    client.post(reverse("login"), {"username": "rita", "password": PASSWORD})
    start = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=10))
    expiry = Session.objects.get().expire_date
    client.get(reverse("home"))
    assert Session.objects.get().expire_date == expiry  # 10 s after the last save: not saved
    monkeypatch.setattr(timezone, "now", lambda: start + timedelta(seconds=70))
    client.get(reverse("home"))
    assert Session.objects.get().expire_date == start + timedelta(seconds=70 + 30 * 60)
