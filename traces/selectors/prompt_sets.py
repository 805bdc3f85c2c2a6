from __future__ import annotations

from django.db.models import QuerySet

from scopeweb.jobs.models import Job, JobKind, JobState
from traces.models import PromptSet


def prompt_set_list() -> QuerySet[PromptSet]:
    return PromptSet.objects.select_related("profile", "created_by")


def prompt_imports_recent(limit: int = 10) -> QuerySet[Job]:
    """Imports still in flight, and refused ones from the last few, for the list page."""
    return (
        Job.objects.filter(kind=JobKind.PROMPT_IMPORT)
        .exclude(state=JobState.SUCCEEDED)
        .select_related("created_by")[:limit]
    )
