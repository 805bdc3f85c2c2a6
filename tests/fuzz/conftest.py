"""What the fuzz tests share: the Hypothesis profiles, the tally of inputs tried, one rolled-back
transaction per example, and the snapshot of rows and stored files that proves a refused input
wrote nothing.

Profiles (``HYPOTHESIS_PROFILE``): ``fuzz-ci`` (the default, also reached as ``ci``) keeps the
whole folder to about a minute for the suite; ``fuzz`` (``make fuzz``) tries over 10,000 inputs
across the surfaces. Neither is loaded globally: Hypothesis's own ``ci`` profile (which it loads
by itself on CI machines) stays what the other property tests run under, and only these tests
take ``FUZZ``.

Server errors are 5xx answers (the clients get them as answers, not as exceptions); a partial
write is a refused input after which a row count, a watched row or the stored files differ.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.apps import apps
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction
from django.test import Client
from hypothesis import HealthCheck, event, settings
from hypothesis.configuration import set_hypothesis_home_dir

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

# Hypothesis keeps its example database in the ignored var/ folder, as the other property tests.
set_hypothesis_home_dir(str(Path(__file__).resolve().parents[2] / "var" / "hypothesis"))

_COMMON: dict[str, Any] = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,  # fixtures are set up once; examples roll back
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
}
settings.register_profile("fuzz-ci", max_examples=60, **_COMMON)
settings.register_profile("fuzz", max_examples=700, **_COMMON)
_PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "fuzz-ci")
FUZZ = settings.get_profile("fuzz-ci" if _PROFILE in ("ci", "") else _PROFILE)


def fuzz_settings(share: float = 1.0) -> settings:
    """The profile's settings, with ``share`` of its examples (cheap surfaces take more)."""
    return settings(FUZZ, max_examples=max(10, round(FUZZ.max_examples * share)))


def fuzz_client(user: User | None = None, authorization: str = "") -> Client:
    """A client that gets a server error as a 500 answer (counted), not as the exception;
    signed in as ``user``, or sending ``authorization`` (a key)."""
    headers = {"Authorization": authorization} if authorization else None
    client = Client(raise_request_exception=False, headers=headers)
    if user is not None:
        client.force_login(user)
    return client


# --- the tally --------------------------------------------------------------------------------

TRIED: Counter[str] = Counter()
SERVER_ERRORS: Counter[str] = Counter()
PARTIAL_WRITES: Counter[str] = Counter()


def tried(surface: str) -> None:
    """Count one generated input of ``surface``."""
    TRIED[surface] += 1


def no_server_error(surface: str, response: TestResponse, what: str = "") -> int:
    """The response's status, after checking it is no 5xx (and answers a 4xx with words)."""
    status = response.status_code
    event(f"{what or 'answer'}: {status}")
    if status >= 500:
        SERVER_ERRORS[surface] += 1
        raise AssertionError(f"{surface}: {what} answered {status}: {response.content[:2000]!r}")
    if 400 <= status < 500 and response.get("Content-Type", "").startswith("application/json"):
        body = response.json()
        assert body, f"{surface}: a {status} without a word of why"
    return status


def nothing_written(surface: str, before: Snapshot, after: Snapshot, what: str = "") -> None:
    """Check that a refused input left the rows and the stored files as they were."""
    if before != after:
        PARTIAL_WRITES[surface] += 1
        raise AssertionError(f"{surface}: {what} was refused but wrote {before.diff(after)}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The inputs tried per surface and route, and in all; with ``FUZZ_TALLY=path``, as JSON
    too. A failing example counts again each time Hypothesis replays it while shrinking."""
    if not TRIED:
        return
    total = sum(TRIED.values())
    write = terminalreporter.write_line
    write("")
    for surface, count in sorted(TRIED.items()):
        write(f"fuzz: {surface}: {count:,} inputs")
    areas: Counter[str] = Counter()
    for surface, count in TRIED.items():
        areas[surface.split(" (")[0]] += count
    write("fuzz: " + ", ".join(f"{area} {count:,}" for area, count in sorted(areas.items())))
    write(
        f"fuzz: {total:,} inputs, {sum(SERVER_ERRORS.values())} server errors, "
        f"{sum(PARTIAL_WRITES.values())} partial writes"
    )
    out = os.environ.get("FUZZ_TALLY")
    if out:
        Path(out).write_text(
            json.dumps(
                {
                    "inputs": dict(TRIED),
                    "total": total,
                    "server_errors": dict(SERVER_ERRORS),
                    "partial_writes": dict(PARTIAL_WRITES),
                },
                indent=2,
            )
        )


# --- one example, rolled back -----------------------------------------------------------------


def stored_files() -> set[Path]:
    root = Path(django_settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


@contextmanager
def example() -> Iterator[None]:
    """One generated input: a savepoint rolled back after it, the cache emptied before it (no
    throttle or cached id from another example), and the files it stored removed."""
    cache.clear()
    files = stored_files()
    try:
        with transaction.atomic():
            yield
            transaction.set_rollback(True)
    finally:
        for path in stored_files() - files:
            path.unlink()


# --- what a refused input must leave as it was ------------------------------------------------

# Rows compared whole (an update is a write too); every other model is compared by its count.
WATCHED = (
    "reports.AuditCase",
    "reports.CaseComment",
    "reports.Evidence",
    "reports.SignOff",
    "retention.RetentionProfile",
    "traces.FeatureAnnotation",
    "traces.PromptSet",
    "traces.Prompt",
    "traces.IngestBatch",
    "traces.IngestedRequest",
    "governance.Export",
    "gates.GateRun",
)
# Written by reading, not by the input: a session, a key's last use.
UNCOUNTED = ("sessions.Session",)


class Snapshot:
    """Row counts of every model, the rows of ``WATCHED`` models, and the stored files."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}
        counted = []
        for model in apps.get_models():
            label = model._meta.label
            if label in UNCOUNTED or not model._meta.managed or model._meta.proxy:
                continue
            if label in WATCHED:
                self.rows[label] = list(model._default_manager.order_by("pk").values())
            else:
                counted.append(model)
        # One query (it runs twice an example); the table names are the models' own.
        quote = connection.ops.quote_name
        counts = ", ".join(
            f"(SELECT COUNT(*) FROM {quote(m._meta.db_table)})"  # noqa: S608
            for m in counted
        )
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT {counts}")
            row = cursor.fetchone()
        self.counts = {m._meta.label: n for m, n in zip(counted, row, strict=True)}
        self.files = {str(path) for path in stored_files()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Snapshot) and (self.counts, self.rows, self.files) == (
            other.counts,
            other.rows,
            other.files,
        )

    __hash__ = None  # type: ignore[assignment]

    def diff(self, other: Snapshot) -> str:
        changes = [
            f"{label} {count} -> {other.counts.get(label)} rows"
            for label, count in self.counts.items()
            if other.counts.get(label) != count
        ]
        changes += [
            f"{label} rows changed"
            for label, rows in self.rows.items()
            if other.rows.get(label) != rows
        ]
        changes += [f"file {name}" for name in sorted(other.files ^ self.files)]
        return "; ".join(changes) or "nothing"


@pytest.fixture
def snapshot(db: None) -> Callable[[], Snapshot]:
    return Snapshot
