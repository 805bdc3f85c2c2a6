"""Settings of who gets in and how often: sign-in lockout (django-axes), idle sessions, personal
API tokens, and the REST API with its permissions and throttles. ``scopeweb.settings`` imports
all of it; like it, every value comes from the environment through ``scopeweb.env``."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ImproperlyConfigured

from scopeweb.env import env_bool, env_int, env_rate

# --- sign-in lockout (django-axes), sessions and API tokens ---------------------------------
# Axes refuses a locked-out user name before any password is checked; ModelBackend signs in.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# This many wrong passwords for one user name, from any address, lock that name for the
# cool-off. By name, not by address: a guesser spreading over many addresses is still stopped,
# and behind a proxy every client would share one address. Failures older than the cool-off
# are forgotten. An admin unlocks sooner from the user's page.
AXES_FAILURE_LIMIT = env_int("SCOPEWEB_LOGIN_FAILURE_LIMIT", 50, minimum=3, maximum=10_000)
LOGIN_LOCKOUT_MINUTES = env_int(
    "SCOPEWEB_LOGIN_LOCKOUT_MINUTES", 30, minimum=1, maximum=7 * 24 * 60
)
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username"]
# axes.W006 asks for the address among the parameters, against limits keyed on a user agent or
# a cookie that a guesser rotates; this one sums a name's failures over every address and agent.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
# Attempts during a lockout are refused unrecorded: the lock ends a cool-off after it began,
# and a flood against a locked name writes nothing to the database.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_CALLABLE = "scopeweb.accounts.lockouts.lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # sign-ins are in the audit log
# The audit log records the first failed sign-in for a name, then one row counting the rest
# when this window closes (scopeweb/audit/sign_ins.py): a flood cannot flood the log.
LOGIN_FAILURE_AUDIT_WINDOW_SECONDS = 15 * 60

# A session ends after this long without a request; each request starts the clock again.
SESSION_COOKIE_AGE = (
    env_int("SCOPEWEB_SESSION_IDLE_MINUTES", 30, minimum=1, maximum=7 * 24 * 60) * 60
)
# Each request starts the clock again, saving the session at most once a minute
# (scopeweb/accounts/idle.py), not once per request.
SESSION_SAVE_EVERY_REQUEST = False

# Personal API tokens: the expiry the form offers, and the longest it allows.
API_TOKEN_DAYS = env_int("SCOPEWEB_API_TOKEN_DAYS", 90, minimum=1)
API_TOKEN_MAX_DAYS = env_int("SCOPEWEB_API_TOKEN_MAX_DAYS", 365, minimum=1, maximum=3650)
if API_TOKEN_DAYS > API_TOKEN_MAX_DAYS:
    raise ImproperlyConfigured(
        f"SCOPEWEB_API_TOKEN_DAYS ({API_TOKEN_DAYS}) exceeds SCOPEWEB_API_TOKEN_MAX_DAYS "
        f"({API_TOKEN_MAX_DAYS})."
    )

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "scopeweb.accounts.tokens.PersonalTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # The route's role rule, then the token's scopes (a session has no scopes to check).
    "DEFAULT_PERMISSION_CLASSES": [
        "scopeweb.accounts.access.DenyUndeclared",
        "scopeweb.accounts.scopes.TokenScopes",
    ],
    # One budget per caller: a user (session or token), an ingest key, a gate key, or an
    # anonymous address. 429 names the limit; Retry-After says when to come back.
    "DEFAULT_THROTTLE_CLASSES": ["scopeweb.accounts.throttles.CallerRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "user": env_rate("SCOPEWEB_API_RATE", "600/minute"),
        "anon": env_rate("SCOPEWEB_API_ANON_RATE", "60/minute"),
        "ingest": env_rate("SCOPEWEB_INGEST_RATE", "1200/minute"),
        "gate": env_rate("SCOPEWEB_GATE_RATE", "300/minute"),
    },
    # Anonymous callers are told apart by address: X-Forwarded-For only behind the TLS proxy.
    "NUM_PROXIES": 1 if env_bool("SCOPEWEB_BEHIND_TLS_PROXY") else 0,
    # DRF's, answering bad input with a 400, never a 500 (scopeweb/api_bodies.py).
    "DEFAULT_PARSER_CLASSES": [
        "scopeweb.api_bodies.JSONParser",
        "scopeweb.api_bodies.FormParser",
        "scopeweb.api_bodies.MultiPartParser",
    ],
    "DEFAULT_RENDERER_CLASSES": [
        "scopeweb.api_bodies.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "scopeweb.refusals.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Scope Web API",
    "DESCRIPTION": "Sparse-autoencoder analyses of Gemma 3 models, audit cases and reports. "
    "Authenticate with a personal token: `Authorization: Token <key>`.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Every view carries its own access rule; swagger-ui is served from the sidecar package,
    # never from a CDN.
    "SERVE_PERMISSIONS": [
        "scopeweb.accounts.access.DenyUndeclared",
        "scopeweb.accounts.scopes.TokenScopes",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # One name for each choice set that several fields or models share.
    "ENUM_NAME_OVERRIDES": {
        "RetentionTierEnum": "scopeweb.retention.models.TIER_CHOICES",
        "CaseStateEnum": "reports.models.CaseState",
        "JobKindEnum": "scopeweb.jobs.models.JobKind",
        "JobStateEnum": "scopeweb.jobs.models.JobState",
        "ExportKindEnum": "governance.models.ExportKind",
        "ExportStateEnum": "governance.models.ExportState",
        "PurgeRunStateEnum": "governance.models.PurgeRun.State",
    },
}
