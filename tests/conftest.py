"""The cast of users every access test uses, and shared fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.browser_kit import page, story  # noqa: F401  (fixtures of the browser stories)
from tests.factories import make_user
from tests.tools import check_tools

FAST_TIER = os.environ.get("SCOPEWEB_TEST_TIER") == "fast"
_reached_for_model: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if FAST_TIER:
        _forbid_the_model()


def _forbid_the_model() -> None:
    """In `make test-fast`, loading the real model is an error that names the missing mark.

    The product may catch the exception (a run fails its job), so the test is also failed by
    ``_model_mark_is_honest`` after it returns.
    """
    import traces.engine.model as model
    import traces.engine.runtime as runtime

    def refuse(*args: object, **kwargs: object) -> Any:
        _reached_for_model.append(os.environ.get("PYTEST_CURRENT_TEST", "?"))
        raise RuntimeError("the fast tier runs without the real model: mark this test `model`")

    setattr(model, "load_default_model", refuse)  # noqa: B010  (mypy refuses the plain assignment)
    setattr(runtime, "load_model", refuse)  # noqa: B010


@pytest.fixture(autouse=True)
def _model_mark_is_honest() -> Iterator[None]:
    _reached_for_model.clear()
    yield
    if _reached_for_model:
        pytest.fail("this test loads the real model: mark it `model` (pytest.mark.model)")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take the ``gemma`` fixture are model tests, and so are browser stories and
    tests with a real worker: the server or worker they start loads the model in a process the
    fast tier's guard does not reach."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ())) & {"gemma", "celery_worker_process"}
        if item.get_closest_marker("browser") or fixtures:
            item.add_marker(pytest.mark.model)


def pytest_runtest_setup(item: pytest.Item) -> None:
    check_tools(item)


@pytest.fixture
def reviewer(db: None) -> User:
    return make_user("rita", "reviewer")


@pytest.fixture
def second_reviewer(db: None) -> User:
    return make_user("rob", "reviewer")


@pytest.fixture
def auditor(db: None) -> User:
    return make_user("audrey", "auditor")


@pytest.fixture
def admin(db: None) -> User:
    return make_user("ada", "admin")


@pytest.fixture
def outsider(db: None) -> User:
    """Signed in, but holding no role."""
    return make_user("otto")


@pytest.fixture
def cast(
    reviewer: User, second_reviewer: User, auditor: User, admin: User, outsider: User
) -> dict[str, User | None]:
    return {
        "anonymous": None,
        "reviewer": reviewer,
        "auditor": auditor,
        "admin": admin,
        "outsider": outsider,
    }


def client_for(user: User | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Rolled-back tests reuse ids, which cache keys are built from."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _own_artifact_folder(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Each test stores artifacts in a folder of its own (worker tests share the data dir's,
    which the worker process sees too)."""
    if request.node.get_closest_marker("worker"):
        return
    settings = request.getfixturevalue("settings")
    settings.MEDIA_ROOT = tmp_path / "artifacts"
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": tmp_path / "artifacts"},
        },
    }


def _database_env() -> dict[str, str]:
    """Point a child process at the database this test run uses (the test database)."""
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return {"SCOPEWEB_SQLITE_PATH": str(db["NAME"])}
    user = db.get("USER") or ""
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    return {
        "DATABASE_URL": f"postgres://{auth}{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
        f"/{db['NAME']}"
    }


def _start_worker(
    log_path: Path, *, pool: str = "solo", env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``pool``: "solo" runs tasks in the worker's own process; "prefork" in one pool process
    that the worker replaces when it dies (and the broker redelivers its task)."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        **_database_env(),
        **(env or {}),
    }
    command = [
        sys.executable, "-m", "celery", "-A", "scopeweb", "worker",
        "--queues", "default,analysis", "--pool", pool, "--concurrency", "1", "--loglevel", "INFO",
        "--without-gossip", "--without-mingle", "--hostname", f"test-{uuid.uuid4().hex[:8]}@%h",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        worker = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while b" ready." not in log_path.read_bytes():
        if worker.poll() is not None or time.monotonic() > deadline:
            worker.kill()
            raise RuntimeError(f"worker did not start:\n{log_path.read_text()[-3000:]}")
        time.sleep(0.2)
    return worker


def _stop_worker(worker: subprocess.Popen[bytes]) -> None:
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=20)
    except subprocess.TimeoutExpired:
        worker.kill()


@pytest.fixture
def celery_worker_process(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker in its own process, on the configured broker and the test database.

    Tests using it mark themselves ``django_db(transaction=True, serialized_rollback=True)``: the
    worker must see committed rows, and the seeded roles and profiles must survive the flush.
    """
    from scopeweb.celery import app

    app.control.purge()  # messages a previous, interrupted run may have left
    worker = _start_worker(tmp_path / "worker.log")
    yield worker
    _stop_worker(worker)


WorkerStarter = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[WorkerStarter]:
    """Start real Celery workers as ``celery_worker_process`` does, with ``pool`` and extra
    ``env`` of the test's choosing (``start_worker(pool="prefork", env={...})``); each is
    stopped at the end. Its log is ``worker-N.log`` in the test's folder."""
    from scopeweb.celery import app

    app.control.purge()
    started: list[subprocess.Popen[bytes]] = []

    def start(*, pool: str = "solo", env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = tmp_path / f"worker-{len(started) + 1}.log"
        started.append(_start_worker(log, pool=pool, env=env))
        return started[-1]

    yield start
    for worker in started:
        _stop_worker(worker)


def wait_for_job(job_id: uuid.UUID | str, timeout: float = 180) -> Any:
    from scopeweb.jobs.models import Job

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = Job.objects.get(pk=job_id)
        if job.finished:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s (state {job.state})")
