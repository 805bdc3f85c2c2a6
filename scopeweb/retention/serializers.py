"""Retention profiles over the API, with the history of their edits."""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from scopeweb.redaction import redaction_coverage
from scopeweb.retention.models import EDITABLE_FIELDS, RetentionProfile, RetentionProfileChange


class RetentionProfileChangeSerializer(serializers.ModelSerializer[RetentionProfileChange]):
    changed_by = serializers.CharField(source="changed_by.username", default=None)

    class Meta:
        model = RetentionProfileChange
        fields = ["changed_by", "changed_at", "before", "after"]


class RetentionProfileSerializer(serializers.ModelSerializer[RetentionProfile]):
    class Meta:
        model = RetentionProfile
        fields = ["code", *EDITABLE_FIELDS]
        read_only_fields = ["code"]


class RetentionProfileDetailSerializer(RetentionProfileSerializer):
    changes = RetentionProfileChangeSerializer(many=True, read_only=True)
    redaction_coverage = serializers.SerializerMethodField(
        help_text="What this profile does with each PII category (redacted before storage, "
        "flagged, or redacted in exports), by which method and detectors, and what it misses."
    )

    class Meta(RetentionProfileSerializer.Meta):
        fields = [*RetentionProfileSerializer.Meta.fields, "changes", "redaction_coverage"]

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_redaction_coverage(self, profile: RetentionProfile) -> dict[str, Any]:
        return redaction_coverage(profile)
