"""Prompt sets and their prompts over the API, and an upload."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from scopeweb.retention.models import RetentionProfile
from traces.models import Prompt, PromptSet
from traces.prompt_files import FORMATS


class PromptSetSerializer(serializers.ModelSerializer[PromptSet]):
    profile = serializers.CharField(source="profile.code")
    created_by = serializers.CharField(source="created_by.username", default=None)

    class Meta:
        model = PromptSet
        fields = [
            "id",
            "name",
            "description",
            "profile",
            "created_by",
            "created_at",
            "source_filename",
            "source_format",
            "source_sha256",
            "source_bytes",
            "prompt_count",
            "token_total",
            "token_max",
            "capture_limit",
            "over_limit_count",
            "tokenizer",
            "import_job",
        ]
        read_only_fields = fields


class PromptSerializer(serializers.ModelSerializer[Prompt]):
    class Meta:
        model = Prompt
        fields = [
            "position",
            "line",
            "external_id",
            "text",
            "messages",
            "tags",
            "metadata",
            "token_count",
            "over_capture_limit",
        ]
        read_only_fields = fields


class PromptSetUploadSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    profile = serializers.SlugRelatedField(
        slug_field="code", queryset=RetentionProfile.objects.all()
    )
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=["", *FORMATS], required=False, default="")
