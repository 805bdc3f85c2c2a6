"""Analysis runs over the API: a run with its progress and pins, and starting one."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from traces.models import AnalysisRun, PromptSet, SaeRecord


class RunSerializer(serializers.ModelSerializer[AnalysisRun]):
    prompt_set: serializers.PrimaryKeyRelatedField[PromptSet] = serializers.PrimaryKeyRelatedField(
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


class RunStartSerializer(serializers.Serializer[Any]):
    prompt_set = serializers.PrimaryKeyRelatedField(queryset=PromptSet.objects.all())
    sae = serializers.SlugRelatedField(slug_field="name", queryset=SaeRecord.objects.all())
    top_k = serializers.IntegerField(min_value=1, max_value=256, default=32)
    capture_limit = serializers.IntegerField(min_value=16, max_value=32768, required=False)
    dtype = serializers.ChoiceField(
        choices=AnalysisRun.DType.values, default=AnalysisRun.DType.AUTO
    )
    generate_tokens = serializers.IntegerField(min_value=0, max_value=512, default=0)
    seed = serializers.IntegerField(min_value=0, max_value=2**31 - 1, default=0)
