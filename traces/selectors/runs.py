"""Analysis runs, with what their pages and the API show of them."""

from __future__ import annotations

from django.db.models import QuerySet

from traces.models import AnalysisRun


def run_list() -> QuerySet[AnalysisRun]:
    return AnalysisRun.objects.select_related("prompt_set", "sae", "job", "created_by", "profile")
