"""Case API input and output shapes. Input serializers parse; the rules live in the services."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from rest_framework import serializers

from reports.models import AuditCase, CaseComment, CaseState, Evidence, Severity, SignOff
from reports.services.cases import TEXT_MAX, TITLE_MAX
from reports.services.evidence import FEATURES_MAX
from scopeweb.retention.models import RetentionProfile
from traces.models import Trace


class EvidenceSerializer(serializers.ModelSerializer[Evidence]):
    trace = serializers.IntegerField(source="trace_id")
    added_by = serializers.CharField(source="added_by.username", default=None)
    sae = serializers.CharField(source="trace.run.sae.name")
    token_text = serializers.SerializerMethodField()
    note = serializers.SerializerMethodField()

    class Meta:
        model = Evidence
        fields = [
            "id", "trace", "sae", "token_start", "token_end", "features", "note", "token_text",
            "pins", "added_by", "added_at", "added_from",
        ]  # fmt: skip

    def get_token_text(self, evidence: Evidence) -> str:
        shown: dict[int, str] = self.context.get("shown_text", {})
        return shown.get(evidence.pk, evidence.token_text)

    def get_note(self, evidence: Evidence) -> str:
        """The note as the reader may see it (redacted for auditors, as on the page)."""
        shown: dict[int, str] = self.context.get("shown_note", {})
        return shown.get(evidence.pk, evidence.note)


class CommentSerializer(serializers.ModelSerializer[CaseComment]):
    author = serializers.CharField(source="author.username", default=None)

    class Meta:
        model = CaseComment
        fields = ["id", "author", "body", "created_at"]


class SignOffSerializer(serializers.ModelSerializer[SignOff]):
    signer = serializers.CharField(source="signer.username")

    class Meta:
        model = SignOff
        fields = ["id", "signer", "statement", "signed_at"]


class CaseSerializer(serializers.ModelSerializer[AuditCase]):
    profile = serializers.CharField(source="profile.code")
    opened_by = serializers.CharField(source="opened_by.username", default=None)
    assignees: serializers.SlugRelatedField[User] = serializers.SlugRelatedField(
        slug_field="username", many=True, read_only=True
    )

    class Meta:
        model = AuditCase
        fields = [
            "id", "title", "description", "severity", "profile", "state", "opened_by",
            "opened_at", "updated_at", "assignees", "summary", "signed_off_at", "closed_at",
            "close_reason", "hold_until",
        ]  # fmt: skip


class CaseDetailSerializer(CaseSerializer):
    evidence = serializers.SerializerMethodField()
    comments = CommentSerializer(many=True, read_only=True)
    sign_offs = SignOffSerializer(many=True, read_only=True)
    next_states = serializers.SerializerMethodField()

    class Meta(CaseSerializer.Meta):
        fields = [*CaseSerializer.Meta.fields, "evidence", "comments", "sign_offs", "next_states"]

    def get_evidence(self, case: AuditCase) -> list[dict[str, Any]]:
        items = case.evidence.select_related("trace__run__sae", "added_by").order_by("id")
        # many=True makes a ListSerializer, whose .data is a list; the stubs type it a ReturnDict.
        return EvidenceSerializer(items, many=True, context=self.context).data  # type: ignore[return-value]

    def get_next_states(self, case: AuditCase) -> list[str]:
        next_states: list[str] = self.context.get("next_states", [])
        return next_states


def _workers() -> Any:
    return User.objects.filter(is_active=True)


class CaseCreateSerializer(serializers.Serializer[Any]):
    title = serializers.CharField(max_length=TITLE_MAX)
    description = serializers.CharField(required=False, allow_blank=True, max_length=TEXT_MAX)
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.MEDIUM)
    profile = serializers.SlugRelatedField(
        slug_field="code", queryset=RetentionProfile.objects.all()
    )
    assignees = serializers.SlugRelatedField(
        slug_field="username", queryset=_workers(), many=True, required=False
    )
    summary = serializers.CharField(required=False, allow_blank=True, max_length=TEXT_MAX)


class CaseUpdateSerializer(serializers.Serializer[Any]):
    title = serializers.CharField(required=False, max_length=TITLE_MAX)
    description = serializers.CharField(required=False, allow_blank=True, max_length=TEXT_MAX)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    assignees = serializers.SlugRelatedField(
        slug_field="username", queryset=_workers(), many=True, required=False
    )
    summary = serializers.CharField(required=False, allow_blank=True, max_length=TEXT_MAX)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(self.initial_data) - set(self.fields)
        if unknown:
            raise serializers.ValidationError(
                {name: "This field cannot be changed here." for name in sorted(unknown)}
            )
        return attrs


class TransitionSerializer(serializers.Serializer[Any]):
    to = serializers.ChoiceField(choices=CaseState.choices)
    reason = serializers.CharField(required=False, allow_blank=True, max_length=TEXT_MAX)


class EvidenceCreateSerializer(serializers.Serializer[Any]):
    trace = serializers.PrimaryKeyRelatedField(queryset=Trace.objects.all())
    token_start = serializers.IntegerField(min_value=0)
    token_end = serializers.IntegerField(min_value=1)
    features = serializers.ListField(
        child=serializers.IntegerField(min_value=0), max_length=FEATURES_MAX, default=list
    )
    note = serializers.CharField(required=False, allow_blank=True, max_length=TEXT_MAX)


class CommentCreateSerializer(serializers.Serializer[Any]):
    body = serializers.CharField(max_length=TEXT_MAX)


class SignOffCreateSerializer(serializers.Serializer[Any]):
    statement = serializers.CharField(max_length=TEXT_MAX)
