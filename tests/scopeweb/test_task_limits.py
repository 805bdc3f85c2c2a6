"""Every task declares its time limits, and none outlasts ``LONGEST_TASK_SECONDS``: the figure
the Redis visibility timeout must exceed (settings refuse a shorter one, ``test_settings``), or
Redis would hand a task that is still running to a second worker."""

from __future__ import annotations

from django.conf import settings

from scopeweb.celery import app


def _project_tasks() -> dict[str, object]:
    app.loader.import_default_modules()  # autodiscovery: every app's tasks module
    return {name: task for name, task in app.tasks.items() if not name.startswith("celery.")}


def test_every_task_has_a_soft_limit_below_a_hard_limit_within_the_longest() -> None:
    tasks = _project_tasks()
    assert "traces.tasks.analysis_run_task" in tasks and "gates.tasks.gate_run_task" in tasks
    for name, task in tasks.items():
        hard, soft = getattr(task, "time_limit", None), getattr(task, "soft_time_limit", None)
        assert hard is not None and soft is not None, f"{name} declares no time limits"
        assert 0 < soft < hard <= settings.LONGEST_TASK_SECONDS, (name, soft, hard)


def test_the_longest_task_is_the_figure_the_visibility_timeout_is_checked_against() -> None:
    longest = max(getattr(task, "time_limit", 0) or 0 for task in _project_tasks().values())
    assert longest == settings.LONGEST_TASK_SECONDS  # an analysis run, a gate run
