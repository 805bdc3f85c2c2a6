"""Personal API tokens carry scopes (read, write) and an expiry; ingest and gate keys are their
one scope each. Scopes narrow what the owner's role allows, never widen it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from gates.models import GateToken
from scopeweb.accounts.actor import Actor
from scopeweb.accounts.models import ApiToken
from scopeweb.accounts.scopes import scope_needed
from scopeweb.accounts.services import TokenRefused, api_token_create
from tests.conftest import client_for
from traces.api.ingest import IngestPlainApi
from traces.ingest.models import IngestToken

pytestmark = pytest.mark.django_db


def _client(user: User, scopes: tuple[str, ...], days: int | None = None) -> Client:
    _, key = api_token_create(actor=Actor.command(user), name="t", scopes=scopes, days=days)
    return Client(HTTP_AUTHORIZATION=f"Token {key}")


def _patch_retention(client: Client) -> Any:
    return client.patch(
        reverse("api_retention_profile", args=["UK"]),
        {"retention_days": 90},
        content_type="application/json",
    )


def test_a_read_token_reads_and_may_not_write(admin: User) -> None:
    client = _client(admin, ("read",))
    assert client.get(reverse("api_retention_profile", args=["UK"])).status_code == 200
    refused = _patch_retention(client)
    assert refused.status_code == 403
    assert "lacks the 'write' scope" in refused.json()["detail"]


def test_a_write_token_writes_and_may_not_read(admin: User) -> None:
    client = _client(admin, ("write",))
    assert _patch_retention(client).status_code == 200
    refused = client.get(reverse("api_me"))
    assert refused.status_code == 403 and "'read' scope" in refused.json()["detail"]


def test_scopes_never_widen_a_role(reviewer: User) -> None:
    refused = _patch_retention(_client(reviewer, ("read", "write")))
    assert refused.status_code == 403 and "Your role may not" in refused.json()["detail"]


def test_an_expired_token_is_refused_with_401_saying_so(reviewer: User) -> None:
    token, key = api_token_create(actor=Actor.command(reviewer), name="old", days=1)
    client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get(reverse("api_me")).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    refused = client.get(reverse("api_me"))
    assert refused.status_code == 401
    assert "expired on" in refused.json()["detail"] and token.prefix in refused.json()["detail"]


def test_tokens_from_before_scopes_keep_working_and_are_flagged(reviewer: User) -> None:
    token, key = api_token_create(actor=Actor.command(reviewer), name="legacy")
    # What migration 0007 leaves on a token made before it: both scopes, no expiry.
    ApiToken.objects.filter(pk=token.pk).update(expires_at=None)
    token.refresh_from_db()
    assert token.scopes == ["read", "write"] and not token.expired()
    response = Client(HTTP_AUTHORIZATION=f"Token {key}").get(reverse("api_me"))
    assert response.status_code == 200
    assert "no expiry" in client_for(reviewer).get(reverse("token_list")).content.decode()


def test_the_token_form_picks_scopes_and_an_expiry_within_the_maximum(
    reviewer: User, settings: Any
) -> None:
    settings.API_TOKEN_MAX_DAYS = 30
    client = client_for(reviewer)
    page = client.get(reverse("token_list")).content.decode()
    assert 'name="scopes"' in page and 'name="days"' in page and 'max="30"' in page
    too_long = client.post(reverse("token_list"), {"name": "x", "scopes": "read", "days": 31})
    assert too_long.context["new_key"] is None
    assert "less than or equal to 30" in too_long.content.decode()
    none = client.post(reverse("token_list"), {"name": "x", "days": 7})
    assert none.context["new_key"] is None and not ApiToken.objects.exists()
    made = client.post(reverse("token_list"), {"name": "ci", "scopes": ["read"], "days": 7})
    assert made.context["new_key"]
    token = ApiToken.objects.get(name="ci")
    assert token.scopes == ["read"] and token.expires_at is not None
    assert timedelta(days=6, hours=23) < token.expires_at - timezone.now() <= timedelta(days=7)
    listing = client.get(reverse("token_list")).content.decode()
    assert ">read</span>" in listing and ">write</span>" not in listing


def test_the_service_refuses_what_the_form_would(reviewer: User, settings: Any) -> None:
    actor = Actor.command(reviewer)
    with pytest.raises(TokenRefused, match="ingest is not a personal token's scope"):
        api_token_create(actor=actor, name="x", scopes=("read", "ingest"))
    with pytest.raises(TokenRefused, match="Pick one or more"):
        api_token_create(actor=actor, name="x", scopes=())
    with pytest.raises(TokenRefused, match=f"1 to {settings.API_TOKEN_MAX_DAYS} days"):
        api_token_create(actor=actor, name="x", days=settings.API_TOKEN_MAX_DAYS + 1)


def test_ingest_and_gate_keys_are_one_scope_each() -> None:
    assert IngestToken().scopes == ("ingest",) and GateToken().scopes == ("gate",)
    assert scope_needed("POST", IngestPlainApi()) == "ingest"
    assert scope_needed("GET", object()) == "read" and scope_needed("DELETE", object()) == "write"
