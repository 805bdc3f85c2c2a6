"""API rate limits: one budget per caller (a user, an ingest key, a gate key, an anonymous
address), 429 with Retry-After and a body naming the limit; and the cache that holds the
counters is one every process shares."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from gates.services.definitions import gate_token_create
from scopeweb.accounts.actor import Actor
from scopeweb.accounts.services import api_token_create
from tests.gates.page_kit import make_gate
from traces.models import SaeRecord
from traces.services.manifests import ingest_token_create, manifest_save, parse_manifest_yaml

ROOT = Path(__file__).resolve().parents[2]


def _rates(settings: Any, **rates: str) -> None:
    high = dict.fromkeys(("user", "anon", "ingest", "gate"), "100000/minute")
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**high, **rates},
    }


@pytest.mark.django_db
def test_a_user_over_their_rate_gets_429_naming_the_limit(
    reviewer: User, second_reviewer: User, settings: Any
) -> None:
    _rates(settings, user="3/minute")
    _, key = api_token_create(actor=Actor.command(reviewer), name="script")
    token_client = Client(HTTP_AUTHORIZATION=f"Token {key}")
    assert [token_client.get(reverse("api_me")).status_code for _ in range(3)] == [200] * 3
    refused = token_client.get(reverse("api_me"))
    assert refused.status_code == 429
    body = refused.json()
    assert body["scope"] == "user" and body["limit"] == "3/minute"
    assert "SCOPEWEB_API_RATE=3/minute" in body["detail"] and "3 per minute" in body["detail"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    # The user's session shares the budget; another user has their own.
    session = Client()
    session.force_login(reviewer)
    assert session.get(reverse("api_me")).status_code == 429
    other = Client()
    other.force_login(second_reviewer)
    assert other.get(reverse("api_me")).status_code == 200


@pytest.mark.django_db
def test_each_ingest_key_has_its_own_budget(admin: User, settings: Any) -> None:
    _rates(settings, ingest="2/minute")
    SaeRecord.objects.create(
        name="tiny", reference="/nowhere", model_name="m", site="resid_post", layer=2,
        width=128, hook_point="model.layers.2.output", params_sha256="0" * 64,
    )  # fmt: skip
    manifest = manifest_save(
        document=parse_manifest_yaml("service: svc\ncheckpoint: m\nsaes: [tiny]\nprofile: US\n"),
        actor=Actor.command(admin),
    )
    keys = [
        ingest_token_create(manifest=manifest, name=n, actor=Actor.command(admin))[1]
        for n in ("a", "b")
    ]

    def post(key: str) -> Any:
        return Client().post(
            reverse("api_ingest"), data="{}", content_type="application/json",
            HTTP_AUTHORIZATION=f"Token {key}",
        )  # fmt: skip

    assert [post(keys[0]).status_code for _ in range(2)] == [400, 400]  # an empty body
    refused = post(keys[0])
    assert refused.status_code == 429 and refused.json()["scope"] == "ingest"
    assert "each ingest key may make 2 per minute" in refused.json()["detail"]
    assert refused.has_header("Retry-After")  # the tracer waits that long
    assert post(keys[1]).status_code == 400


@pytest.mark.django_db
def test_each_gate_key_has_its_own_budget(admin: User, settings: Any) -> None:
    _rates(settings, gate="2/minute")
    gate = make_gate(admin)
    _, key = gate_token_create(gate=gate, name="ci", actor=Actor.command(admin))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    url = reverse("api_gate_run", args=[999999])
    assert [client.get(url).status_code for _ in range(2)] == [404, 404]
    refused = client.get(url)
    assert refused.status_code == 429 and refused.json()["limit"] == "2/minute"
    assert refused.json()["scope"] == "gate"


@pytest.mark.django_db
def test_anonymous_callers_are_limited_by_address(settings: Any) -> None:
    _rates(settings, anon="2/minute")
    url = reverse("api_gate_certificate")
    first = Client(REMOTE_ADDR="192.0.2.1")
    assert 429 not in [first.get(url).status_code for _ in range(2)]
    # A forged X-Forwarded-For is not a new address (no proxy is configured).
    assert first.get(url, HTTP_X_FORWARDED_FOR="203.0.113.5").status_code == 429
    assert first.get(url).json()["scope"] == "anon"
    assert Client(REMOTE_ADDR="192.0.2.2").get(url).status_code != 429


PROBE = "import json; from django.conf import settings as s; print(json.dumps(s.CACHES['default']))"


def _caches(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "SCOPEWEB_CACHE_URL")
    }
    environ.update(DJANGO_SETTINGS_MODULE="scopeweb.settings", SCOPEWEB_DATA_DIR=str(tmp_path))
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {PROBE}"],
        cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_cache_is_shared_by_every_process(tmp_path: Path) -> None:
    embedded = _caches(tmp_path)
    assert embedded.returncode == 0, embedded.stderr
    cache = json.loads(embedded.stdout)
    assert cache["BACKEND"].endswith("FileBasedCache")  # not per-process memory
    assert cache["LOCATION"] == str(tmp_path / "cache")

    redis = json.loads(_caches(tmp_path, CELERY_BROKER_URL="redis://broker:6379/0").stdout)
    assert redis["BACKEND"].endswith("RedisCache")
    assert redis["LOCATION"] == "redis://broker:6379/1"  # not the broker's database
    other = json.loads(_caches(tmp_path, CELERY_BROKER_URL="redis://broker:6379/15").stdout)
    assert other["LOCATION"] == "redis://broker:6379/0"
    named = _caches(tmp_path, SCOPEWEB_CACHE_URL="redis://cache:6379/3")
    assert json.loads(named.stdout)["LOCATION"] == "redis://cache:6379/3"

    wrong = _caches(tmp_path, SCOPEWEB_CACHE_URL="memcached://x")
    assert wrong.returncode != 0 and "SCOPEWEB_CACHE_URL='memcached://x'" in wrong.stderr
    bad_rate = _caches(tmp_path, SCOPEWEB_INGEST_RATE="lots")
    assert (
        bad_rate.returncode != 0 and "SCOPEWEB_INGEST_RATE='lots' is not a rate" in bad_rate.stderr
    )
