"""Retention profiles over the API, with the history of their edits."""

from __future__ import annotations

from rest_framework import serializers

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

    class Meta(RetentionProfileSerializer.Meta):
        fields = [*RetentionProfileSerializer.Meta.fields, "changes"]
