from __future__ import annotations

from typing import Any

from rest_framework import serializers

from traces.forms.triage import NOTE_MAX
from traces.models import TriageReview


class TrippedSerializer(serializers.Serializer[Any]):
    feature = serializers.IntegerField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label
    safety_tags = serializers.ListField(child=serializers.CharField())
    threshold = serializers.FloatField()
    peak = serializers.FloatField()


class TriageItemSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    run = serializers.IntegerField(source="run_id")
    sae = serializers.CharField(source="run.sae.name")
    profile = serializers.CharField(source="run.profile.code")
    prompt = serializers.CharField(source="prompt.text")
    completion = serializers.CharField()
    tokens = serializers.IntegerField()
    skipped_at = serializers.DateTimeField(
        allow_null=True, help_text="When you last skipped it; skipped traces come last."
    )
    tripped = TrippedSerializer(many=True)


class TriageQueueSerializer(serializers.Serializer[Any]):
    count = serializers.IntegerField(help_text="Traces in your queue.")
    results = TriageItemSerializer(many=True)


class TriageDecisionSerializer(serializers.Serializer[Any]):
    decision = serializers.ChoiceField(choices=TriageReview.Decision.choices)
    note = serializers.CharField(required=False, allow_blank=True, max_length=NOTE_MAX)


class TriageReviewSerializer(serializers.ModelSerializer[TriageReview]):
    reviewer = serializers.CharField(source="reviewer.username", allow_null=True)
    next = serializers.IntegerField(
        allow_null=True, help_text="The next trace of your queue, if any."
    )
    queue_length = serializers.IntegerField()

    class Meta:
        model = TriageReview
        fields = ["trace", "decision", "note", "reviewer", "decided_at", "next", "queue_length"]
