"""The SAE registry."""

from __future__ import annotations

from django.db.models import QuerySet

from traces.models import SaeRecord


def sae_list() -> QuerySet[SaeRecord]:
    return SaeRecord.objects.all()
