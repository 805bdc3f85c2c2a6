"""Settings as a fresh process sees them under different environments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import json; from django.conf import settings as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
    "'db_name': str(s.DATABASES['default']['NAME']), 'broker': s.CELERY_BROKER_URL, "
    "'storage': s.STORAGES['default']['BACKEND'], 'debug': s.DEBUG, "
    "'data_dir': str(s.DATA_DIR)}))"
)
CLEARED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "SCOPEWEB_STORAGE",
    "SCOPEWEB_DEBUG",
    "SCOPEWEB_ENV",
    "SCOPEWEB_SECRET_KEY",
    "SCOPEWEB_SQLITE_PATH",
)


def _settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED}
    environ.update({"DJANGO_SETTINGS_MODULE": "scopeweb.settings"})
    environ["SCOPEWEB_DATA_DIR"] = str(tmp_path / "data")
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {PROBE}"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_configuration_means_embedded_defaults(tmp_path: Path) -> None:
    result = _settings(tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["engine"] == "django.db.backends.sqlite3"
    assert seen["db_name"] == str(tmp_path / "data" / "scopeweb.sqlite3")
    assert seen["broker"] == "filesystem://"
    assert seen["storage"] == "django.core.files.storage.FileSystemStorage"
    assert seen["debug"] is False
    assert (tmp_path / "data" / "broker" / "queue").is_dir()
    assert (tmp_path / "data" / "secret_key").stat().st_mode & 0o077 == 0


def test_database_and_broker_urls_select_postgres_and_redis(tmp_path: Path) -> None:
    result = _settings(
        tmp_path,
        DATABASE_URL="postgres://scope:pw@db.internal:5432/scopeweb",
        CELERY_BROKER_URL="redis://cache.internal:6379/0",
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["engine"] == "django.db.backends.postgresql"
    assert seen["db_name"] == "scopeweb"
    assert seen["broker"] == "redis://cache.internal:6379/0"


def test_s3_storage_needs_its_credentials(tmp_path: Path) -> None:
    result = _settings(tmp_path, SCOPEWEB_STORAGE="s3")
    assert result.returncode != 0
    assert "AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY_ID_FILE) must be set" in result.stderr
    result = _settings(
        tmp_path,
        SCOPEWEB_STORAGE="s3",
        AWS_ACCESS_KEY_ID="minio",
        AWS_SECRET_ACCESS_KEY="minio-secret",
        AWS_S3_ENDPOINT_URL="http://minio:9000",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["storage"] == "storages.backends.s3.S3Storage"


def test_production_without_secret_key_stops_with_its_name(tmp_path: Path) -> None:
    result = _settings(tmp_path, SCOPEWEB_ENV="production")
    assert result.returncode != 0
    assert "SCOPEWEB_SECRET_KEY (or SCOPEWEB_SECRET_KEY_FILE) must be set in production" in (
        result.stderr
    )


def test_bad_boolean_stops_start_up_naming_the_variable(tmp_path: Path) -> None:
    result = _settings(tmp_path, SCOPEWEB_DEBUG="perhaps")
    assert result.returncode != 0
    assert "SCOPEWEB_DEBUG='perhaps' is not a boolean" in result.stderr


PRODUCTION = {
    "SCOPEWEB_ENV": "production",
    "SCOPEWEB_SECRET_KEY": "k" * 20 + "-a-production-secret-of-sixty-characters-or-so-42",
    "SCOPEWEB_ALLOWED_HOSTS": "scope.example.org",
}


def test_production_refuses_debug(tmp_path: Path) -> None:
    result = _settings(tmp_path, SCOPEWEB_DEBUG="true", **PRODUCTION)
    assert result.returncode != 0
    assert "SCOPEWEB_DEBUG is refused when SCOPEWEB_ENV=production" in result.stderr


def test_check_deploy_is_clean_with_production_settings(tmp_path: Path) -> None:
    """HSTS, the HTTPS redirect, secure cookies, the CSP and the API schema: no warning."""
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED}
    environ |= PRODUCTION | {"SCOPEWEB_DATA_DIR": str(tmp_path / "data")}
    environ["DJANGO_SETTINGS_MODULE"] = "scopeweb.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_redis_visibility_timeout_must_outlast_the_longest_task(tmp_path: Path) -> None:
    redis = {"CELERY_BROKER_URL": "redis://127.0.0.1:6379/15"}
    short = _settings(tmp_path, CELERY_VISIBILITY_TIMEOUT="7200", **redis)
    assert short.returncode != 0
    assert "CELERY_VISIBILITY_TIMEOUT (7200 s) must exceed" in short.stderr
    probe = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'] > s.LONGEST_TASK_SECONDS)"
    )
    environ = {k: v for k, v in os.environ.items() if k not in CLEARED} | redis
    environ |= {"DJANGO_SETTINGS_MODULE": "scopeweb.settings", "SCOPEWEB_DATA_DIR": str(tmp_path)}
    default = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=environ, capture_output=True, text=True
    )
    assert default.stdout.strip() == "True", default.stderr
