from __future__ import annotations

from rest_framework import serializers

from scopeweb.retention.models import RetentionProfile
from traces.models import AnalysisRun, Prompt, PromptSet, SaeRecord
from traces.prompt_files import FORMATS


class PromptSetSerializer(serializers.ModelSerializer):
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


class PromptSerializer(serializers.ModelSerializer):
    class Meta:
        model = Prompt
        fields = [
            "position",
            "line",
            "external_id",
            "text",
            "tags",
            "metadata",
            "token_count",
            "over_capture_limit",
        ]
        read_only_fields = fields


class PromptSetUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    profile = serializers.SlugRelatedField(
        slug_field="code", queryset=RetentionProfile.objects.all()
    )
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=["", *FORMATS], required=False, default="")


class RunSerializer(serializers.ModelSerializer):
    prompt_set: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(
        read_only=True
    )
    sae = serializers.CharField(source="sae.name")
    state = serializers.CharField(source="job.state")
    progress_note = serializers.CharField(source="job.progress_note")
    error = serializers.CharField(source="job.error")

    class Meta:
        model = AnalysisRun
        fields = [
            "id",
            "prompt_set",
            "sae",
            "state",
            "progress_note",
            "error",
            "job",
            "top_k",
            "capture_limit",
            "dtype",
            "generate_tokens",
            "seed",
            "device_kind",
            "chunks_total",
            "chunks_done",
            "prompts_done",
            "tokens_done",
            "pins",
            "summary",
            "manifest_sha256",
            "created_at",
        ]
        read_only_fields = fields


class RunStartSerializer(serializers.Serializer):
    prompt_set = serializers.PrimaryKeyRelatedField(queryset=PromptSet.objects.all())
    sae = serializers.SlugRelatedField(slug_field="name", queryset=SaeRecord.objects.all())
    top_k = serializers.IntegerField(min_value=1, max_value=256, default=32)
    capture_limit = serializers.IntegerField(min_value=16, max_value=32768, required=False)
    dtype = serializers.ChoiceField(
        choices=AnalysisRun.DType.values, default=AnalysisRun.DType.AUTO
    )
    generate_tokens = serializers.IntegerField(min_value=0, max_value=512, default=0)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
