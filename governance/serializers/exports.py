from __future__ import annotations

from typing import Any

from rest_framework import serializers

from governance.models import Export, ExportKind
from governance.services.exports import NOTE_MAX, PURPOSE_MAX


class ExportSerializer(serializers.ModelSerializer[Export]):
    profile = serializers.CharField(source="profile.code", read_only=True)
    requested_by = serializers.CharField(
        source="requested_by.username", default=None, read_only=True
    )
    decided_by = serializers.CharField(source="decided_by.username", default=None, read_only=True)
    downloaded_by = serializers.CharField(
        source="downloaded_by.username", default=None, read_only=True
    )
    job = serializers.UUIDField(source="job_id", read_only=True, allow_null=True)
    link_issued = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id",
            "kind",
            "target_id",
            "target_repr",
            "profile",
            "state",
            "purpose",
            "requested_by",
            "requested_at",
            "decided_by",
            "decided_at",
            "decision_note",
            "job",
            "sha256",
            "size_bytes",
            "redaction_report",
            "link_issued",
            "link_expires_at",
            "downloaded_at",
            "downloaded_by",
            "expires_at",
        ]
        read_only_fields = fields

    def get_link_issued(self, export: Export) -> bool:
        return bool(export.link_sha256)


class ExportDetailSerializer(ExportSerializer):
    link = serializers.SerializerMethodField(
        help_text="The single-use download link: given once, to the requester, on the first "
        "read after the export is ready; null otherwise."
    )

    class Meta(ExportSerializer.Meta):
        fields = [*ExportSerializer.Meta.fields, "link"]
        read_only_fields = fields

    def get_link(self, export: Export) -> str | None:
        link: Any = self.context.get("link")
        return str(link) if link else None


class ExportCreateSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=ExportKind.choices)
    target_id = serializers.IntegerField(min_value=1, max_value=2**62)
    purpose = serializers.CharField(max_length=PURPOSE_MAX)


class ExportDecisionSerializer(serializers.Serializer[Any]):
    note = serializers.CharField(max_length=NOTE_MAX, required=False, allow_blank=True, default="")
