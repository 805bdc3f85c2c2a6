from __future__ import annotations

from typing import Any

from rest_framework import serializers

from scopeweb.audit.models import AuditEvent
from scopeweb.audit.selectors import AuditQuery


class AuditQuerySerializer(serializers.Serializer[Any]):
    """The audit log's filters, as query parameters (the same as the page's)."""

    actor = serializers.CharField(required=False, max_length=150, help_text="User name.")
    action = serializers.CharField(
        required=False,
        max_length=60,
        help_text="An action (run.start), or a prefix (run) for all of its actions.",
    )
    object_type = serializers.CharField(
        required=False, max_length=60, help_text="e.g. user, analysisrun, trace."
    )
    object_id = serializers.CharField(required=False, max_length=64)
    time_from = serializers.DateTimeField(
        required=False, help_text="ISO 8601; events at or after it."
    )
    time_to = serializers.DateTimeField(required=False, help_text="ISO 8601; events before it.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs.get("time_from"), attrs.get("time_to")
        if start is not None and end is not None and end <= start:
            raise serializers.ValidationError({"time_to": "Must be after time_from."})
        if attrs.get("object_id") and not attrs.get("object_type"):
            raise serializers.ValidationError(
                {"object_type": "Name the object type the id belongs to."}
            )
        return attrs

    def query(self) -> AuditQuery:
        data = self.validated_data
        return AuditQuery(
            actor=data.get("actor", "").strip(),
            action=data.get("action", "").strip().lower(),
            object_type=data.get("object_type", "").strip().lower(),
            object_id=data.get("object_id", "").strip(),
            time_from=data.get("time_from"),
            time_to=data.get("time_to"),
        )


class AuditEventSerializer(serializers.ModelSerializer[AuditEvent]):
    class Meta:
        model = AuditEvent
        fields = [
            "id", "at", "actor", "actor_id", "via", "action", "object_type", "object_id",
            "object_repr", "source", "before", "after", "detail", "prev_hash", "hash",
        ]  # fmt: skip
