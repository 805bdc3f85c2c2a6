"""docker-compose.yml, the production shape: no credential has a default, only the TLS proxy
publishes a port, and web trusts the proxy's X-Forwarded-Proto (``docker compose config`` needs
the compose plugin; this reads the file as compose does, with PyYAML)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
CREDENTIAL = re.compile(r"USER|PASSWORD|SECRET")


def _references() -> list[tuple[str, str, str]]:
    """(name, operator, word) of every ${...} in the file ($$ escapes left out)."""
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8").replace("$$", "")
    return [(name, op or "", word or "") for name, op, word in VARIABLE.findall(text)]


def test_every_credential_must_be_set_and_has_no_default() -> None:
    credentials = [ref for ref in _references() if CREDENTIAL.search(ref[0])]
    names = {name for name, _, _ in credentials}
    assert {"POSTGRES_USER", "POSTGRES_PASSWORD", "REDIS_PASSWORD"} <= names
    assert {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "SCOPEWEB_SECRET_KEY"} <= names
    for name, op, word in credentials:
        assert op == "?" and word.strip(), f"${{{name}}} must stop compose when unset"


def test_env_example_lists_every_variable_compose_requires() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*(\w+)=", example, re.MULTILINE))
    required = {name for name, op, _ in _references() if op == "?"}
    assert required <= listed, required - listed


def test_only_the_tls_proxy_publishes_ports_and_minio_has_no_console() -> None:
    published = {name for name, service in SERVICES.items() if service.get("ports")}
    assert published == {"proxy"}
    assert sorted(SERVICES["proxy"]["ports"]) == ["443:443", "443:443/udp", "80:80"]
    assert "--console-address" not in " ".join(SERVICES["minio"]["command"])


def test_the_proxy_terminates_tls_for_the_domain_and_web_trusts_its_header() -> None:
    proxy = SERVICES["proxy"]
    assert proxy["image"] == "caddy:2"
    assert "./deploy/Caddyfile:/etc/caddy/Caddyfile:ro" in proxy["volumes"]
    caddyfile = (ROOT / "deploy" / "Caddyfile").read_text(encoding="utf-8")
    assert "{$SCOPEWEB_DOMAIN} {" in caddyfile
    assert "reverse_proxy web:8000" in caddyfile
    assert "header_up X-Forwarded-Proto {scheme}" in caddyfile
    environment = COMPOSE["x-app"]["environment"]
    assert environment["SCOPEWEB_ENV"] == "production"
    assert environment["SCOPEWEB_BEHIND_TLS_PROXY"] == "true"
    assert "SCOPEWEB_SECURE_COOKIES" not in environment  # production's default: on
    assert SERVICES["web"].get("expose") == ["8000"]


def test_the_apps_settings_start_from_composes_environment_and_trust_the_proxy(
    tmp_path: Path,
) -> None:
    """The app's environment as compose fills it in from a complete .env: production settings
    start, read the proxy's X-Forwarded-Proto, redirect plain HTTP, keep cookies secure."""
    sample = {"SCOPEWEB_DOMAIN": "scope.example.org", "SCOPEWEB_SECRET_KEY": "k" * 60}

    def fill(value: str) -> str:
        return VARIABLE.sub(
            lambda m: sample.get(m[1], "sample-" + m[1].lower() if m[2] == "?" else m[3]), value
        )

    app = {name: fill(str(value)) for name, value in COMPOSE["x-app"]["environment"].items()}
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("SCOPEWEB_", "DATABASE"))}
    environ |= app | {"DJANGO_SETTINGS_MODULE": "scopeweb.settings"}
    environ["SCOPEWEB_DATA_DIR"] = str(tmp_path)
    probe = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.SECURE_PROXY_SSL_HEADER, s.SECURE_SSL_REDIRECT, "
        "s.SESSION_COOKIE_SECURE, s.ALLOWED_HOSTS, s.CSRF_TRUSTED_ORIGINS, s.PUBLIC_URL]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    header, redirect, secure, hosts, origins, public = json.loads(result.stdout)
    assert header == ["HTTP_X_FORWARDED_PROTO", "https"] and redirect and secure
    assert hosts == ["scope.example.org", "127.0.0.1"]
    assert origins == ["https://scope.example.org"] and public == "https://scope.example.org"
